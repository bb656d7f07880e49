"""The reference baselines of PROTOCOL.md §2.4 and SYSTEMS.md §2-3: `popularity` and `repeat-context`.

Both are deterministic score vectors over the catalogue; the harness's stable top-k breaks their many
ties by ascending item id.
"""
from __future__ import annotations

from typing import Sequence

from harness.api import hookimpl
from harness.api import RunContext
from harness.data import RecSample, Split


class PopularityRanker:
    """score(i) = pop(i): one global list (SYSTEMS.md §2); `label_counts` ranks by training labels."""

    trainable = False

    def __init__(self, ctx: RunContext, counts: str = "dialogues"):
        import torch

        if counts not in ("dialogues", "label_counts"):
            raise ValueError(f"popularity: counts must be 'dialogues' or 'label_counts', got {counts!r}")
        values = ctx.stats.popularity if counts == "dialogues" else ctx.stats.label_counts
        self.device = ctx.device
        self.score_vector = torch.tensor(values, dtype=torch.float32, device=ctx.device)

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> int:
        return len(samples)

    def scores(self, batch: int):
        return self.score_vector.expand(batch, -1)


class RepeatContextRanker:
    """Context items first, most recently mentioned first (SYSTEMS.md §3).

    `fill="item_id"` (`repeat-context`): the rest score -inf and follow in item-id order.
    `fill="popularity"` (`repeat-context-pop`): the rest follow by popularity.
    """

    trainable = False

    def __init__(self, ctx: RunContext, fill: str = "item_id"):
        import torch

        if fill not in ("item_id", "popularity"):
            raise ValueError(f"repeat-context: fill must be 'item_id' or 'popularity', got {fill!r}")
        self.fill = fill
        self.device = ctx.device
        self.num_items = ctx.dataset.num_items
        self.popularity = torch.tensor(ctx.stats.popularity, dtype=torch.float32, device=ctx.device)

    def make_batch(self, split: Split, samples: Sequence[RecSample]):
        """Sparse (row, item, recency rank) triples of the context items; context_items is newest first."""
        from plugins.models.blocks import mention_triples

        return (len(samples), *mention_triples(samples, self.device))

    def scores(self, batch):
        import torch

        size, rows, items, recency = batch
        if self.fill == "item_id":
            scores = torch.full((size, self.num_items), float("-inf"), device=self.device)
            scores[rows, items] = -recency.float()
        else:
            scores = self.popularity.expand(size, -1).clone()
            top = float(self.popularity.max()) + 1.0
            # higher than any popularity, newest first: (1 + max pop) + (R - rho) with R large enough
            scores[rows, items] = top + 1e6 - recency.float()
        return scores


@hookimpl
def crs_bench_register_models(registry) -> None:
    registry.add("popularity", PopularityRanker,
                 "Global ranking by training-dialogue popularity (the mandatory non-personalised baseline).")
    registry.add("repeat-context", RepeatContextRanker,
                 "Repeats the context's movies, most recent first; measures the repetition shortcut.")
    registry.add("repeat-context-pop", lambda ctx: RepeatContextRanker(ctx, fill="popularity"),
                 "Repeat-context, then the rest of the catalogue by popularity.")
