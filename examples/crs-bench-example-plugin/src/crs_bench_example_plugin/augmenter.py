"""Tail duplication: copy training dialogues in which the recommender mentions a tail item (by the run's
popularity tiers), `copies` times each, at most `max_ratio` of the training dialogues in all."""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Sequence

from harness.api import RunContext
from harness.data import RECOMMENDER, Dialogue


class TailDuplicate:
    def __init__(self, ctx: RunContext, copies: int = 1, max_ratio: float = 0.2):
        self.tail = {i for i, tier in enumerate(ctx.stats.tiers) if tier == "tail"}
        self.copies, self.max_ratio = copies, max_ratio
        self.counts = {"candidates": 0, "added": 0}

    def augment(self, train: Sequence[Dialogue], rng: random.Random) -> list[Dialogue]:
        candidates = [d for d in train if any(t.role == RECOMMENDER and self.tail.intersection(t.items)
                                              for t in d.turns)]
        budget = int(self.max_ratio * len(train))
        chosen = candidates if len(candidates) * self.copies <= budget else \
            rng.sample(candidates, max(0, budget // max(1, self.copies)))
        added = [replace(d, id=f"{d.id}#tail-copy-{n}", turns=list(d.turns), synthetic=True,
                         meta={**d.meta, "source": d.id, "augmenter": "tail-duplicate"})
                 for d in chosen for n in range(1, self.copies + 1)]
        self.counts = {"candidates": len(candidates), "added": len(added)}
        return added

    def statistics(self) -> dict[str, Any]:
        return {"generated": self.counts["added"], "filtered": 0, "accepted": self.counts["added"],
                "candidates": self.counts["candidates"]}
