"""Fake run context and registry for loss tests (7 items, no dataset); used by tests/test_losses*.py."""
from __future__ import annotations

from harness.api import RunContext
from harness.popularity import ItemStatistics

# 7 items: one head item with 50 labels down to an item never seen in training.
LABEL_COUNTS = [50, 20, 8, 3, 1, 0, 2]
POPULARITY = [10, 7, 5, 3, 1, 0, 2]  # tiers: head head body body tail tail body
LOSS_MODULES = ("plugins.losses.ce", "plugins.losses.focal", "plugins.losses.prior", "plugins.losses.margin",
                "plugins.losses.alpa", "plugins.losses.csl", "plugins.losses.dr_loss", "plugins.losses.ahl")


def make_ctx(label_counts=None, popularity=None, seed: int = 0, dataset=None) -> RunContext:
    counts = list(LABEL_COUNTS if label_counts is None else label_counts)
    pop = list(POPULARITY if popularity is None else popularity)
    return RunContext(dataset=dataset, stats=ItemStatistics(popularity=pop, label_counts=counts), seed=seed)


def loss_registry():
    """A losses registry filled by exactly the loss plugin modules (independent of BUILTIN_PLUGINS)."""
    import importlib

    from harness.registry import Registry

    registry = Registry("losses")
    for name in LOSS_MODULES:
        importlib.import_module(name).crs_bench_register_losses(registry=registry)
    return registry


def build(name: str, ctx=None, **params):
    return loss_registry().get(name).factory(ctx or make_ctx(), **params)
