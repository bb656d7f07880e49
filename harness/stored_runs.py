"""Work on finished runs without retraining: re-score them with today's metrics, compare two of them.

Everything comes from the run directory (record + samples file) plus the dataset the record names,
reloaded through the cache and checked against the stored fingerprint, so that the popularity tiers and
KG features of the metrics are exactly those of the original run.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import metric_families
from .api.metrics import CONV_SETTING
from .conversation import outputs_from_rows, score
from .errors import RunError
from .evaluation import compute_metrics, lists_from_rows, metric_context
from .loading import load
from .plugin_manager import Plugins
from .popularity import TierThresholds, compute_statistics
from .ranking import MetricContext, RankedLists
from .results import RECORD_FILE, read_record, read_samples, write_record


@dataclass
class StoredRun:
    run_dir: Path
    record: dict[str, Any]
    lists: dict[str, RankedLists]
    metric_ctx: MetricContext
    responses: list[dict[str, Any]]  # conversation rows: id, prediction, reference, response, recommended, gold
    test_split: Any = None  # the dataset's test split and catalogue, for the conversation outputs
    catalogue: Any = None
    cache_dir: Path | None = None  # where families that call an LLM (a judge) find their cached answers

    @property
    def conv_setting(self) -> str | None:
        """The conversation setting the run was scored in (``all`` or ``subset-N``), None without one."""
        return next(iter(self.record["metrics"].get("conv", {})), None)

    def conv_outputs(self) -> Any:
        return outputs_from_rows(self.responses, self.test_split, self.catalogue)


def open_run(run_dir: Path, plugins: Plugins, data_dir: Path | None, cache_dir: Path) -> StoredRun:
    record = read_record(run_dir / RECORD_FILE)
    config = record["config"]
    component = plugins.registries.datasets.get(config["dataset"]["name"])
    dataset = load(component, config["dataset"]["params"], data_dir, cache_dir, config["limit"])
    if dataset.fingerprint != record["dataset"]["fingerprint"]:
        raise RunError(f"{run_dir}: dataset '{dataset.name}' now has fingerprint {dataset.fingerprint[:12]}, the run "
                       f"used {record['dataset']['fingerprint'][:12]}: the data or its processing changed")
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples, TierThresholds(**config["tiers"]))
    ctx = metric_context(dataset, stats)
    rows = read_samples(run_dir, record)
    lists = lists_from_rows(rows, dataset.catalogue.ids)
    return StoredRun(run_dir, record, lists, ctx, [row for row in rows if row.get("task") == "conv"],
                     dataset.splits["test"], dataset.catalogue, cache_dir)


def recompute(run: StoredRun, plugins: Plugins) -> tuple[dict[str, dict], dict[str, metric_families.Family]]:
    """Every task's metrics from the stored outputs with today's families (rec from the ranked lists, conv
    from the stored responses), and the families that produced them."""
    families = metric_families.build(plugins.registries, run.record["config"], run.cache_dir)
    metrics: dict[str, dict] = {}
    produced: dict[str, metric_families.Family] = {}
    if run.lists and families["rec"]:
        metrics["rec"] = compute_metrics(run.lists, families["rec"], run.metric_ctx)
        produced.update(families["rec"])
    if run.responses and families["conv"]:
        setting = run.conv_setting or CONV_SETTING
        metrics["conv"] = {setting: metric_families.merge_values(score(run.conv_outputs(), families["conv"]),
                                                                 families["conv"])}
        produced.update(families["conv"])
    return metrics, produced


def rescore(run: StoredRun, plugins: Plugins, write: bool) -> tuple[dict[str, dict], list[str]]:
    """Recompute every metric from the stored outputs; returns (metrics, differences from the record).

    Only families that produce values for a stored task enter ``metric_families``, so a rescore never
    lists a family the run cannot be compared on."""
    metrics, produced = recompute(run, plugins)
    differences = []
    for task, settings in metrics.items():
        for setting, values in settings.items():
            stored = run.record["metrics"].get(task, {}).get(setting, {})
            for key, value in values.items():
                where = f"{task}/{setting}/{key}"
                if key not in stored:
                    differences.append(f"{where}: new = {value}")
                elif stored[key] != value and not _close(stored[key], value):
                    differences.append(f"{where}: stored {stored[key]} != recomputed {value}")
    identities = metric_families.identities(produced)
    if identities != run.record["metric_families"]:
        differences.append(f"metric_families: stored {sorted(run.record['metric_families'])} != {sorted(identities)}"
                           if set(identities) != set(run.record["metric_families"]) else
                           "metric_families: versions or parameters changed")
    if write and differences:
        record = dict(run.record)
        record["metrics"] = metrics
        record["tasks"] = sorted(metrics)
        record["metric_families"] = identities
        record.setdefault("extra", {})["rescored"] = True
        write_record(run.run_dir / RECORD_FILE, record)
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
            resamples: int = 1000, seed: int = 0, notes: list[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Paired bootstrap per setting over every shared metric family (PROTOCOL.md §6.3).

    A side with several runs (seeds of one configuration) is averaged over its runs inside every resample,
    so the interval covers test-sample noise for the seed-averaged model, not seed noise alone. When every
    run has conversation rows, their responses are compared too, under ``conv/<setting>`` (`compare_conv`);
    what could not be compared is appended to `notes`."""
    from .significance import paired_bootstrap, paired_bootstrap_splits

    runs_a = [runs_a] if isinstance(runs_a, StoredRun) else list(runs_a)
    runs_b = [runs_b] if isinstance(runs_b, StoredRun) else list(runs_b)
    every = [*runs_a, *runs_b]
    strata = _strata(runs_a, runs_b)
    names = set.intersection(*(set(run.record["metric_families"]) for run in every))
    built = metric_families.build(plugins.registries, runs_a[0].record["config"], runs_a[0].cache_dir)
    families = [family.instance for name, family in built["rec"].items() if name in names]
    settings = [s for s in runs_a[0].lists if all(s in run.lists for run in every)]
    if len(strata) > 1:  # resampled splits: samples drawn within each split (`paired_bootstrap_splits`)
        return {setting: paired_bootstrap_splits(
            [[run.lists[setting] for run in a] for a, _ in strata], [[run.lists[setting] for run in b] for _, b in strata],
            [a[0].metric_ctx for a, _ in strata], families, resamples=resamples, seed=seed) for setting in settings}
    result = {setting: paired_bootstrap([run.lists[setting] for run in runs_a], [run.lists[setting] for run in runs_b],
                                        runs_a[0].metric_ctx, families, resamples=resamples, seed=seed)
              for setting in settings}
    result.update(compare_conv(runs_a, runs_b, built["conv"], resamples, seed, notes))
    return result


