"""A third-party crs-bench plugin: the whole of it is this file plus the entry point in pyproject.toml."""
from __future__ import annotations

from harness.api import COUNT, MetricSpec, hookimpl


class GenreNeighbours:
    """Scores items by how many KG neighbours they share with the context's movies (no training)."""

    trainable = False

    def __init__(self, ctx, weight: float = 1.0):
        import torch

        kg = ctx.dataset.kg
        neighbours = kg.neighbours()
        features = torch.zeros(ctx.dataset.num_items, kg.num_entities)
        for item, entity in enumerate(kg.item_entities):
            for other in neighbours[entity]:
                features[item, other] = 1.0
        self.similarity = weight * features @ features.T
        self.device = ctx.device

    def make_batch(self, split, samples):
        return [list(sample.context_items) for sample in samples]

    def scores(self, batch):
        import torch

        rows = [self.similarity[items].sum(0) if items else torch.zeros(self.similarity.shape[0]) for items in batch]
        return torch.stack(rows)


class HitCount:
    """Number of samples whose label is in the top 5: an absolute count, for the example only."""

    def compute(self, lists, ctx):
        ranks = lists.ranks()
        return {"example_hits@5": int(((ranks > 0) & (ranks <= 5)).sum())}


@hookimpl
def crs_bench_register_models(registry):
    registry.add("example-genre-neighbours", GenreNeighbours, "Context movies' KG neighbours, shared-feature count.")


@hookimpl
def crs_bench_register_metrics(registry):
    registry.add("example-hits", HitCount, "Absolute number of top-5 hits (example metric).", version="1",
                 spec=MetricSpec(task="rec", keys={"example_hits@5": COUNT}))
