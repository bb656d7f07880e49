"""The RQ-VAE semantic-ID tokenizer (TIGER / LC-Rec indexer; SYSTEMS.md §11.1) and MQL4GRec-style collision
resolution, on item text embeddings.

Residual quantisation (eq. RQ):  r_1 = z,  c_l = argmin_k ||r_l - e_{l,k}||^2,  r_{l+1} = r_l - e_{l,c_l},
ẑ = Σ_l e_{l,c_l}; the decoder reads z + sg(ẑ - z) (straight-through), and the loss is
||x - Dec(·)||^2 + Σ_l [ ||sg(r_l) - e_{l,c_l}||^2 + β ||r_l - sg(e_{l,c_l})||^2 ].
Codebooks are initialised by k-means on the first batch, level by level (level l on the residuals left by the
initialised levels < l). Everything is batched over items; the only Python loops run over levels, epochs and,
in collision resolution, over the (few) colliding items.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers between consecutive `sizes`, ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def kmeans(points: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """[k, d] centroids by Lloyd's algorithm from k distinct random points (points repeat when fewer than k;
    an empty cluster keeps its centroid)."""
    n = points.shape[0]
    start = torch.randperm(n, generator=generator)[:k] if n >= k else torch.randint(n, (k,), generator=generator)
    centroids = points[start].clone()
    for _ in range(iterations):
        assign = torch.cdist(points, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


class RQVAE(nn.Module):
    """MLP encoder to a `latent`-d z, `levels` residual codebooks of `codebook` words, mirrored decoder."""

    def __init__(self, in_dim: int, hidden: Sequence[int], latent: int, levels: int, codebook: int, beta: float):
        super().__init__()
        self.encoder = mlp([in_dim, *hidden, latent])
        self.decoder = mlp([latent, *reversed(hidden), in_dim])
        self.codebooks = nn.Parameter(torch.zeros(levels, codebook, latent))
        self.levels, self.size, self.beta = levels, codebook, beta

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes [N, L], chosen codewords [N, L, d], residuals r_l [N, L, d]) by greedy nearest codewords."""
        residual, codes, chosen, residuals = z, [], [], []
        for level in range(self.levels):
            book = self.codebooks[level]
            code = torch.cdist(residual, book).argmin(1)
            residuals.append(residual)
            codes.append(code)
            chosen.append(book[code])
            residual = residual - book[code]
        return torch.stack(codes, 1), torch.stack(chosen, 1), torch.stack(residuals, 1)

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        z = self.encoder(x)
        _, chosen, residuals = self.quantize(z)
        z_hat = chosen.sum(1)
        reconstruction = F.mse_loss(self.decoder(z + (z_hat - z).detach()), x)
        codebook = F.mse_loss(chosen, residuals.detach()) * self.levels
        commitment = F.mse_loss(residuals, chosen.detach()) * self.levels
        total = reconstruction + codebook + self.beta * commitment
        return total, {"reconstruction": float(reconstruction.detach()), "quantisation": float(codebook.detach())}

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, generator: torch.Generator, iterations: int = 20) -> None:
        residual = self.encoder(x)
        for level in range(self.levels):
            self.codebooks.data[level] = kmeans(residual, self.size, iterations, generator)
            nearest = torch.cdist(residual, self.codebooks[level]).argmin(1)
            residual = residual - self.codebooks[level][nearest]


@dataclass
class RQTraining:
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    seed: int


