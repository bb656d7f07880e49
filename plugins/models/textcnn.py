"""`textcnn`: text-only recommender (SYSTEMS.md §6, CRSLab's TextCNN) over trainable word embeddings.

Word embeddings (300-d) of the newest `max_tokens` context words; convolutions of widths 2, 3, 4 with
256 maps each, ReLU, max-over-time pooling (padding positions excluded), concatenation, dropout 0.5, linear
layer over the items. The vocabulary is built from the *training* dialogues only (the `vocab_size` most
frequent words with count >= `min_count`; ids 0/1 are padding/unknown) — CRSLab sizes the table by the
entity count instead, the harness uses the vocabulary and records its size in the model's `vocabulary`.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Sequence

import torch
from torch import nn

from harness.api import LogitsTraining, RunContext
from harness.data import RecSample, Split

from .blocks import ItemHead, cosine_variant, item_prior, pad

TOKEN = re.compile(r"[a-z0-9']+")
PAD, UNK = 0, 1


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def build_vocabulary(texts: Sequence[str], vocab_size: int, min_count: int) -> dict[str, int]:
    """Word -> id, most frequent first (ties alphabetical, so the vocabulary is deterministic)."""
    counts = Counter(word for text in texts for word in tokenize(text))
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return {word: index + 2 for index, word in enumerate(ranked[:vocab_size])}


class TextCNN(LogitsTraining, nn.Module):
    trainable = True

    def __init__(self, ctx: RunContext, embedding_dim: int = 300, channels: int = 256,
                 widths: Sequence[int] = (2, 3, 4), dropout: float = 0.5, max_tokens: int = 256,
                 vocab_size: int = 30000, min_count: int = 1, head: str = "dot", scale: float = 30.0,
                 item_bias: str = "none"):
        super().__init__()
        train = ctx.train
        self.vocabulary = build_vocabulary([t.text for d in train.dialogues for t in d.turns], vocab_size,
                                           min_count)
        self.device, self.max_tokens, self.widths = ctx.device, max_tokens, tuple(widths)
        self.embedding = nn.Embedding(len(self.vocabulary) + 2, embedding_dim, padding_idx=PAD)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, channels, w) for w in self.widths)
        self.dropout = nn.Dropout(dropout)
        self.head = ItemHead(channels * len(self.widths), ctx.dataset.num_items, head, scale,
                             prior=item_prior(ctx, item_bias) if item_bias != "none" else None)
        self._ids: dict[tuple[str, int, int], list[int]] = {}

    def _tokens(self, split: Split, sample: RecSample) -> list[int]:
        key = (split.name, sample.dialogue_index, sample.turn)
        if key not in self._ids:
            words = tokenize(" ".join(turn.text for turn in split.context(sample)))[-self.max_tokens:]
            self._ids[key] = [self.vocabulary.get(word, UNK) for word in words]
        return self._ids[key]

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> dict[str, Any]:
        ids, mask = pad([self._tokens(split, s) for s in samples], PAD, self.device)
        if ids.shape[1] < max(self.widths):  # every convolution needs at least one window
            extra = max(self.widths) - ids.shape[1]
            ids = nn.functional.pad(ids, (0, extra), value=PAD)
            mask = nn.functional.pad(mask, (0, extra), value=False)
        return {"ids": ids, "lengths": mask.sum(1)}

    def represent(self, batch: dict[str, Any]) -> torch.Tensor:
        x = self.embedding(batch["ids"]).transpose(1, 2)  # [B, E, L]
        pooled = []
        for width, conv in zip(self.widths, self.convs):
            h = torch.relu(conv(x))  # [B, C, L - w + 1]
            valid = torch.arange(h.shape[2], device=h.device)[None, :] <= (batch["lengths"][:, None] - width)
            h = h.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=2)
            pooled.append(torch.where(valid.any(1, keepdim=True), h, torch.zeros_like(h)))
        return torch.cat(pooled, dim=1)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.head(self.dropout(self.represent(batch)))

    def scores(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.forward(batch)


TextCNNCosine = cosine_variant(TextCNN, "TextCNNCosine", "textcnn with the cosine head s·cos(u, e_item).")
