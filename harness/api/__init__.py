"""The public API of crs-bench: everything a plugin implements or uses, and nothing else.

Plugins import from here (and from the documented helpers it re-exports), never from the runner or the
plugin manager. Importing it is cheap: numpy-backed helpers (`RankedLists`, `MetricContext`,
`lists_from_tops`, `context_representatives`, and the conversation helpers `item_name`, `render_context`,
`choose_subset`) load on first use.

* interfaces (`interfaces.py`): `DatasetFactory`, `Recommender`, `TrainableRecommender`, `Loss` and its
  capabilities, `Augmenter`, `RankingMetricFamily` / `ConversationMetricFamily`, `LLMBackend`, `Retriever`,
  `ResponseGenerator`, `Executor` (grids; with the `Cell` and `CellResult` it passes);
* hooks (`hookspecs.py`): registration, stage (``crs_bench_train``, ``crs_bench_predict``) and lifecycle;
* component kinds (`kinds.py`), metric declarations (`metrics.py`), the build context and run state
  (`context.py`), the data model (`harness.data`).
"""
from __future__ import annotations

from typing import Any

from .. import hookimpl
from ..data import Catalogue, ConvSample, DataError, Dataset, Dialogue, KnowledgeGraph, RecSample, Split, Turn
from ..popularity import ItemStatistics
from .conformance import ConformanceError, LossPlan
from .context import RunContext, RunState
from .interfaces import (Augmenter, BootstrapTerms, Cell, CellResult, Executor, ConversationMetricFamily, ConvOutputs, OutputsMetricFamily, DatasetFactory, Describable,
                         IdentifiedMetricFamily, OutputsBootstrapTerms,
                         EpochHookLoss, LLMBackend, LogitsTraining, Loss, ModuleLoss, RankingMetricFamily,
                         Recommender, ResamplingUnit, ResponseGenerator, Retriever, ScoreAdjustingLoss, TextBootstrapTerms,
                         TrainableRecommender, WeightedSamplingLoss)
from .kinds import KINDS, ComponentKind
from .metrics import COUNT, HIGHER, INFO, LOWER, MetricParam, MetricSpec

_LAZY = {
    "RankedLists": ("harness.ranking", "RankedLists"),
    "MetricContext": ("harness.ranking", "MetricContext"),
    "LIST_LENGTH": ("harness.ranking", "LIST_LENGTH"),
    "context_representatives": ("harness.ranking", "context_representatives"),
    "lists_from_tops": ("harness.evaluation", "lists_from_tops"),
    "write_atomic": ("harness.results", "write_atomic"),
    "validate_params": ("harness.config", "validate_params"),
    "rank_split": ("harness.evaluation", "rank_split"),
    "item_name": ("harness.conversation", "item_name"),
    "render_context": ("harness.conversation", "render_context"),
    "choose_subset": ("harness.conversation", "choose_subset"),
    # data parallelism for plugin-owned stages (RunState.world, RunState.accelerator)
    "World": ("harness.distributed", "World"),
    "shard": ("harness.distributed", "shard"),
    "sum_value": ("harness.distributed", "sum_value"),
    "sum_gradients": ("harness.distributed", "sum_gradients"),
    "gather_rows": ("harness.distributed", "gather_rows"),
    "optimisation_step": ("harness.training", "optimisation_step"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'harness.api' has no attribute {name!r}")


__all__ = [
    "hookimpl", "KINDS", "ComponentKind",
    "Catalogue", "ConvSample", "DataError", "Dataset", "Dialogue", "KnowledgeGraph", "RecSample", "Split", "Turn",
    "ItemStatistics", "RunContext", "RunState", "LossPlan", "ConformanceError",
    "DatasetFactory", "Recommender", "TrainableRecommender", "LogitsTraining", "Loss", "ModuleLoss",
    "EpochHookLoss", "ScoreAdjustingLoss", "WeightedSamplingLoss", "Augmenter", "RankingMetricFamily",
    "ConversationMetricFamily", "ConvOutputs", "OutputsMetricFamily", "OutputsBootstrapTerms",
    "IdentifiedMetricFamily", "BootstrapTerms", "ResamplingUnit", "TextBootstrapTerms", "LLMBackend", "Retriever",
    "ResponseGenerator", "Executor", "Cell", "CellResult", "Describable", "MetricSpec", "MetricParam", "HIGHER", "LOWER", "COUNT", "INFO",
    *_LAZY,
]
