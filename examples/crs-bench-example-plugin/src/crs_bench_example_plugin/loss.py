"""Popularity-penalised cross-entropy: CE plus `penalty` times the expected popularity (log training-label
count, scaled to [0, 1]) of the predicted distribution, which pushes probability mass towards the tail."""
from __future__ import annotations

import torch
from torch import nn

from harness.api import RunContext


class PopularityPenalisedCE(nn.Module):
    def __init__(self, ctx: RunContext, penalty: float = 0.1):
        super().__init__()
        popularity = torch.log1p(torch.tensor(ctx.stats.label_counts, dtype=torch.float32))
        self.register_buffer("popularity", popularity / popularity.max().clamp_min(1e-12))
        self.penalty = penalty

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = nn.functional.cross_entropy(logits, labels)
        expected = (logits.softmax(-1) * self.popularity).sum(-1).mean()
        return ce + self.penalty * expected

    def describe(self) -> dict:
        return {"penalty": self.penalty}
