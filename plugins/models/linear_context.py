"""`linear-context`: mean of hashed context-word and context-movie embeddings, then a linear item head.

The smallest model that learns from both views of a dialogue. It trains in seconds on CPU, which makes
it the harness's own smoke test for training, early stopping and resuming, and a floor that every
serious model should clear.
"""
from __future__ import annotations

import re
import zlib
from typing import Any, Sequence

import torch
from torch import nn

from harness.api import LogitsTraining, RunContext
from harness.data import RecSample, Split

TOKEN = re.compile(r"[a-z0-9']+")


class LinearContextRecommender(LogitsTraining, nn.Module):
    trainable = True

    def __init__(self, ctx: RunContext, dim: int = 64, vocab_buckets: int = 8192, dropout: float = 0.1,
                 max_context_tokens: int = 256):
        super().__init__()
        self.device = ctx.device
        self.vocab_buckets = vocab_buckets
        self.max_context_tokens = max_context_tokens
        self.words = nn.EmbeddingBag(vocab_buckets, dim, mode="mean")
        self.context_items = nn.EmbeddingBag(ctx.dataset.num_items, dim, mode="mean")
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, ctx.dataset.num_items)
        self._token_cache: dict[tuple[str, int, int], list[int]] = {}

    def _tokens(self, split: Split, sample: RecSample) -> list[int]:
        """Hashed tokens of the newest `max_context_tokens` context words (stable across processes)."""
        key = (split.name, sample.dialogue_index, sample.turn)
        if key not in self._token_cache:
            text = " ".join(turn.text for turn in split.context(sample)).lower()
            words = TOKEN.findall(text)[-self.max_context_tokens:]
            self._token_cache[key] = [zlib.crc32(word.encode()) % self.vocab_buckets for word in words]
        return self._token_cache[key]

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> dict[str, Any]:
        tokens = [self._tokens(split, sample) for sample in samples]
        items = [list(sample.context_items) for sample in samples]

        def bag(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
            offsets = torch.tensor([0] + [len(row) for row in rows[:-1]], dtype=torch.long).cumsum(0)
            flat = torch.tensor([value for row in rows for value in row], dtype=torch.long)
            return flat.to(self.device), offsets.to(self.device)

        return {"tokens": bag(tokens), "items": bag(items)}

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        context = self.words(*batch["tokens"]) + self.context_items(*batch["items"])
        return self.head(self.dropout(context))

    def scores(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.forward(batch)
