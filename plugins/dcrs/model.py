"""`dcrs` on the `hybrid` backbone: demonstration-augmented recommendation (Dao et al., SIGIR 2024; SYSTEMS.md §8).

For each context c the m most similar training turns are retrieved (`demonstrations.DemonstrationIndex`; never
from c's own conversation when c is a training context). Each demonstration j is encoded from its context, its
response and its labelled items (the paper's demonstration: a retrieved context with its response and
recommended items; docs/dcrs.md numbers the equations D1-D5, this file implements D2-D3):

    (D2)  d_j = W_c t(ctx_j) + W_r t(resp_j) + mean_{y ∈ Y_j} e_y        (t: the frozen sentence encoder,
                                                                          e_y: the hybrid's item vectors)
and attended by the hybrid's fused context representation u (`Hybrid.represent`):

    (D3)  α = softmax_j( (W_q u)·d_j / √dim )  over the retrieved j;   r = Σ_j α_j d_j;   u' = u + W_o r

with W_o initialised at zero, so the untrained model is the hybrid and training learns how much the
demonstrations add; a context without demonstrations has r = 0. The item head scores u' as the hybrid scores u.
`demo_entities=True` also applies DCRS's prompt-side rule (D4; SYSTEMS.md §8 "injection for recommendation"):
the demonstrations' context entities and labelled items are appended to the context entities, truncated to the
last `max_context_entities` so they are kept (`merge_entities`).

Presets (recorded): ``paper`` retrieves with `simcse`, ``released`` with `random` (what the released
recommendation loaders use); `retriever` overrides either.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from harness.api import RunContext
from harness.data import RecSample, Split
from plugins.models.blocks import pad
from plugins.models.hybrid import Hybrid
from plugins.models.text_encoder import context_text

from .demonstrations import PRESETS, DemonstrationIndex, merge_entities, rec_pool, resolve_retriever
from .signature import extended


class DemonstrationAttention(nn.Module):
    """r = Σ_j softmax_j((W_q u)·d_j/√dim) d_j over the unmasked demonstrations (0 when none), u' = u + W_o r."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(self, u: torch.Tensor, demos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """u [B, d], demos [B, m, d], mask [B, m] (True = a real demonstration) -> u' [B, d]."""
        scores = torch.einsum("bd,bmd->bm", self.query(u), demos) / math.sqrt(u.shape[-1])
        scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~mask.any(1, keepdim=True), 0.0)
        weights = torch.softmax(scores, dim=1) * mask.to(u.dtype)
        return u + self.out(torch.einsum("bm,bmd->bd", weights, demos))


class DCRS(Hybrid):
    """The hybrid whose context vector attends over the retrieved demonstrations (D2, D3)."""

    def __init__(self, ctx: RunContext, preset: str = "paper", retriever: str | None = None,
                 retriever_params: dict[str, Any] | None = None, demonstrations: int = 3,
                 demo_entities: bool = False, **hybrid: Any):
        name = resolve_retriever(preset, "rec", retriever)
        super().__init__(ctx, **hybrid)
        if not (self.use_text and self.use_entities):
            raise ValueError("dcrs on the hybrid backbone needs both views (use_text and use_entities)")
        self.preset, self.demo_entities = preset, demo_entities
        self.pool = rec_pool(ctx.train)
        self.index = DemonstrationIndex(ctx, self.pool, name, retriever_params, demonstrations, "rec")
        dim = self.text_proj.out_features
        train = ctx.train
        contexts = [train.dialogues[e.dialogue_index].turns[:e.turn] for e in self.pool]
        # the frozen encoder's vectors of every demonstration (cached on disk), one row per pool entry + padding
        context_vectors = torch.from_numpy(self.text.encode([context_text(t) for t in contexts]))
        response_vectors = torch.from_numpy(self.text.encode([e.response for e in self.pool]))
        zero = context_vectors.new_zeros(1, context_vectors.shape[1])
        self.register_buffer("demo_context", torch.cat([context_vectors, zero]).to(ctx.device), persistent=False)
        self.register_buffer("demo_response", torch.cat([response_vectors, zero]).to(ctx.device), persistent=False)
        items, item_mask = pad([e.items for e in self.pool] + [[]], 0, ctx.device)
        self.register_buffer("demo_items", items, persistent=False)
        self.register_buffer("demo_item_mask", item_mask, persistent=False)
        self.context_proj = nn.Linear(self.text.dim, dim)
        self.response_proj = nn.Linear(self.text.dim, dim, bias=False)
        self.attention = DemonstrationAttention(dim)
        self.item_entity_ids = list(ctx.dataset.kg.item_entities)

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> dict[str, Any]:
        demos = self.index.for_samples(split, samples, split.rec_samples)  # [B, m], -1 = none
        batch = super().make_batch(split, samples)
        rows = torch.from_numpy(demos).to(self.device)
        batch["demo_mask"] = rows >= 0
        batch["demos"] = rows.where(rows >= 0, torch.full_like(rows, len(self.pool)))  # padding row
        if self.demo_entities:
            merged = [merge_entities(s.context_entities, self.retrieved_entities(row), self.max_context_entities)
                      for s, row in zip(samples, demos.tolist())]
            batch["entities"], batch["mask"] = pad(merged, self.pad_entity, self.device, self.max_context_entities)
        return batch

    def retrieved_entities(self, row: Sequence[int]) -> list[int]:
        return self.index.retrieved_entities(row, self.item_entity_ids)

    def demonstration_vectors(self, batch: dict[str, Any], entities: torch.Tensor | None) -> torch.Tensor:
        """d_j [B, m, dim] of the batch's demonstrations (module docstring)."""
        demos = batch["demos"]
        items = self.item_vectors(entities)[self.demo_items[demos]]  # [B, m, L, dim]
        mask = self.demo_item_mask[demos].unsqueeze(-1).to(items.dtype)
        labelled = (items * mask).sum(2) / mask.sum(2).clamp(min=1.0)
        return (self.context_proj(self.dropout(self.demo_context[demos])) +
                self.response_proj(self.dropout(self.demo_response[demos])) + labelled)

    def represent(self, batch: dict[str, Any], entities: torch.Tensor | None = None) -> torch.Tensor:
        entities = self.entity_vectors() if entities is None else entities
        u = super().represent(batch, entities)
        return self.attention(u, self.demonstration_vectors(batch, entities), batch["demo_mask"])

    def describe(self) -> dict[str, Any]:
        return {"backbone": "hybrid", "variant": self.index.name, "preset": self.preset, "presets": PRESETS,
                "injection": "demonstration attention over (context, response, labelled items) added to the "
                             "fused context vector (W_o zero-initialised)" +
                             ("; demonstration entities appended to the context entities" if self.demo_entities
                              else ""),
                "demo_entities": self.demo_entities, "demonstrations": self.index.describe(),
                "deviations": ["top-m by similarity without SimCSE's 0.1 cosine floor",
                               "hybrid backbone (frozen MiniLM vector + R-GCN) instead of KGPrompt + a decoder"]}


DCRS.__signature__ = extended(DCRS.__init__, Hybrid.__init__)