def _strata(runs_a: list[StoredRun], runs_b: list[StoredRun]) -> list[tuple[list[StoredRun], list[StoredRun]]]:
    """Both sides' runs grouped by dataset fingerprint (one group per resampled split, in split order);
    every group needs runs of both sides, and several groups must be splits of the same data."""
    from .resplit import split_of, table_fingerprint

    groups: dict[str, tuple[list[StoredRun], list[StoredRun]]] = {}
    for side, runs in enumerate((runs_a, runs_b)):
        for run in runs:
            groups.setdefault(run.record["dataset"]["fingerprint"], ([], []))[side].append(run)
    every = [*runs_a, *runs_b]
    if len(groups) > 1 and (len({table_fingerprint(run.record["dataset"]) for run in every}) > 1
                            or any(not a or not b for a, b in groups.values())):
        raise RunError("runs are on different data (dataset fingerprints differ; resampled splits pair only when "
                       "both sides have runs on every split): they cannot be paired")
    return sorted(groups.values(), key=lambda pair: split_of(pair[0][0].record))


def compare_conv(runs_a: Sequence[StoredRun], runs_b: Sequence[StoredRun], built: dict[str, metric_families.Family],
                 resamples: int = 1000, seed: int = 0, notes: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Paired bootstrap over the responses of runs that all have conversation rows: ``{"conv/<setting>":
    {key: row}}``, or {} when some run has none.

    The responses are paired by sample id, so every run must have scored the same conversation samples in
    the same order: runs on different ``--conv-limit`` subsets are refused (RunError). The families are
    those every run recorded with the same identity (version, parameters, judge) and that describe
    themselves as terms (`TextBootstrapTerms`, `OutputsBootstrapTerms`); the others are named in `notes`."""
    from .significance import paired_bootstrap_outputs

    every = [*runs_a, *runs_b]
    if not every or not all(run.responses for run in every):
        if notes is not None and any(run.responses for run in every):
            notes.append("conversation: not compared (some runs have no conversation rows)")
        return {}
    first = every[0]
    ids = [row["id"] for row in first.responses]
    for run in every[1:]:
        if run.conv_setting != first.conv_setting or [row["id"] for row in run.responses] != ids:
            raise RunError(f"runs scored different conversation samples ({first.record['run_id']}: "
                           f"{first.conv_setting}, {len(ids)} responses; {run.record['run_id']}: {run.conv_setting}, "
                           f"{len(run.responses)} responses): rerun with the same --conv-limit to pair them")
    from .api.interfaces import OutputsBootstrapTerms, TextBootstrapTerms

    recorded_as = first.record["metric_families"]
    shared = [name for name in built if name in recorded_as
              and all(run.record["metric_families"].get(name) == recorded_as[name] for run in every)]

    usable = [name for name in shared if isinstance(built[name].instance, (OutputsBootstrapTerms, TextBootstrapTerms))]
    if notes is not None:
        recorded = set.intersection(*({n for n, i in run.record["metric_families"].items() if i["task"] == "conv"}
                                      for run in every))
        left_out = sorted(recorded - set(usable))
        if left_out:
            notes.append("conversation families not compared (no bootstrap terms, or recorded differently by the "
                         "runs): " + ", ".join(left_out))
    result = paired_bootstrap_outputs([run.conv_outputs() for run in runs_a], [run.conv_outputs() for run in runs_b],
                                      [built[name].instance for name in usable], resamples=resamples, seed=seed)
    return {f"conv/{first.conv_setting}": result}


def render_comparison(result: dict[str, dict[str, dict[str, Any]]], label_a: str, label_b: str,
                      notes: Sequence[str] = ()) -> str:
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
    lines += [*notes, "* p < 0.05 (paired bootstrap, 1,000 resamples, numpy default_rng(0), same draws for A and B; "
              "conversation metrics resample responses)"]
    return "\n".join(lines)
