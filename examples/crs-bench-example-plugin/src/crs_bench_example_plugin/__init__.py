"""crs-bench example plugin: the hooks. Everything heavy is registered lazily by "module:attribute"."""
from __future__ import annotations

from harness.api import HIGHER, MetricParam, MetricSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def crs_bench_register_models(registry):
    registry.add("item-knn", "crs_bench_example_plugin.model:ItemKNN",
                 "Item co-occurrence kNN over the context's movies, with a learned scale and item bias.")


@hookimpl
def crs_bench_register_losses(registry):
    registry.add("popularity-ce", "crs_bench_example_plugin.loss:PopularityPenalisedCE",
                 "Cross-entropy plus a penalty on the probability mass of popular items.", requires={"item_counts"})


@hookimpl
def crs_bench_register_metrics(registry):
    registry.add("novelty", "crs_bench_example_plugin.metric:Novelty",
                 "novelty@k: mean self-information -log2 of the recommended items' training popularity share.",
                 version="1",
                 spec=MetricSpec(task="rec", keys={"novelty@*": HIGHER}, columns=("novelty@10",),
                                 params={"novelty_ks": MetricParam(list, [10], "cut-offs k of novelty@k")}))


@hookimpl
def crs_bench_register_augmenters(registry):
    registry.add("tail-duplicate", "crs_bench_example_plugin.augmenter:TailDuplicate",
                 "Adds copies of training dialogues that recommend a tail item.")
