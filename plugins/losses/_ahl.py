"""AHL, Adaptive Hierarchical Loss (ALOHA, arXiv 2505.19965): a RECONSTRUCTION (LOSSES.md §12).

Levels run from the leaf (items) upwards. A coarse level h is given by a sparse item→node matrix T (rows sum
to 1, composed from the leaf); log p^(h)_k = LSE_j(log p_j + log T_jk) (never log Σ p), labels are the soft
rows T[y]. Node weights ω ∝ f^(−ρ) (f = smoothed training frequency of the node), normalised to mean 1 per
level. In training mode Gumbel noise β_g·g is added to the logits (temperature τ_g) for the levels chosen by
``disturb``; the noise comes from a generator owned by the loss and seeded from the run seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._base import ItemLoss, counts_provenance, raw_label_counts, smooth_counts

HIERARCHIES = ("auto", "genre", "genre_tier", "tier")
TIER_NAMES = ("head", "body", "tail")


@dataclass
class Level:
    """A coarse level: sparse composed map items → nodes (edge lists) with weights T_{item,node} > 0."""

    name: str
    items: np.ndarray  # [E] item index
    nodes: np.ndarray  # [E] node index
    weights: np.ndarray  # [E] T_{item,node}; each item's weights sum to 1
    num_nodes: int
    node_names: list[str]

    def dense(self, num_items: int) -> np.ndarray:
        matrix = np.zeros((num_items, self.num_nodes))
        np.add.at(matrix, (self.items, self.nodes), self.weights)
        return matrix


def level_from_groups(name: str, groups: Sequence[Sequence[str]]) -> Level:
    """Soft level from each item's node names (an item with k nodes gets weight 1/k on each)."""
    node_names = sorted({node for group in groups for node in group})
    index = {node: position for position, node in enumerate(node_names)}
    items, nodes, weights = [], [], []
    for item, group in enumerate(groups):
        unique = sorted(set(group))
        if not unique:
            raise ValueError(f"loss 'ahl': item {item} has no node at level '{name}'")
        for node in unique:
            items.append(item)
            nodes.append(index[node])
            weights.append(1.0 / len(unique))
    return Level(name, np.array(items, dtype=np.int64), np.array(nodes, dtype=np.int64),
                 np.array(weights, dtype=np.float64), len(node_names), node_names)


def item_genres(dataset: Any) -> list[list[str]] | None:
    """Genre names per catalogue item, from the KG's `genre` relation or else the catalogue metadata."""
    if dataset is None:
        return None
    num_items = dataset.num_items
    kg = getattr(dataset, "kg", None)
    if kg is not None and "genre" in kg.relation_names:
        relation = kg.relation_names.index("genre")
        item_of = {entity: item for item, entity in enumerate(kg.item_entities)}
        names = kg.entity_names
        genres: list[list[str]] = [[] for _ in range(num_items)]
        for head, rel, tail in zip(kg.heads, kg.relations, kg.tails):
            if rel != relation:
                continue
            if head in item_of and tail not in item_of:
                item, genre = item_of[head], tail
            elif tail in item_of and head not in item_of:
                item, genre = item_of[tail], head
            else:
                continue
            genres[item].append(names[genre] if names else f"entity:{genre}")
        if any(genres):
            return genres
    metadata = getattr(dataset.catalogue, "metadata", None)
    if metadata:
        genres = [[str(g) for g in (entry or {}).get("genre", []) or []] for entry in metadata]
        if any(genres):
            return genres
    return None


def build_levels(hierarchy: str, genres: list[list[str]] | None, tiers: Sequence[str]) -> list[Level]:
    """Coarse levels, finest first, for the named hierarchy (LOSSES.md §12, preferences 1-3)."""
    if hierarchy not in HIERARCHIES:
        raise ValueError(f"loss 'ahl': hierarchy must be one of {HIERARCHIES}, got {hierarchy!r}")
    if hierarchy == "auto":
        hierarchy = "genre" if genres else "tier"
    if hierarchy == "tier":
        return [level_from_groups("tier", [[tier] for tier in tiers])]
    if not genres:
        raise ValueError(f"loss 'ahl': hierarchy '{hierarchy}' needs item genres (a KG 'genre' relation or "
                         f"catalogue metadata) and the dataset has none; use hierarchy='tier'")
    filled = [group if group else ["unknown"] for group in genres]
    genre_level = level_from_groups("genre", filled)
    if hierarchy == "genre":
        return [genre_level]
    crossed = [[f"{genre}|{tier}" for genre in group] for group, tier in zip(filled, tiers)]
    return [level_from_groups("genre_tier", crossed), genre_level]


def node_weights(frequency: np.ndarray, rho: float) -> np.ndarray:
    weights = np.power(frequency, -rho)
    return weights / weights.mean()


