"""Work on finished runs without retraining: re-score them with today's metrics, compare two of them.

Everything comes from the run directory (record + samples file) plus the dataset the record names,
reloaded through the cache and checked against the stored fingerprint, so that the popularity tiers and
KG features of the metrics are exactly those of the original run.
"""
from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .evaluation import compute_metrics, lists_from_rows, metric_context
from .plugin_manager import Plugins
from .popularity import TierThresholds, compute_statistics
from .ranking import MetricContext, RankedLists
from .results import RECORD_FILE, read_record, read_samples, write_atomic
from .runner import RunError, limit_samples, prepare_dataset


@dataclass
class StoredRun:
    run_dir: Path
    record: dict[str, Any]
    lists: dict[str, RankedLists]
    metric_ctx: MetricContext


def open_run(run_dir: Path, plugins: Plugins, data_dir: Path | None, cache_dir: Path) -> StoredRun:
    record = read_record(run_dir / RECORD_FILE)
    config = record["config"]
    component = plugins.registries.datasets.get(config["dataset"]["name"])
    dataset = limit_samples(prepare_dataset(component, config, data_dir, cache_dir), config["limit"])
    if dataset.fingerprint != record["dataset"]["fingerprint"]:
        raise RunError(f"{run_dir}: dataset '{dataset.name}' now has fingerprint {dataset.fingerprint[:12]}, the run "
                       f"used {record['dataset']['fingerprint'][:12]}: the data or its processing changed")
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples, TierThresholds(**config["tiers"]))
    ctx = metric_context(dataset, stats, record.get("metric_params", config["metric_params"]))
    lists = lists_from_rows(read_samples(run_dir), dataset.catalogue.ids)
    return StoredRun(run_dir, record, lists, ctx)


def metric_families(plugins: Plugins, names: Sequence[str] | None) -> dict[str, Any]:
    chosen = names if names is not None else plugins.registries.metrics.names()
    return {name: plugins.registries.metrics.get(name) for name in chosen}


def rescore(run: StoredRun, plugins: Plugins, write: bool) -> tuple[dict[str, dict], list[str]]:
    """Recompute every metric from the stored lists; returns (metrics, differences from the record)."""
    components = metric_families(plugins, run.record["config"]["metrics"])
    metrics = compute_metrics(run.lists, {name: c.build() for name, c in components.items()}, run.metric_ctx)
    differences = []
    for setting, values in metrics.items():
        stored = run.record["metrics"].get(setting, {})
        for key, value in values.items():
            if key not in stored:
                differences.append(f"{setting}/{key}: new = {value}")
            elif stored[key] != value and not _close(stored[key], value):
                differences.append(f"{setting}/{key}: stored {stored[key]} != recomputed {value}")
    if write and differences:
        record = dict(run.record)
        record["metrics"] = metrics
        record["metric_versions"] = {name: c.version for name, c in components.items()}
        record.setdefault("extra", {})["rescored"] = True
        write_atomic(run.run_dir / RECORD_FILE,
                     (json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n").encode())
    return metrics, differences


def _close(a: Any, b: Any) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-12 * max(1.0, abs(a))


def expand_runs(pattern: str) -> list[Path]:
    """A run directory, or a (quoted) glob pattern matching several, e.g. the seeds of one config."""
    if not glob.has_magic(pattern):
        return [Path(pattern)]
    matches = sorted(Path(path) for path in glob.glob(pattern) if (Path(path) / RECORD_FILE).is_file())
    if not matches:
        raise RunError(f"no finished run matches {pattern!r}")
    return matches


def compare(runs_a: StoredRun | Sequence[StoredRun], runs_b: StoredRun | Sequence[StoredRun], plugins: Plugins,
            resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, dict[str, Any]]]:
    """Paired bootstrap per setting over every shared metric family (PROTOCOL.md §6.3).

    A side with several runs (seeds of one configuration) is averaged over its runs inside every resample,
    so the interval covers test-sample noise for the seed-averaged model, not seed noise alone."""
    from .significance import paired_bootstrap

    runs_a = [runs_a] if isinstance(runs_a, StoredRun) else list(runs_a)
    runs_b = [runs_b] if isinstance(runs_b, StoredRun) else list(runs_b)
    every = [*runs_a, *runs_b]
    fingerprints = {run.record["dataset"]["fingerprint"] for run in every}
    if len(fingerprints) > 1:
        raise RunError("runs are on different data (dataset fingerprints differ): they cannot be paired")
    names = sorted(set.intersection(*(set(run.record["metric_versions"]) for run in every)),
                   key=lambda name: (name != "ranking", name))
    families = [c.build() for c in metric_families(plugins, names).values()]
    families = [f for f in families if getattr(f, "task", "rec") == "rec"]
    settings = [s for s in runs_a[0].lists if all(s in run.lists for run in every)]
    return {setting: paired_bootstrap([run.lists[setting] for run in runs_a], [run.lists[setting] for run in runs_b],
                                      runs_a[0].metric_ctx, families, resamples=resamples, seed=seed)
            for setting in settings}


def render_comparison(result: dict[str, dict[str, dict[str, Any]]], label_a: str, label_b: str) -> str:
    lines = [f"A = {label_a}", f"B = {label_b}", ""]
    for setting, metrics in result.items():
        lines += [f"{setting}:", f"  {'metric':<18} {'A':>8} {'B':>8} {'A-B':>8} {'95% interval':>20} {'p':>6}"]
        for key, row in metrics.items():
            if row["delta"] is None:
                lines.append(f"  {key:<18} {'n/a':>8}")
                continue
            interval = f"[{row['low']:+.4f}, {row['high']:+.4f}]" if row["low"] is not None else "n/a"
            mark = " *" if row["significant"] else ""
            lines.append(f"  {key:<18} {row['a']:>8.4f} {row['b']:>8.4f} {row['delta']:>+8.4f} {interval:>20} "
                         f"{row['p']:>6.3f}{mark}")
        lines.append("")
    lines.append("* p < 0.05 (paired bootstrap, 1,000 resamples, numpy default_rng(0), same draws for A and B)")
    return "\n".join(lines)