def train_rqvae(model: RQVAE, x: torch.Tensor, spec: RQTraining) -> list[dict[str, float]]:
    """AdamW over shuffled batches; k-means initialisation on the first batch. History every tenth epoch."""
    generator = torch.Generator().manual_seed(spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    order = torch.randperm(x.shape[0], generator=generator)
    model.init_codebooks(x[order[:spec.batch_size]], generator)
    history = []
    for epoch in range(1, spec.epochs + 1):
        order = torch.randperm(x.shape[0], generator=generator)
        parts = []
        for start in range(0, x.shape[0], spec.batch_size):
            loss, figures = model.loss(x[order[start:start + spec.batch_size]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            parts.append(figures)
        if epoch % 10 == 0 or epoch == spec.epochs:
            history.append({"epoch": epoch, **{k: sum(p[k] for p in parts) / len(parts) for k in parts[0]}})
    return history


# ------------------------------------------------------------------------------------- collisions


def collision_rate(codes: torch.Tensor) -> float:
    """Share of items whose code tuple an earlier item already has: 1 - distinct tuples / items."""
    return 1.0 - torch.unique(codes, dim=0).shape[0] / max(1, codes.shape[0])


def _requantize(book: torch.Tensor, residual: torch.Tensor, level: int, code: int) -> tuple[list[int], torch.Tensor]:
    """Codes of levels > `level` chosen greedily after setting `level` to `code`; the last level's residual."""
    codes = [code]
    residual = residual - book[level][code]
    for deeper in range(level + 1, book.shape[0] - 1):
        nearest = int(torch.cdist(residual[None], book[deeper]).argmin())
        codes.append(nearest)
        residual = residual - book[deeper][nearest]
    return codes, residual


def resolve_collisions(codes: torch.Tensor, residuals: torch.Tensor, book: torch.Tensor,
                       max_passes: int = 8) -> tuple[torch.Tensor, dict[str, Any]]:
    """Unique code tuples (MQL4GRec): in each group of items sharing a tuple, the item nearest its last-level
    codeword keeps it; each other item takes the nearest unused last-level codeword, and when the last level
    is exhausted, backtracks one level up (next-nearest codeword there, the deeper levels re-chosen from the
    recomputed residual), then further up. Passes repeat until no tuple is shared."""
    levels, size = book.shape[0], book.shape[1]
    if size ** levels < codes.shape[0]:
        raise ValueError(f"gcrs: {levels} levels x {size} codewords ({size ** levels} IDs) cannot give "
                         f"{codes.shape[0]} items distinct IDs")
    codes = codes.clone()
    moved, backtracks, passes = 0, 0, 0
    last_distance = ((residuals[:, -1, None, :] - book[-1][None]) ** 2).sum(-1)  # [N, K]
    while collision_rate(codes) > 0 and passes < max_passes:
        passes += 1
        used = {tuple(row) for row in codes.tolist()}
        groups: dict[tuple[int, ...], list[int]] = {}
        for item, row in enumerate(codes.tolist()):
            groups.setdefault(tuple(row), []).append(item)
        for key, members in groups.items():
            if len(members) < 2:
                continue
            members.sort(key=lambda i: float(last_distance[i, key[-1]]))
            for item in members[1:]:
                new, backtracked = _reassign(codes[item].tolist(), residuals[item], book, used)
                used.add(tuple(new))
                codes[item] = torch.tensor(new)
                moved, backtracks = moved + 1, backtracks + backtracked
    if collision_rate(codes) > 0:
        raise RuntimeError(f"gcrs: collisions remain after {passes} resolution passes")
    return codes, {"items_moved": moved, "backtracks": backtracks, "passes": passes,
                   "last_level_residual_after_backtrack": "recomputed"}


def _reassign(row: list[int], residual: torch.Tensor, book: torch.Tensor, used: set[tuple[int, ...]]
              ) -> tuple[list[int], int]:
    """The nearest unused tuple for one item: last level first, then backtracking up the levels."""
    levels = book.shape[0]
    last = residual[levels - 1]
    for code in torch.cdist(last[None], book[-1])[0].argsort().tolist():
        if (*row[:-1], code) not in used:
            return [*row[:-1], code], 0
    for level in range(levels - 2, -1, -1):
        order = torch.cdist(residual[level][None], book[level])[0].argsort().tolist()
        for code in order[1:]:
            deeper, remainder = _requantize(book, residual[level], level, code)
            prefix = [*row[:level], *deeper]
            for final in torch.cdist(remainder[None], book[-1])[0].argsort().tolist():
                if (*prefix, final) not in used:
                    return [*prefix, final], 1
    raise RuntimeError("gcrs: no free semantic ID left")  # unreachable when size ** levels >= items


def usage(codes: torch.Tensor, size: int) -> list[float]:
    """Share of the `size` codewords used at each level."""
    return [torch.unique(codes[:, level]).numel() / size for level in range(codes.shape[1])]