class AHL(ItemLoss):
    """Σ_h λ_h·mean_i[−Σ_n ω_n^(h)·y^(h)_{in}·log p^(h)_{in}] over the leaf and the coarse levels."""

    loss_name = "ahl"

    def __init__(self, counts: np.ndarray, levels: list[Level], seed: int = 0, count_smoothing: str = "max1",
                 level_weights: Sequence[float] | None = None, gumbel_beta: float = 1.0, gumbel_tau: float = 1.0,
                 rho: float = 0.5, disturb: str = "coarse", weighting: str = "frequency", hierarchy: str = "custom"):
        if disturb not in ("coarse", "all", "none"):
            raise ValueError(f"loss 'ahl': disturb must be 'coarse', 'all' or 'none', got {disturb!r}")
        if weighting not in ("frequency", "none"):
            raise ValueError(f"loss 'ahl': node weighting must be 'frequency' or 'none', got {weighting!r}")
        if gumbel_tau <= 0:
            raise ValueError(f"loss 'ahl': gumbel_tau must be > 0, got {gumbel_tau}")
        weights = [1.0] * (len(levels) + 1) if level_weights is None else [float(w) for w in level_weights]
        if len(weights) != len(levels) + 1:
            raise ValueError(f"loss 'ahl': level_weights needs {len(levels) + 1} values (leaf first, then "
                             f"{[level.name for level in levels]}), got {len(weights)}")
        num_items = int(counts.size)
        super().__init__(num_items=num_items, hierarchy=hierarchy, levels=[level.name for level in levels],
                         level_weights=weights, gumbel_beta=gumbel_beta, gumbel_tau=gumbel_tau, rho=rho,
                         disturb=disturb, node_weighting=weighting, count_smoothing=count_smoothing, seed=seed,
                         status="reconstructed")
        smoothed = smooth_counts(counts, count_smoothing, self.loss_name)
        self.provenance = counts_provenance(counts, count_smoothing)
        self.level_weights, self.levels = weights, levels
        self.gumbel_beta, self.gumbel_tau, self.disturb, self.seed = float(gumbel_beta), float(gumbel_tau), disturb, seed
        leaf_w = node_weights(smoothed, rho) if weighting == "frequency" else np.ones(num_items)
        self.register_buffer("leaf_weights", torch.as_tensor(leaf_w, dtype=torch.float64))
        for h, level in enumerate(levels):
            dense = level.dense(num_items)
            if not np.allclose(dense.sum(axis=1), 1.0):
                raise ValueError(f"loss 'ahl': rows of level '{level.name}' must sum to 1")
            frequency = smoothed @ dense
            omega = node_weights(frequency, rho) if weighting == "frequency" else np.ones(level.num_nodes)
            self.register_buffer(f"labels_{h}", torch.as_tensor(dense, dtype=torch.float64))
            self.register_buffer(f"omega_{h}", torch.as_tensor(omega, dtype=torch.float64))
            self.register_buffer(f"edge_items_{h}", torch.as_tensor(level.items))
            self.register_buffer(f"edge_nodes_{h}", torch.as_tensor(level.nodes))
            self.register_buffer(f"edge_log_w_{h}", torch.as_tensor(np.log(level.weights), dtype=torch.float64))
        self._generators: dict[str, torch.Generator] = {}

    def _gumbel(self, like: torch.Tensor) -> torch.Tensor:
        key = str(like.device)
        if key not in self._generators:
            generator = torch.Generator(device=like.device)
            generator.manual_seed(int(self.seed))
            self._generators[key] = generator
        # U clamped to [1e-10, 1 − 1e-10] (§12); fp32 cannot hold 1 − 1e-10, so its upper clamp is 1 − 2^-24.
        upper = 1.0 - 1e-10 if like.dtype == torch.float64 else 1.0 - 2.0 ** -24
        uniform = torch.rand(like.shape, generator=self._generators[key], device=like.device, dtype=like.dtype)
        return -torch.log(-torch.log(uniform.clamp(1e-10, upper)))

    def coarse_log_probs(self, log_p: torch.Tensor, h: int) -> torch.Tensor:
        """log p^(h) [B, K] = LSE over each node's items of (log p_j + log T_jk), max-shifted per node."""
        items, nodes = getattr(self, f"edge_items_{h}"), getattr(self, f"edge_nodes_{h}")
        values = log_p[:, items] + self._buffer(f"edge_log_w_{h}", log_p)
        index = nodes.unsqueeze(0).expand_as(values)
        shape = (log_p.shape[0], self.levels[h].num_nodes)
        shift = torch.full(shape, float("-inf"), dtype=log_p.dtype, device=log_p.device)
        shift = shift.scatter_reduce(1, index, values.detach(), reduce="amax", include_self=True)
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        total = torch.zeros(shape, dtype=log_p.dtype, device=log_p.device)
        total = total.scatter_add(1, index, (values - shift.gather(1, index)).exp())
        return total.log() + shift

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        clean = F.log_softmax(z, dim=1)
        noisy = clean
        if self.training and self.gumbel_beta != 0.0 and self.disturb != "none":
            noisy = F.log_softmax((z + self.gumbel_beta * self._gumbel(z)) / self.gumbel_tau, dim=1)
        leaf = noisy if self.disturb == "all" else clean
        loss = self.level_weights[0] * -(self._buffer("leaf_weights", z)[labels] * leaf.gather(1, labels[:, None])[:, 0])
        for h in range(len(self.levels)):
            if self.level_weights[h + 1] == 0.0:
                continue
            log_q = self.coarse_log_probs(noisy if self.disturb != "none" else clean, h)
            target = self._buffer(f"labels_{h}", z)[labels]
            weighted = target * self._buffer(f"omega_{h}", z)
            terms = torch.where(target > 0, weighted * log_q, torch.zeros_like(log_q))
            loss = loss - self.level_weights[h + 1] * terms.sum(dim=1)
        return loss


def build_ahl(ctx: Any, hierarchy: str, **options: Any) -> AHL:
    counts = raw_label_counts(ctx, "ahl")
    tiers = list(ctx.stats.tiers)
    if len(tiers) != counts.size:
        raise ValueError(f"loss 'ahl': {len(tiers)} popularity tiers for {counts.size} items")
    genres = item_genres(getattr(ctx, "dataset", None)) if hierarchy != "tier" else None
    levels = build_levels(hierarchy, genres, tiers)
    return AHL(counts, levels, seed=int(getattr(ctx, "seed", 0)), hierarchy=hierarchy, **options)
