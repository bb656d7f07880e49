"""novelty@k (Zhou et al. 2010's self-information): the mean over samples of the mean -log2 p(i) of the
top-k items, p(i) = (pop(i) + 1) / (sum(pop) + I) the item's smoothed share of training-dialogue mentions.
Higher is more novel; a popularity ranker scores lowest."""
from __future__ import annotations

from typing import Any

import numpy as np


class Novelty:
    def __init__(self, novelty_ks: list = (10,)):
        self.ks = tuple(int(k) for k in novelty_ks)

    def compute(self, lists: Any, ctx: Any) -> dict[str, Any]:
        popularity = np.asarray(ctx.popularity, dtype=np.float64)
        information = -np.log2((popularity + 1.0) / (popularity.sum() + len(popularity)))
        values: dict[str, Any] = {}
        for k in self.ks:
            if lists.n_samples == 0:
                values[f"novelty@{k}"] = None
                continue
            per_context = information[lists.top[:, :k]].mean(axis=1)
            values[f"novelty@{k}"] = float(per_context[lists.sample_context].mean())
        return values
