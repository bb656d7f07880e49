"""Hook specifications of crs-bench (pluggy project ``crs_bench``, entry-point group ``crs_bench``).

Three families:

* **Registration hooks** hand a typed `Registry` to every plugin once, right after plugins are
  loaded. The harness calls each plugin's implementation separately so that every component is
  stamped with the plugin it came from.
* **Stage hooks** (``crs_bench_train``, ``crs_bench_predict``) *are* stages of a run: the first
  implementation that returns something other than None wins (``firstresult``), and the built-in
  implementations in `harness.stages` are registered ``trylast``, as pytest does for its run loop. A
  model that trains or decodes its own way provides them for its own model and returns None for others.
* **Lifecycle hooks** observe a run. They are called per run, per stage and per epoch, never per
  batch, so observers cannot slow training down.

A plugin implements any subset, decorating functions with ``harness.hookimpl``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from .. import PROJECT_NAME
from .kinds import KINDS

if TYPE_CHECKING:
    from pathlib import Path

    from ..data import Split
    from ..ranking import RankedLists
    from ..registry import Registry
    from .context import RunState

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# --- registration ---------------------------------------------------------------------------


@hookspec
def crs_bench_register_datasets(registry: "Registry") -> None:
    """Register datasets: ``registry.add(name, factory, description)``.

    ``factory(data_dir, **params)`` returns a `harness.data.Dataset` whose splits hold dialogues;
    the harness builds the samples. Heavy imports belong inside the factory.
    """


@hookspec
def crs_bench_register_models(registry: "Registry") -> None:
    """Register recommendation models: ``registry.add(name, factory, description, provides=...)``.

    ``factory(ctx, **params)`` gets a `harness.api.RunContext` and returns a `Recommender`
    (a `TrainableRecommender` when its ``trainable`` is True).
    ``provides`` lists capabilities losses may require (e.g. ``"cosine_head"``).
    """


@hookspec
def crs_bench_register_losses(registry: "Registry") -> None:
    """Register recommendation losses: ``registry.add(name, factory, description, requires=...)``.

    ``factory(ctx, **params)`` returns a `Loss`: ``loss(logits, labels) -> scalar tensor``, optionally
    also a `ModuleLoss`, `EpochHookLoss`, `ScoreAdjustingLoss` or `WeightedSamplingLoss`.
    ``requires`` declares what must be available (``"item_counts"``, ``"cosine_head"``, ...; see
    `harness.api.Loss`); the harness refuses a combination before training starts when a requirement
    cannot be met.
    """


@hookspec
def crs_bench_register_augmenters(registry: "Registry") -> None:
    """Register training-data augmenters: ``factory(ctx, **params)`` returns an `Augmenter`
    that adds synthetic training dialogues before samples are built (never valid or test)."""


@hookspec
def crs_bench_register_metrics(registry: "Registry") -> None:
    """Register metric families: ``registry.add(name, factory, description, version=..., spec=MetricSpec(...))``.

    The `MetricSpec` declares the task, the keys produced and their directions, the default leaderboard
    columns, the keys that get significance marks and the parameters (``factory(**params)`` receives the
    declared parameters, resolved from the config's ``metric_params``). The factory returns a
    `RankingMetricFamily` (task ``rec``) or a `ConversationMetricFamily` (task ``conv``). The ``version``
    and the resolved parameters are the family's part of a leaderboard table's comparability key."""


@hookspec
def crs_bench_register_llm_backends(registry: "Registry") -> None:
    """Register LLM backends for generating components (e.g. the `pda` augmenter and its judges):
    ``factory(cache_dir=..., **params)`` returns an `LLMBackend`. Components pick a backend by name
    through ``RunContext.registries``."""


@hookspec
def crs_bench_register_retrievers(registry: "Registry") -> None:
    """Register retrievers: ``factory(ctx, **params)`` returns a `Retriever` (``index(corpus)``,
    ``search(queries, k, exclude)``), e.g. for demonstration retrieval or retrieval-based responses."""


@hookspec
def crs_bench_register_generators(registry: "Registry") -> None:
    """Register response generators: ``factory(ctx, **params)`` returns a `ResponseGenerator` (``fit``,
    ``generate``), attached to any recommender with the config's ``generator`` setting."""


@hookspec
def crs_bench_register_executors(registry: "Registry") -> None:
    """Register grid executors: ``factory(**params)`` returns an `Executor` that runs the cells of a
    recipe's grid (in this process, on a Ray cluster, as Slurm job arrays) and yields their results;
    ``bench run --executor NAME`` picks one. The driver writes every record, so workers need no shared
    results directory."""


# --- stages ---------------------------------------------------------------------------------


@hookspec(firstresult=True)
def crs_bench_train(run: "RunState") -> "dict[str, Any] | None":
    """Train ``run.model`` on ``run.train_split`` and leave the selected weights loaded.

    Return the training summary stored as the record's ``training`` (at least ``{"trained": bool}``;
    the built-in also gives epochs, best epoch, history and throughput), or None to leave the run to the
    next implementation. The built-in (`harness.stages`, ``trylast``) trains every ``trainable`` model
    with AdamW, warm-up, clipping, per-epoch checkpoints (``--resume``) and early stopping on
    ``run.validate()``; it reports each epoch through ``run.epoch_end``."""


@hookspec(firstresult=True)
def crs_bench_predict(run: "RunState", split: "Split", settings: "tuple[str, ...]") -> "dict[str, RankedLists] | None":
    """Rank the catalogue for every recommendation sample of ``split``: ``{setting: RankedLists}`` for
    each of ``settings`` (``"standard"``, ``"novel"``), or None to leave it to the next implementation.

    The built-in (``trylast``) scores contexts in batches with ``run.model.scores`` under ``no_grad`` and
    takes the top 50 on the device; `harness.api.lists_from_tops` turns any per-context top-50 arrays into
    the lists. Used for validation (model selection) and for the single test evaluation."""


# --- lifecycle ------------------------------------------------------------------------------


@hookspec
def crs_bench_run_start(run: "RunState") -> None:
    """A run has resolved its config, augmented its training split (the ``augment`` stage) and built its
    components; training has not started."""


@hookspec
def crs_bench_run_finish(run: "RunState", record: dict[str, Any]) -> None:
    """A run finished and its record was written; ``record`` is the stored dict."""


@hookspec
def crs_bench_run_error(run: "RunState", error: BaseException) -> None:
    """A run failed or was interrupted; ``error`` is the exception (a ``harness.boundary.PluginFailure`` naming
    component, plugin and stage when plugin code failed). The last checkpoint is kept for ``--resume`` unless
    the failure is not resumable (plugin code that shapes the weights failed)."""


@hookspec
def crs_bench_stage_start(run: "RunState", stage: str) -> None:
    """A stage begins: ``"augment"``, ``"train"``, ``"test"`` or ``"conv"`` (the conversation task)."""


@hookspec
def crs_bench_stage_finish(run: "RunState", stage: str, summary: dict[str, Any]) -> None:
    """A stage ended; ``summary`` holds its figures (samples, epochs, seconds)."""


@hookspec
def crs_bench_epoch_end(run: "RunState", epoch: int, metrics: dict[str, Any]) -> None:
    """A training epoch ended and was checkpointed; ``metrics`` holds the training loss and the
    validation metrics used for model selection. Raising here interrupts the run resumably."""


@hookspec
def crs_bench_record_ready(record: dict[str, Any]) -> None:
    """The record is assembled but not yet validated or written: plugins may add fields under
    ``record["extra"]`` (a validation failure then prevents the write)."""


@hookspec
def crs_bench_record_written(record: dict[str, Any], path: "Path") -> None:
    """The record was validated and atomically written to ``path``."""


REGISTRATION_HOOKS: dict[str, str] = {kind.registry: kind.hook for kind in KINDS}
STAGE_HOOKS = ("crs_bench_train", "crs_bench_predict")
