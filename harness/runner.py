"""One benchmark run: build components, augment training data, train with model selection on valid,
test once with the selected checkpoint, and write the record.

Stages: ``augment`` -> ``train`` -> ``test``. Lifecycle hooks fire at run, stage and epoch boundaries.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import config as config_module
from .components import RunContext
from .data import Dataset, RecSample, Split
from .plugin_manager import Plugins
from .popularity import ItemStatistics, TierThresholds, compute_statistics
from .registry import Component
from .requirements import check_compatible
from .results import SCHEMA_VERSION, run_id_for, write_run

DATA_DIR_ENV = "CRS_BENCH_DATA"


class RunError(RuntimeError):
    """A run that cannot start (incompatible components, missing data); one line for the user."""


@dataclass
class RunState:
    """What hooks see of a run in progress."""

    config: dict[str, Any]
    config_hash: str
    run_id: str
    run_dir: Path
    seed: int
    device: str
    quiet: bool = False
    dataset: Dataset | None = None
    stats: ItemStatistics | None = None
    train_split: Split | None = None
    train_samples: list[RecSample] = field(default_factory=list)
    components: dict[str, Component] = field(default_factory=dict)
    model: Any = None
    loss: Any = None
    augmenter: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def log(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.run_id}] {message}", file=sys.stderr, flush=True)


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"device '{requested}' requested but CUDA is not available")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise RunError(f"device must be auto, cpu or cuda[:i], got '{requested}'")
    return requested


def data_dir_from(setting: str | None) -> Path | None:
    value = setting or os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def progress_factory(quiet: bool) -> Callable[..., Any]:
    from tqdm import tqdm

    disable = quiet or not sys.stderr.isatty()
    return lambda **kwargs: tqdm(disable=disable, leave=False, file=sys.stderr, **kwargs)


def components_for(plugins: Plugins, config: dict[str, Any]) -> dict[str, Component]:
    """Look every configured component up (unknown names: one line with suggestions) and check params."""
    registries = plugins.registries
    chosen = {
        "dataset": registries.datasets.get(config["dataset"]["name"]),
        "model": registries.models.get(config["model"]["name"]),
        "loss": registries.losses.get(config["loss"]["name"]),
        "augmenter": registries.augmenters.get(config["augmenter"]["name"]),
    }
    for kind, component in chosen.items():
        config_module.validate_params(kind, component.name, component.resolve(), config[kind]["params"], skip=1)
    metric_names = config["metrics"] if config["metrics"] is not None else registries.metrics.names()
    for name in metric_names:
        chosen[f"metric:{name}"] = registries.metrics.get(name)
    check_compatible(chosen["loss"], chosen["model"], stats_available=True)
    return chosen


def prepare_dataset(component: Component, config: dict[str, Any], data_dir: Path | None, cache_dir: Path) -> Dataset:
    from .dataset_cache import load_dataset

    if component.extra.get("input_files") and data_dir is None:
        raise RunError(f"dataset '{component.name}' reads files: pass --data-dir or set {DATA_DIR_ENV}")
    return load_dataset(component, data_dir, config["dataset"]["params"], cache_dir)


def execute(config: dict[str, Any], plugins: Plugins, *, results_dir: Path, data_dir: Path | None = None,
            cache_dir: Path = Path(".cache"), resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Run one resolved config end to end and return the written record."""
    from . import evaluation, provenance, training
    from .seeding import seed_everything

    started = time.perf_counter()
    digest = config_module.config_hash(config)
    run_id = run_id_for(config, digest)
    components = components_for(plugins, config)
    run = RunState(config=config, config_hash=digest, run_id=run_id, run_dir=results_dir / "runs" / run_id,
                   seed=config["seed"], device=resolve_device(config["device"]), quiet=quiet,
                   components=components)
    hook = plugins.hook
    seeds = seed_everything(run.seed)
    try:
        t0 = time.perf_counter()
        dataset = prepare_dataset(components["dataset"], config, data_dir, cache_dir)
        run.timings["load_seconds"] = time.perf_counter() - t0
        dataset = limit_samples(dataset, config["limit"])
        run.dataset = dataset

        hook.crs_bench_stage_start(run=run, stage="augment")
        t0 = time.perf_counter()
        original_train = dataset.splits["train"]
        thresholds = TierThresholds(**config["tiers"])
        augment_ctx = RunContext(dataset, compute_statistics(dataset.num_items, original_train.dialogues,
                                                            original_train.rec_samples, thresholds),
                                 run.device, run.seed, cache_dir, config, plugins.registries)
        run.augmenter = components["augmenter"].build(augment_ctx, **config["augmenter"]["params"])
        added = run.augmenter.augment(list(original_train.dialogues), random.Random(run.seed))
        if any(not d.synthetic for d in added):
            raise RunError(f"augmenter '{config['augmenter']['name']}' returned dialogues not marked synthetic")
        train_split = original_train
        if added:
            from .data import build_samples

            train_split = Split("train", list(original_train.dialogues) + list(added))
            train_split.rec_samples, train_split.conv_samples = build_samples(
                "train", train_split.dialogues, dataset.dedup_turn_labels)
        run.train_split = train_split
        run.train_samples = list(train_split.rec_samples)
        run.stats = compute_statistics(dataset.num_items, train_split.dialogues, train_split.rec_samples,
                                       thresholds)
        run.timings["augment_seconds"] = time.perf_counter() - t0
        hook.crs_bench_stage_finish(run=run, stage="augment", summary={
            "added_dialogues": len(added), "train_samples": len(run.train_samples), **run.augmenter.statistics()})

        ctx = RunContext(dataset, run.stats, run.device, run.seed, cache_dir, config, plugins.registries)
        run.model = components["model"].build(ctx, **config["model"]["params"])
        run.loss = components["loss"].build(ctx, **config["loss"]["params"])
        if getattr(run.model, "trainable", False):
            run.model.to(run.device)
        if hasattr(run.loss, "to"):
            run.loss = run.loss.to(run.device)
        run.metrics = {name.split(":", 1)[1]: c.build() for name, c in components.items() if name.startswith("metric:")}
        metric_ctx = evaluation.metric_context(dataset, run.stats, config["metric_params"])
        run.run_dir.mkdir(parents=True, exist_ok=True)
        hook.crs_bench_run_start(run=run)

        batch_size = config["train"]["eval_batch_size"]
        progress = progress_factory(quiet)
        valid_split = dataset.splits["valid"]

        scorer = evaluation.ScoreAdjusted(run.model, run.loss) if getattr(run.loss, "adjusts_scores", False) \
            else run.model

        def validate() -> dict[str, Any]:
            if hasattr(run.loss, "eval"):
                run.loss.eval()
            lists = evaluation.rank_split(scorer, valid_split, batch_size, settings=("standard",))
            return evaluation.compute_metrics(lists, run.metrics, metric_ctx)["standard"]

        hook.crs_bench_stage_start(run=run, stage="train")
        t0 = time.perf_counter()
        state = None
        if getattr(run.model, "trainable", False) and config["train"]["epochs"] > 0:
            state = training.train(run, validate, lambda epoch, metrics: hook.crs_bench_epoch_end(
                run=run, epoch=epoch, metrics=metrics), resume, progress)
        run.timings["train_seconds"] = time.perf_counter() - t0
        training_summary = _training_summary(run, state)
        hook.crs_bench_stage_finish(run=run, stage="train", summary=training_summary)

        hook.crs_bench_stage_start(run=run, stage="test")
        t0 = time.perf_counter()
        valid_metrics = validate()
        test_split = dataset.splits["test"]
        bar = progress(total=len({s.context_id for s in test_split.rec_samples}), desc="test", unit="context")
        lists = evaluation.rank_split(scorer, test_split, batch_size, progress=bar)
        bar.close()
        metrics = evaluation.compute_metrics(lists, run.metrics, metric_ctx)
        run.timings["test_seconds"] = time.perf_counter() - t0
        hook.crs_bench_stage_finish(run=run, stage="test", summary={
            "samples": {s: v.n_samples for s, v in lists.items()}})

        run.timings["total_seconds"] = time.perf_counter() - started
        record = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "config_hash": digest,
            "config": config,
            "seeds": seeds,
            "code": provenance.code_version(),
            "packages": provenance.package_versions(),
            "dataset": _dataset_summary(dataset, run),
            "components": {kind: _component_summary(components[kind], config[kind]["params"], built)
                           for kind, built in (("dataset", None), ("model", run.model), ("loss", run.loss),
                                               ("augmenter", run.augmenter))},
            "plugins": [{"name": name, **origin.as_dict()} for name, origin in sorted(plugins.origins.items())],
            "environment": provenance.environment(run.device),
            "timings": {k: round(v, 3) for k, v in run.timings.items()},
            "training": {**training_summary, "valid_metrics": valid_metrics},
            "augmentation": {"added_dialogues": len(added), **run.augmenter.statistics()},
            "metrics": metrics,
            "metric_versions": {name: components[f"metric:{name}"].version for name, metric in run.metrics.items()
                                if getattr(metric, "task", "rec") == "rec"},
            "metric_params": config["metric_params"],
            "ild_features": {"source": "1-hop KG neighbours of each item (PROTOCOL.md §4.5)",
                             "empty_feature_items": None if metric_ctx.item_neighbours is None else
                             sum(1 for neighbours in metric_ctx.item_neighbours if not neighbours)},
            "artifacts": {},
            "extra": {},
        }
        hook.crs_bench_record_ready(record=record)
        path = write_run(run.run_dir, record, evaluation.sample_rows(lists, dataset.catalogue.ids))
        training.remove_checkpoints(run.run_dir)
        hook.crs_bench_record_written(record=record, path=path)
        run.log(f"wrote {path}")
        hook.crs_bench_run_finish(run=run, record=record)
        return record
    except BaseException as error:
        hook.crs_bench_run_error(run=run, error=error)
        raise


