"""The built-in stage implementations, registered ``trylast`` so a plugin's ``crs_bench_train`` or
``crs_bench_predict`` that returns a result takes over (pytest's run-loop pattern)."""
from __future__ import annotations

from typing import Any

from . import hookimpl
from .data import SETTINGS, Split


@hookimpl(trylast=True)
def crs_bench_train(run: Any) -> dict[str, Any]:
    """AdamW training of `trainable` models (`harness.training`); a summary for deterministic ones."""
    if not run.model.trainable or run.config["train"]["epochs"] == 0:
        return {"trained": False, "selection": "none (deterministic model)"}
    from .training import train

    state = train(run)
    throughput = state.samples_seen / state.seconds if state.seconds else None
    return {
        "trained": True,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "selection_metric": run.config["train"]["select_metric"],
        "best_valid_value": state.best_value,
        "stopped_early": state.stopped_early,
        "steps": state.steps,
        "train_samples": len(run.train_samples),
        "throughput_samples_per_second": round(throughput, 1) if throughput else None,
        "history": state.history,
    }


@hookimpl(trylast=True)
def crs_bench_predict(run: Any, split: Split, settings: tuple[str, ...] = SETTINGS) -> dict[str, Any]:
    """Batched scoring with the model (test-time score adjustment of the loss plan applied)."""
    from .evaluation import ScoreAdjusted, rank_split

    plan = run.loss_plan
    scorer = ScoreAdjusted(run.model, plan.score_adjuster) if plan is not None and plan.score_adjuster else run.model
    if plan is not None and plan.module is not None:
        plan.module.eval()
    progress = None
    if split.name == "test":
        progress = run.progress(total=len({s.context_id for s in split.rec_samples}), desc="test", unit="context")
    try:
        return rank_split(scorer, split, run.config["train"]["eval_batch_size"], settings=settings, progress=progress)
    finally:
        if progress is not None:
            progress.close()
