"""Shared building blocks of the learned models (SYSTEMS.md §1): KG preparation, the R-GCN entity encoder,
self-attention pooling, gated fusion, item heads, the context-mention bias, padding helpers and item-prior
initialisation.

Every block works on batched tensors on the model's device; nothing loops over samples or items.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from harness.data import KnowledgeGraph

HEADS = ("dot", "cosine")


@dataclass
class PreparedKG:
    """Edges as torch-geometric takes them, after relation filtering and reverse edges."""

    num_entities: int
    edge_index: torch.Tensor  # [2, E]
    edge_type: torch.Tensor  # [E], relations renumbered 0..num_relations-1
    num_relations: int
    kept_relations: list[str]


def prepare_kg(kg: KnowledgeGraph, min_relation_edges: int | None = 1000, undirected: bool = True) -> PreparedKG:
    """SYSTEMS.md §1.1: reverse edges with the same relation, self-loop relation kept, and (KBRD lineage)
    only relations with more than `min_relation_edges` stored edges (None keeps every relation)."""
    edge_index, edge_type = kg.edge_index(undirected=False, self_loops=True)
    counts = torch.bincount(edge_type, minlength=kg.num_relations)
    keep = torch.ones(kg.num_relations, dtype=torch.bool)
    if min_relation_edges is not None:
        keep = counts > min_relation_edges
    if kg.self_loop_relation is not None:
        keep[kg.self_loop_relation] = True
    kept = torch.nonzero(keep).flatten()
    renumber = torch.full((kg.num_relations,), -1, dtype=torch.long)
    renumber[kept] = torch.arange(len(kept))
    selected = keep[edge_type]
    edge_index, edge_type = edge_index[:, selected], renumber[edge_type[selected]]
    if undirected:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        edge_type = torch.cat([edge_type, edge_type])
    return PreparedKG(kg.num_entities, edge_index, edge_type, max(1, len(kept)),
                      [kg.relation_names[i] for i in kept.tolist()])


class RelationGroups(nn.Module):
    """The KG's edges grouped by relation, for `grouped_rgcn`: per relation, the distinct target entities and,
    per edge, the row of its (relation, target) pair; 1/|N_r(e)| per row. Buffers only (not in state dicts)."""

    def __init__(self, kg: PreparedKG):
        super().__init__()
        src, dst = kg.edge_index
        rows, nodes, sizes = [], [], []
        offset = 0
        order = torch.argsort(kg.edge_type, stable=True)
        src, dst, types = src[order], dst[order], kg.edge_type[order]
        for relation in range(kg.num_relations):
            chosen = types == relation
            targets, inverse = torch.unique(dst[chosen], return_inverse=True)
            rows.append(inverse + offset)
            nodes.append(targets)
            sizes.append(len(targets))
            offset += len(targets)
        self.sizes = sizes
        row_of_edge = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
        degree = torch.bincount(row_of_edge, minlength=offset).clamp(min=1).float()
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("row_of_edge", row_of_edge, persistent=False)
        self.register_buffer("node_of_row", torch.cat(nodes) if nodes else torch.zeros(0, dtype=torch.long),
                             persistent=False)
        self.register_buffer("inverse_degree", 1.0 / degree, persistent=False)


def grouped_rgcn(conv: nn.Module, x: torch.Tensor, groups: RelationGroups) -> torch.Tensor:
    """`RGCNConv`'s forward (mean aggregation, basis decomposition, root weight, bias) with `conv`'s own
    parameters, computed relation by relation on the entities that have neighbours of that relation only:
    h'_e = W_0 h_e + b + Σ_r mean_{e' ∈ N_r(e)} h_{e'} · W_r. Equal to `RGCNConv` up to float rounding; on the
    INSPIRED KG (17k entities, 13 relations) forward + backward takes about half the time, because the dense
    products cover the 42k (relation, entity) pairs with edges instead of all 225k."""
    if conv.num_bases is not None:
        weight = (conv.comp @ conv.weight.view(conv.num_bases, -1)).view(conv.num_relations, conv.in_channels_l,
                                                                          conv.out_channels)
    else:
        weight = conv.weight
    messages = x.new_zeros(len(groups.node_of_row), x.shape[1]).index_add_(0, groups.row_of_edge, x[groups.src])
    messages = messages * groups.inverse_degree[:, None]
    transformed = torch.cat([part @ weight[relation]
                             for relation, part in enumerate(messages.split(groups.sizes))])
    out = x @ conv.root + (conv.bias if conv.bias is not None else 0.0)
    return out.index_add(0, groups.node_of_row, transformed)


class RGCNEncoder(nn.Module):
    """R-GCN entity encoder with basis decomposition (PyG `RGCNConv`, never `FastRGCNConv`).

    `featureless=True` is KBRD's form: the first layer takes one-hot entities, so its relation weights are
    entity × dim tables. Otherwise a learned entity table of `dim` is the input and the output is added to
    it (residual, as KGPrompt's H = RGCN(N) + N). `layers=0` gives the plain entity table. `grouped=True`
    computes the same layers with `grouped_rgcn` (faster on CPU; needs entity features, not featureless).
    """

    def __init__(self, kg: PreparedKG, dim: int = 128, layers: int = 1, num_bases: int | None = 8,
                 featureless: bool = True, dropout: float = 0.0, grouped: bool = False):
        super().__init__()
        from torch_geometric.nn import RGCNConv

        if layers < 0 or (featureless and layers < 1):
            raise ValueError(f"R-GCN needs layers >= {1 if featureless else 0}, got {layers}")
        if grouped and featureless:
            raise ValueError("the grouped R-GCN needs entity features (featureless=False)")
        self.groups = RelationGroups(kg) if grouped else None
        self.num_entities, self.featureless = kg.num_entities, featureless
        self.register_buffer("edge_index", kg.edge_index.clone(), persistent=False)
        self.register_buffer("edge_type", kg.edge_type.clone(), persistent=False)
        bases = num_bases if num_bases and num_bases < kg.num_relations else None
        self.embedding = None if featureless else nn.Embedding(kg.num_entities, dim)
        if self.embedding is not None:
            nn.init.normal_(self.embedding.weight, std=dim ** -0.5)
        self.convs = nn.ModuleList(
            RGCNConv(kg.num_entities if featureless and i == 0 else dim, dim, kg.num_relations, num_bases=bases)
            for i in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self) -> torch.Tensor:
        """[num_entities, dim] entity representations."""
        x = None if self.featureless else self.embedding.weight
        for i, conv in enumerate(self.convs):
            h = grouped_rgcn(conv, x, self.groups) if self.groups is not None else \
                conv(x, self.edge_index, self.edge_type)
            if i < len(self.convs) - 1:
                h = self.dropout(torch.relu(h))
            x = h if x is None or self.featureless and i == 0 else h + x
        return x


class SelfAttentionPooling(nn.Module):
    """a_j = bᵀ tanh(Aᵀ h_j); α = masked softmax(a); u = Σ α_j h_j; u = 0 when nothing is unmasked."""

    def __init__(self, dim: int):
        super().__init__()
        self.a = nn.Parameter(torch.empty(dim, dim))
        self.b = nn.Parameter(torch.empty(dim, 1))
        nn.init.xavier_uniform_(self.a, gain=1.414)
        nn.init.xavier_uniform_(self.b, gain=1.414)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h [B, L, d], mask [B, L] (True = real) -> [B, d]."""
        scores = (torch.tanh(h @ self.a) @ self.b).squeeze(-1)
        has_any = mask.any(dim=1, keepdim=True)
        scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~has_any, 0.0)
        weights = torch.softmax(scores, dim=1) * mask.to(h.dtype)  # empty rows: uniform × 0 = 0
        return torch.bmm(weights.unsqueeze(1), h).squeeze(1)


class GatedFusion(nn.Module):
    """g = σ(W[x; y] + c); out = g·x + (1 − g)·y (per dimension), as KGSF's and the hybrid's gate."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([x, y], dim=-1)))
        return g * x + (1 - g) * y


class ItemHead(nn.Module):
    """Item scores from a context vector: `dot` (u·e_c + b_c) or `cosine` (s·cos(u, e_c), no bias).

    Item vectors come from the head's own table, or are passed in (e.g. R-GCN item entities). The bias
    may start at the log item prior (log-popularity), which is what makes small data sets learnable.
    """

    def __init__(self, dim: int, num_items: int, head: str = "dot", scale: float = 30.0, own_items: bool = True,
                 bias: bool = True, prior: np.ndarray | None = None):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.head, self.scale = head, float(scale)
        self.items = nn.Parameter(torch.empty(num_items, dim)) if own_items else None
        if self.items is not None:
            nn.init.normal_(self.items, std=dim ** -0.5)
        self.bias = nn.Parameter(torch.zeros(num_items)) if bias and head == "dot" else None
        if self.bias is not None and prior is not None:
            with torch.no_grad():
                self.bias.copy_(torch.as_tensor(prior, dtype=torch.float32))

    def forward(self, u: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        items = self.items if items is None else items
        if self.head == "cosine":
            cos = nn.functional.normalize(u, dim=-1, eps=1e-8) @ nn.functional.normalize(items, dim=-1, eps=1e-8).T
            return self.scale * cos.clamp(-1.0, 1.0)
        logits = u @ items.T
        return logits + self.bias if self.bias is not None else logits


def mention_triples(samples: Sequence[Any], device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, item, recency rank) of every item the contexts mention; `context_items` is newest first."""
    rows = [row for row, sample in enumerate(samples) for _ in sample.context_items]
    items = [item for sample in samples for item in sample.context_items]
    recency = [rank for sample in samples for rank in range(len(sample.context_items))]
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return as_tensor(rows), as_tensor(items), as_tensor(recency)


class MentionBias(nn.Module):
    """A learned score bonus for the items the context already mentioned, one value per recency rank (the
    newest mention first; ranks >= `ranks` share the last value).

    This is the copy signal the `repeat-context` baselines exploit (users often accept a movie that was
    already discussed), learned instead of hard-coded; it starts at 0, so an untrained model is unchanged.
    In the `novel` setting those items are excluded from the ranking, so it cannot help there.
    """

    def __init__(self, ranks: int = 4, initial: torch.Tensor | None = None):
        super().__init__()
        if ranks < 1:
            raise ValueError(f"mention bias needs at least one recency rank, got {ranks}")
        self.weights = nn.Parameter(torch.zeros(ranks) if initial is None else initial.float().clone())

    @classmethod
    def from_training(cls, ranks: int, samples: Sequence[Any], prior: np.ndarray) -> "MentionBias":
        """Start each rank's bonus at log(hits_r / Σ π(m)): the bonus under which a model that ranks by the
        log prior π (the head's initial bias) expects as many label hits among the rank-r mentions as the
        training split has. Like `item_bias`, it makes the untrained model a sensible baseline (here
        `repeat-context-pop`-like), so the few epochs small data allows are spent on personalising."""
        rows, items, recency = mention_triples(samples, "cpu")
        labels = torch.tensor([sample.label for sample in samples], dtype=torch.long)
        bucket = recency.clamp(max=ranks - 1)
        hits = torch.bincount(bucket, weights=(labels[rows] == items).double(), minlength=ranks)
        mass = torch.bincount(bucket, weights=torch.from_numpy(np.exp(prior.astype(np.float64)))[items],
                              minlength=ranks)
        initial = torch.where((hits > 0) & (mass > 0), torch.log(hits.clamp(min=1) / mass.clamp(min=1e-12)),
                              torch.zeros(ranks, dtype=torch.float64))
        return cls(ranks, initial.clamp(min=0.0))

    def forward(self, logits: torch.Tensor, mentions: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        rows, items, recency = mentions
        if rows.numel() == 0:
            return logits
        bonus = self.weights[recency.clamp(max=self.weights.numel() - 1)].to(logits.dtype)
        return logits.index_put((rows, items), bonus, accumulate=True)


def log_prior(counts: Sequence[int], smoothing: float = 1.0) -> np.ndarray:
    """log((N_c + α) / Σ(N + α)): the bias that makes an untrained dot head rank by popularity."""
    values = np.asarray(counts, dtype=np.float64) + smoothing
    return np.log(values / values.sum()).astype(np.float32)


def item_prior(ctx: Any, kind: str, smoothing: float = 1.0) -> np.ndarray | None:
    """`kind`: "none", "labels" (training-label counts N_c) or "popularity" (training dialogues)."""
    if kind == "none":
        return None
    if kind == "labels":
        return log_prior(ctx.stats.label_counts, smoothing)
    if kind == "popularity":
        return log_prior(ctx.stats.popularity, smoothing)
    raise ValueError(f"item prior must be 'none', 'labels' or 'popularity', got {kind!r}")


def pad(rows: Sequence[Sequence[int]], pad_value: int, device: Any, max_len: int | None = None,
        keep: str = "last") -> tuple[torch.Tensor, torch.Tensor]:
    """([B, L] ids, [B, L] mask) right-padded; rows longer than `max_len` keep their last (or first) ids."""
    if max_len is not None:
        rows = [list(r)[-max_len:] if keep == "last" else list(r)[:max_len] for r in rows] \
            if max_len > 0 else [[] for _ in rows]
    width = max(1, max((len(r) for r in rows), default=0))
    ids = np.full((len(rows), width), pad_value, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, row in enumerate(rows):  # building the batch (make_batch), not the forward pass
        ids[i, :len(row)] = row
        mask[i, :len(row)] = True
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def cosine_variant(base: type, name: str, doc: str) -> type:
    """A subclass of `base` fixed to the cosine head; its signature (for parameter checks) drops `head`."""

    def __init__(self, ctx, **params):
        if "head" in params:
            raise TypeError(f"{name} always uses the cosine head")
        base.__init__(self, ctx, head="cosine", **params)

    signature = inspect.signature(base.__init__)
    variant = type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": base.__module__})
    variant.__signature__ = signature.replace(
        parameters=[p for p in list(signature.parameters.values())[1:] if p.name != "head"])
    return variant
