"""Recall@k, NDCG@k and MRR@k with one label per sample (PROTOCOL.md §3.2), micro-averaged.

Each metric is the mean of a per-sample contribution computed from the label ranks in one numpy
pass; the same contributions feed the paired bootstrap (resampling unit: samples).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from harness.api import COUNT, HIGHER, MetricSpec, hookimpl
from harness.ranking import MetricContext, RankedLists
from harness.significance import SumTerm, mean_term


def check_lists(lists: RankedLists, ctx: MetricContext) -> None:
    """Fail loudly on lists that cannot come from this catalogue (indices out of range, bad rows)."""
    top, labels, rows = np.asarray(lists.top), np.asarray(lists.labels), np.asarray(lists.sample_context)
    if top.ndim != 2:
        raise ValueError(f"RankedLists.top must be [n_contexts, k], got shape {top.shape}")
    if labels.shape != rows.shape:
        raise ValueError(f"RankedLists: {labels.shape[0]} labels but {rows.shape[0]} sample_context rows")
    for name, values, bound in (("top", top, ctx.num_items), ("labels", labels, ctx.num_items),
                                ("sample_context", rows, top.shape[0])):
        if values.size and (values.min() < 0 or values.max() >= bound):
            raise ValueError(f"RankedLists.{name} has values outside [0, {bound}): "
                             f"min {values.min()}, max {values.max()}")


class RankingAccuracy:
    """The ranking-accuracy family, from the label ranks of one setting's lists."""

    def __init__(self, recall_ks=(1, 10, 50), ndcg_ks=(10, 50), mrr_ks=(10, 50)):
        self.recall_ks, self.ndcg_ks, self.mrr_ks = tuple(recall_ks), tuple(ndcg_ks), tuple(mrr_ks)

    def contributions(self, lists: RankedLists, ctx: MetricContext) -> dict[str, np.ndarray]:
        """Per-sample contribution of every key; each metric is the mean of its vector."""
        check_lists(lists, ctx)
        ranks = lists.ranks()
        found = ranks > 0
        safe = np.where(found, ranks, 1).astype(np.float64)
        columns: dict[str, np.ndarray] = {}
        for k in self.recall_ks:
            columns[f"recall@{k}"] = (found & (ranks <= k)).astype(np.float64)
        for k in self.ndcg_ks:
            columns[f"ndcg@{k}"] = np.where(found & (ranks <= k), 1.0 / np.log2(safe + 1.0), 0.0)
        for k in self.mrr_ks:
            columns[f"mrr@{k}"] = np.where(found & (ranks <= k), 1.0 / safe, 0.0)
        return columns

    def compute(self, lists: RankedLists, ctx: MetricContext) -> dict[str, Any]:
        n = lists.n_samples
        values: dict[str, Any] = {"n_samples": n, "n_contexts": lists.n_contexts}
        for key, column in self.contributions(lists, ctx).items():
            values[key] = float(column.sum() / n) if n else None
        return values

    def bootstrap_terms(self, lists: RankedLists, ctx: MetricContext) -> list[SumTerm]:
        return [mean_term(key, "samples", column) for key, column in self.contributions(lists, ctx).items()]


@hookimpl
def crs_bench_register_metrics(registry) -> None:
    registry.add("ranking", RankingAccuracy, "Recall@k, NDCG@k and MRR@k over one-label samples.", version="1",
                 spec=SPEC)


SPEC = MetricSpec(
    task="rec",
    keys={"recall@*": HIGHER, "ndcg@*": HIGHER, "mrr@*": HIGHER, "n_samples": COUNT, "n_contexts": COUNT},
    columns=("recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10"),
    significance=("recall@*", "ndcg@*", "mrr@*"),  # per-sample means: the stored lists determine them
    primary="recall@10",
)
