"""Hook specifications of crs-bench (pluggy project ``crs_bench``, entry-point group ``crs_bench``).

Two families:

* **Registration hooks** hand a typed `Registry` to every plugin once, right after plugins are
  loaded. The harness calls each plugin's implementation separately so that every component is
  stamped with the plugin it came from.
* **Lifecycle hooks** observe a run. They are called per run, per stage and per epoch, never per
  batch, so observers cannot slow training down.

A plugin implements any subset, decorating functions with ``harness.hookimpl``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from . import PROJECT_NAME

if TYPE_CHECKING:
    from pathlib import Path

    from .registry import Registry
    from .runner import RunState

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

    ``factory(ctx, **params)`` gets a `harness.components.RunContext` and returns a `Recommender`.
    ``provides`` lists capabilities losses may require (e.g. ``"cosine_head"``).
    """


@hookspec
def crs_bench_register_losses(registry: "Registry") -> None:
    """Register recommendation losses: ``registry.add(name, factory, description, requires=...)``.

    ``factory(ctx, **params)`` returns a callable ``loss(logits, labels) -> scalar tensor``.
    ``requires`` declares what must be available (``"item_counts"``, ``"cosine_head"``); the harness
    refuses a combination before training starts when a requirement cannot be met.
    """


@hookspec
def crs_bench_register_augmenters(registry: "Registry") -> None:
    """Register training-data augmenters: ``factory(ctx, **params)`` returns an `Augmenter`
    that adds synthetic training dialogues before samples are built (never valid or test)."""


@hookspec
def crs_bench_register_metrics(registry: "Registry") -> None:
    """Register metric families: ``factory(**params)`` returns an object with ``task`` ("rec" or
    "conv") and ``compute(lists, ctx)`` (rec) or ``compute_text(predictions, references)`` (conv).
    The registration ``version`` is part of the comparability key of the leaderboard."""


@hookspec
def crs_bench_register_llm_backends(registry: "Registry") -> None:
    """Register LLM backends for generating components (e.g. the `pda` augmenter and its judges):
    ``factory(cache_dir=..., **params)`` returns an object with ``identity() -> dict`` (what makes its
    output differ: kind, model, endpoint), ``chat(messages, *, temperature, max_tokens, seed) -> str``
    and a ``calls`` counter. Components pick a backend by name through ``RunContext.registries``."""


# --- lifecycle ------------------------------------------------------------------------------


@hookspec
def crs_bench_run_start(run: "RunState") -> None:
    """A run has resolved its config and built its components; training has not started."""


@hookspec
def crs_bench_run_finish(run: "RunState", record: dict[str, Any]) -> None:
    """A run finished and its record was written; ``record`` is the stored dict."""


@hookspec
def crs_bench_run_error(run: "RunState", error: BaseException) -> None:
    """A run failed or was interrupted; its last checkpoint is kept for ``--resume``."""


@hookspec
def crs_bench_stage_start(run: "RunState", stage: str) -> None:
    """A stage begins: ``"augment"``, ``"train"`` or ``"test"``."""


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


REGISTRATION_HOOKS = {
    "datasets": "crs_bench_register_datasets",
    "models": "crs_bench_register_models",
    "losses": "crs_bench_register_losses",
    "augmenters": "crs_bench_register_augmenters",
    "metrics": "crs_bench_register_metrics",
    "llm_backends": "crs_bench_register_llm_backends",
}
