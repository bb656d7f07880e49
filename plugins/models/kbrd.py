"""`kbrd`: KBRD's recommender (Chen et al., EMNLP 2019; SYSTEMS.md §4), entity-only.

A featureless R-GCN layer (dim 128, 8 bases, relations with > 1,000 edges, reverse edges, self-loops)
encodes every KG entity; the user vector is the self-attention pooling of the context entities' vectors;
scores are u·h_e + b_e. The original scores all entities; here the logits are sliced to the catalogue
items (LOSSES.md §1.3), which the losses and the ranking need. Without context entities u = 0 and the
scores are the bias alone.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from harness.api import LogitsTraining, RunContext
from harness.data import RecSample, Split

from .blocks import ItemHead, RGCNEncoder, SelfAttentionPooling, cosine_variant, item_prior, pad, prepare_kg


class KBRD(LogitsTraining, nn.Module):
    """Entity-only recommender: R-GCN + self-attention pooling + item head over the items' entity vectors."""

    trainable = True

    def __init__(self, ctx: RunContext, dim: int = 128, layers: int = 1, num_bases: int = 8,
                 min_relation_edges: int | None = 1000, max_context_entities: int | None = None,
                 head: str = "dot", scale: float = 30.0, item_bias: str = "none", dropout: float = 0.0):
        super().__init__()
        kg = ctx.dataset.kg
        if kg is None:
            raise ValueError(f"kbrd needs a knowledge graph; dataset '{ctx.dataset.name}' has none")
        self.device, self.max_context_entities = ctx.device, max_context_entities
        self.pad_entity = kg.num_entities  # padded rows point at an all-zero row
        self.encoder = RGCNEncoder(prepare_kg(kg, min_relation_edges), dim, layers, num_bases, featureless=True,
                                   dropout=dropout)
        self.pooling = SelfAttentionPooling(dim)
        self.head = ItemHead(dim, ctx.dataset.num_items, head, scale, own_items=False,
                             prior=item_prior(ctx, item_bias) if item_bias != "none" else None)
        self.register_buffer("item_entities", torch.tensor(kg.item_entities, dtype=torch.long), persistent=False)
        self._entities: torch.Tensor | None = None  # eval-time cache of the R-GCN output

    def train(self, mode: bool = True) -> "KBRD":
        self._entities = None  # parameters may change (training) or were just loaded
        return super().train(mode)

    def entity_vectors(self) -> torch.Tensor:
        """[num_entities + 1, dim]: R-GCN output plus a zero padding row (computed once per eval pass)."""
        if self._entities is not None and not self.training:
            return self._entities
        h = self.encoder()
        h = torch.cat([h, h.new_zeros(1, h.shape[1])])
        if not self.training:
            self._entities = h
        return h

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> dict[str, Any]:
        ids, mask = pad([s.context_entities for s in samples], self.pad_entity, self.device,
                        self.max_context_entities)
        return {"entities": ids, "mask": mask}

    def represent(self, batch: dict[str, Any], entities: torch.Tensor | None = None) -> torch.Tensor:
        """The user vector u [B, dim] (0 for contexts without entities)."""
        entities = self.entity_vectors() if entities is None else entities
        return self.pooling(entities[batch["entities"]], batch["mask"])

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        entities = self.entity_vectors()
        return self.head(self.represent(batch, entities), entities[self.item_entities])

    def scores(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.forward(batch)


KBRDCosine = cosine_variant(KBRD, "KBRDCosine", "kbrd with the cosine head s·cos(u, h_item) (no bias).")
