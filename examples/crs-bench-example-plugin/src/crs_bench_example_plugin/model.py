"""item-kNN: items that co-occur in training dialogues are neighbours; a context scores every item by its
similarity to the context's movies. A learned scale and per-item bias make it trainable, so the training
loss matters (with a frozen kNN the loss would change nothing, and the harness would refuse any but `ce`)."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from harness.api import LogitsTraining, RunContext
from harness.data import RecSample, Split


class ItemKNN(LogitsTraining, nn.Module):
    trainable = True

    def __init__(self, ctx: RunContext, k: int = 20, shrink: float = 10.0):
        super().__init__()
        items = ctx.dataset.num_items
        counts = torch.zeros(items, items)
        for dialogue in ctx.train.dialogues:
            mentioned = sorted({i for turn in dialogue.turns for i in turn.items})
            if len(mentioned) > 1:
                index = torch.tensor(mentioned)
                counts[index.unsqueeze(1), index.unsqueeze(0)] += 1.0
        counts.fill_diagonal_(0.0)
        norms = counts.sum(1).clamp_min(1.0).sqrt()
        similarity = counts / (norms.unsqueeze(1) * norms.unsqueeze(0) + shrink)
        if 0 < k < items:  # keep each item's k nearest neighbours
            threshold = similarity.topk(k, dim=1).values[:, -1:]
            similarity = torch.where(similarity >= threshold, similarity, torch.zeros(()))
        self.register_buffer("similarity", similarity)
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.bias = nn.Parameter(torch.zeros(items))
        self.k, self.shrink = k, shrink

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> torch.Tensor:
        batch = torch.zeros(len(samples), self.similarity.shape[0], device=self.similarity.device)
        for row, sample in enumerate(samples):
            if sample.context_items:
                batch[row, list(sample.context_items)] = 1.0
        return batch

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.scale * (batch @ self.similarity) + self.bias

    def scores(self, batch: torch.Tensor) -> torch.Tensor:
        return self(batch)

    def describe(self) -> dict[str, Any]:
        return {"k": self.k, "shrink": self.shrink,
                "neighbours_per_item": float((self.similarity > 0).sum(1).float().mean())}
