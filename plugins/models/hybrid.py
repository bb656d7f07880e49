"""`hybrid`: text + knowledge-graph entities, gated, with a prior-initialised item head — the backbone the
later systems (LumiCRS and others) extend.

Views (the UniCRS idea of SYSTEMS.md §7 reduced to what a CPU trains in minutes):

* text: the frozen sentence encoder's context vector (default all-MiniLM-L6-v2, last `max_tokens` tokens,
  cached on disk), projected to `dim`;
* entities: an R-GCN over the KG (learned entity features, residual; `kg_layers=0` gives a plain entity
  table), self-attention pooled over the last `max_context_entities` context entities (0 when none);
* fusion: a per-dimension gate between the two views.

`text_skip=True` adds a direct linear map from the text vector to item scores (the `bert-rec` head) to the
fused head's scores. `mention_bias=R` (0 = off) adds a learned bonus, one per recency rank, to the items the
context already mentioned (the copy signal of `repeat-context`; no effect in the `novel` setting), started
at the value the training split implies (`MentionBias.from_training`).

Item head: `dot` scores u·(e_c + k_c) + b_c, with e_c a learned item table, k_c the item's KG vector
(`tie_kg_items`) and b_c initialised at the log training-label prior (`item_bias`), so the untrained model
already ranks by popularity and learning only has to personalise; or `cosine` (`hybrid-cos`).

Extension points for subclasses (documented API):

* ``represent(batch, entities=None) -> [B, dim]`` the fused context representation, before the head;
* ``item_vectors(entities=None) -> [num_items, dim]`` the item side of the head;
* ``entity_vectors() -> [num_entities + 1, dim]`` the KG encoder output (+ zero padding row), cached in eval;
* ``logits(u, entities=None) -> [B, num_items]`` the head applied to a representation;
* ``direct_terms(logits, batch) -> [B, num_items]`` adds the terms beside the fused head (text skip,
  mention bias): what a subclass with its own training loss must apply to stay identical to `forward`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from harness.api import LogitsTraining, RunContext
from harness.data import RecSample, Split

from .blocks import (GatedFusion, ItemHead, MentionBias, RGCNEncoder, SelfAttentionPooling, cosine_variant,
                     item_prior, mention_triples, pad, prepare_kg)
from .text_encoder import DEFAULT_MODEL, ContextFeatures, TextEncoder


class Hybrid(LogitsTraining, nn.Module):
    trainable = True

    def __init__(self, ctx: RunContext, dim: int = 128, text_encoder: str = DEFAULT_MODEL, max_tokens: int = 256,
                 kg_layers: int = 1, num_bases: int = 8, min_relation_edges: int | None = 1000,
                 max_context_entities: int = 32, use_text: bool = True, use_entities: bool = True,
                 tie_kg_items: bool = True, dropout: float = 0.1, head: str = "dot", scale: float = 30.0,
                 item_bias: str = "labels", text_skip: bool = False, mention_bias: int = 0):
        super().__init__()
        if not (use_text or use_entities):
            raise ValueError("hybrid needs at least one view: use_text or use_entities")
        kg = ctx.dataset.kg
        if use_entities and kg is None:
            raise ValueError(f"hybrid with use_entities needs a knowledge graph; '{ctx.dataset.name}' has none")
        self.device, self.max_context_entities = ctx.device, max_context_entities
        self.use_text, self.use_entities, self.tie_kg_items = use_text, use_entities, tie_kg_items and use_entities
        self.dropout = nn.Dropout(dropout)
        if use_text:
            self.text = TextEncoder(text_encoder, max_tokens, ctx.device, ctx.cache_dir)
            self.features = ContextFeatures(self.text, ctx.device)
            self.text_proj = nn.Linear(self.text.dim, dim)
        if use_entities:
            self.pad_entity = kg.num_entities
            self.kg_encoder = RGCNEncoder(prepare_kg(kg, min_relation_edges), dim, kg_layers, num_bases,
                                          featureless=False, dropout=dropout)
            self.pooling = SelfAttentionPooling(dim)
            self.register_buffer("item_entities", torch.tensor(kg.item_entities, dtype=torch.long),
                                 persistent=False)
        if use_text and use_entities:
            self.fusion = GatedFusion(dim)
        prior = item_prior(ctx, item_bias) if item_bias != "none" else None
        self.head = ItemHead(dim, ctx.dataset.num_items, head, scale, prior=prior)
        # optional direct text -> item scores beside the fused head: the bert-rec head inside the hybrid, so
        # the fused bottleneck only has to add what the entities know (off by default: LumiCRS builds on u)
        self.text_skip = nn.Linear(self.text.dim, ctx.dataset.num_items, bias=False) \
            if text_skip and use_text else None
        if self.text_skip is not None:
            nn.init.zeros_(self.text_skip.weight)
        self.mention_bias = None
        if mention_bias:  # initialised from the training split against the head's prior (uniform if none)
            self.mention_bias = MentionBias.from_training(
                mention_bias, ctx.train.rec_samples,
                prior if prior is not None else np.full(ctx.dataset.num_items, -np.log(ctx.dataset.num_items)))
        self._entities: torch.Tensor | None = None

    def train(self, mode: bool = True) -> "Hybrid":
        self._entities = None
        return super().train(mode)

    def entity_vectors(self) -> torch.Tensor:
        if self._entities is not None and not self.training:
            return self._entities
        h = self.kg_encoder()
        h = torch.cat([h, h.new_zeros(1, h.shape[1])])
        if not self.training:
            self._entities = h
        return h

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        if self.use_text:
            batch["text"] = self.features.rows(split, samples)
        if self.use_entities:
            batch["entities"], batch["mask"] = pad([s.context_entities for s in samples], self.pad_entity,
                                                   self.device, self.max_context_entities)
        if self.mention_bias is not None:
            batch["mentions"] = mention_triples(samples, self.device)
        return batch

    def represent(self, batch: dict[str, Any], entities: torch.Tensor | None = None) -> torch.Tensor:
        """The fused context representation u [B, dim] (what extensions build on)."""
        text = self.text_proj(self.dropout(batch["text"])) if self.use_text else None
        if not self.use_entities:
            return text
        entities = self.entity_vectors() if entities is None else entities
        pooled = self.pooling(entities[batch["entities"]], batch["mask"])
        return pooled if text is None else self.fusion(text, pooled)

    def item_vectors(self, entities: torch.Tensor | None = None) -> torch.Tensor:
        if not self.tie_kg_items:
            return self.head.items
        entities = self.entity_vectors() if entities is None else entities
        return self.head.items + entities[self.item_entities]

    def logits(self, u: torch.Tensor, entities: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.dropout(u), self.item_vectors(entities))

    def direct_terms(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The scores beside the fused head: the text skip and the context-mention bias, when enabled."""
        if self.text_skip is not None:
            logits = logits + self.text_skip(self.dropout(batch["text"]))
        if self.mention_bias is not None:
            logits = self.mention_bias(logits, batch["mentions"])
        return logits

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        entities = self.entity_vectors() if self.use_entities else None
        return self.direct_terms(self.logits(self.represent(batch, entities), entities), batch)

    def scores(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.forward(batch)


HybridCosine = cosine_variant(Hybrid, "HybridCosine", "hybrid with the cosine head s·cos(u, item) (no bias).")
