"""UniCRS (SYSTEMS.md §7), the prompt-learning backbone DCRS, MSCRS and LumiCRS build on: the `unicrs` model
(recommends and speaks), its three-stage training as this plugin's ``crs_bench_train``, and the cleanup of
its stage checkpoints once a run's record is written.

Registered lazily ("module:attribute"); the hooks import torch only when a run reaches them, so importing
this module (`bench --help`, `bench plugins`) stays light. Any model with a ``prompt_stages`` attribute (UniCRS
and models built on it, e.g. `lumicrs` with ``backbone: prompt-lm``) is trained by these stages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api import hookimpl

CHECKPOINT_PREFIX = "checkpoint-prompt-"  # per-stage checkpoints; matched by the results .gitignore `checkpoint*`

@hookimpl
def crs_bench_register_models(registry) -> None:
    registry.add("unicrs", "plugins.unicrs.model:UniCRS",
                 "UniCRS: KGPrompt (R-GCN entities x frozen encoder tokens) as deep prompts of a frozen causal LM; "
                 "pre-training, conversation and recommendation stages; recommends and speaks.", version="1")


@hookimpl
def crs_bench_train(run: Any) -> dict[str, Any] | None:
    """The three UniCRS stages for models that declare them; None for every other model."""
    if not getattr(run.model, "prompt_stages", None):
        return None
    from .stages import train_stages

    return train_stages(run)


@hookimpl
def crs_bench_record_written(record: dict[str, Any], path: Path) -> None:
    """The record is safe on disk: the stage checkpoints of this run are no longer needed."""
    run_dir = Path(path).parent
    for checkpoint in run_dir.glob(f"{CHECKPOINT_PREFIX}*.pt"):
        checkpoint.unlink(missing_ok=True)
