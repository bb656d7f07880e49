"""`bert-rec`: text-only recommender (SYSTEMS.md §6, "BERT (MiniLM-L6)"): encoder pooled output → linear.

Default: the frozen all-MiniLM-L6-v2 sentence encoder with vectors cached on disk (a second run encodes
nothing); `finetune=True` trains the encoder too (then nothing is cached; the harness uses one learning
rate for encoder and head, unlike CRSLab's 1e-5 / 1e-3). `max_tokens` keeps the newest context tokens.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from harness.api import LogitsTraining, RunContext
from harness.data import RecSample, Split

from .blocks import ItemHead, cosine_variant, item_prior
from .text_encoder import DEFAULT_MODEL, ContextFeatures, TextEncoder, context_text


class BertRec(LogitsTraining, nn.Module):
    trainable = True

    def __init__(self, ctx: RunContext, text_encoder: str = DEFAULT_MODEL, max_tokens: int = 256,
                 finetune: bool = False, dropout: float = 0.1, head: str = "dot", scale: float = 30.0,
                 item_bias: str = "none"):
        super().__init__()
        self.device, self.finetune = ctx.device, finetune
        self.text = TextEncoder(text_encoder, max_tokens, ctx.device, None if finetune else ctx.cache_dir)
        dim = self.text.dim
        if finetune:
            self.encoder = self.text.module  # registered: trained and checkpointed with the head
        else:
            self.features = ContextFeatures(self.text, ctx.device)
        self.dropout = nn.Dropout(dropout)
        self.head = ItemHead(dim, ctx.dataset.num_items, head, scale,
                             prior=item_prior(ctx, item_bias) if item_bias != "none" else None)

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> dict[str, Any]:
        if self.finetune:
            return {"tokens": self.text.tokenize([context_text(split.context(s)) for s in samples])}
        return {"text": self.features.rows(split, samples)}

    def represent(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.text.embed(batch["tokens"]) if self.finetune else batch["text"]

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.head(self.dropout(self.represent(batch)))

    def scores(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.forward(batch)


BertRecCosine = cosine_variant(BertRec, "BertRecCosine", "bert-rec with the cosine head s·cos(u, e_item).")
