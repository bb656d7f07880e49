"""GCRS (SYSTEMS.md §11): semantic item IDs from an RQ-VAE, one causal LM for mode, item and response. The
`gcrs` model, its training as this plugin's ``crs_bench_train`` and its ranking plus free-mode, mode and
perplexity evaluation as ``crs_bench_predict``; both return None for every other model.

Registered lazily; the hooks import torch only when a run reaches them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api import hookimpl

CHECKPOINT_PREFIX = "checkpoint-gcrs"


@hookimpl
def crs_bench_register_models(registry) -> None:
    registry.add("gcrs", "plugins.gcrs.model:GCRS",
                 "GCRS: RQ-VAE semantic item IDs; one causal LM (LoRA + trainable new-token rows) writes mode, "
                 "trie-constrained item ID and response; recommends (beam or exact) and speaks.", version="1")


@hookimpl
def crs_bench_train(run: Any) -> dict[str, Any] | None:
    if not getattr(run.model, "gcrs", False):
        return None
    from .training import train

    return train(run)


@hookimpl
def crs_bench_predict(run: Any, split: Any, settings: tuple[str, ...]) -> Any:
    if not getattr(run.model, "gcrs", False):
        return None
    from .evaluation import predict

    return predict(run, split, settings)


@hookimpl
def crs_bench_record_written(record: dict[str, Any], path: Path) -> None:
    """The record is safe on disk: the run's checkpoint is no longer needed."""
    for checkpoint in Path(path).parent.glob(f"{CHECKPOINT_PREFIX}*.pt"):
        checkpoint.unlink(missing_ok=True)