def limit_samples(dataset: Dataset, limit: int | None) -> Dataset:
    """`--limit N`: keep the first N recommendation samples of every split (smoke runs)."""
    if limit is None:
        return dataset
    import hashlib

    splits = {name: Split(name, split.dialogues, split.rec_samples[:limit], split.conv_samples[:limit])
              for name, split in dataset.splits.items()}
    # other samples, other task: a limited run must never share a leaderboard table with a full one
    fingerprint = hashlib.sha256(f"{dataset.fingerprint}:limit={limit}".encode()).hexdigest()
    return Dataset(dataset.name, dataset.catalogue, splits, dataset.kg, fingerprint,
                   dataset.dedup_turn_labels, {**dataset.info, "limit": limit, "unlimited_fingerprint": dataset.fingerprint})


def _training_summary(run: RunState, state: Any) -> dict[str, Any]:
    if state is None:
        return {"trained": False, "selection": "none (deterministic model)"}
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


def _component_summary(component: Component, params: dict[str, Any], built: Any) -> dict[str, Any]:
    """Registry facts plus what the built object reports of itself (`describe()`: resolved settings)."""
    summary = {"name": component.name, "params": params, "version": component.version,
               "origin": component.origin.as_dict() if component.origin else None,
               "requires": sorted(component.requires), "provides": sorted(component.provides)}
    if hasattr(built, "describe"):
        summary["details"] = built.describe()
    if hasattr(built, "parameters") and callable(built.parameters):
        parameters = list(built.parameters())
        summary["parameters"] = {"total": sum(p.numel() for p in parameters),
                                 "trainable": sum(p.numel() for p in parameters if p.requires_grad)}
    return summary


def _dataset_summary(dataset: Dataset, run: RunState) -> dict[str, Any]:
    splits = {}
    for name, split in dataset.splits.items():
        chosen = run.train_split if name == "train" and run.train_split is not None else split
        splits[name] = {
            "dialogues": len(chosen.dialogues),
            "synthetic_dialogues": sum(d.synthetic for d in chosen.dialogues),
            "rec_samples": {s: len(chosen.rec_samples_for(s)) for s in ("standard", "novel")},
            "conv_samples": len(chosen.conv_samples),
        }
    return {"name": dataset.name, "fingerprint": dataset.fingerprint, "num_items": dataset.num_items,
            "splits": splits, "popularity": run.stats.summary() if run.stats else None,
            "info": dataset.info}
