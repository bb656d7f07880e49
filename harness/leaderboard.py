"""Rebuild the leaderboard purely from stored runs (records and their per-sample outputs).

One table per (dataset, fingerprint, metric definitions) and setting: records that differ in any of
those are never mixed. Rows are (model, loss, augmenter) configurations, aggregated over seeds as
mean ± sample standard deviation with the seed count; the best value of each column is marked, and
for the sample-level accuracy columns (Recall, NDCG, MRR) so is every row that a paired bootstrap over
the stored per-sample lists cannot tell apart from the best (p >= 0.05, PROTOCOL.md §6.3).
"""
from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .results import iter_records

OUTPUT_STEM = "LEADERBOARD"
# Columns shown in the Markdown tables, in order, when present; CSV and JSON keep every metric.
MARKDOWN_COLUMNS = ("recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10", "tail_recall@10", "coverage@10",
                    "ild@10", "arp@10", "pwp@10", "bleu2_legacy", "dist2_legacy")
LOWER_IS_BETTER_PREFIXES = ("arp@",)
COUNT_PREFIXES = ("n_",)


def lower_is_better(metric: str) -> bool:
    return metric.startswith(LOWER_IS_BETTER_PREFIXES)


SIGNIFICANCE_FAMILY = "ranking"  # its metrics average over samples, so samples.jsonl.gz suffices


@dataclass
class Row:
    label: dict[str, str]
    config_hash: str
    seeds: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    run_dirs: list[Path] = field(default_factory=list)

    def mean(self, metric: str) -> float | None:
        values = self.values.get(metric)
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        values = self.values.get(metric)
        return statistics.stdev(values) if values and len(values) > 1 else None


@dataclass
class Table:
    dataset: str
    fingerprint: str
    metric_versions: dict[str, str]
    setting: str
    rows: list[Row] = field(default_factory=list)
    # metric -> labels of rows not significantly different from the best row (None: not tested)
    ties_with_best: dict[str, set[int]] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        keys = {k for row in self.rows for k in row.values}
        return sorted(keys, key=lambda k: (k.split("@")[0], int(k.split("@")[1]) if "@" in k and k.split("@")[1].isdigit() else 0, k))

    def best(self, metric: str) -> float | None:
        means = [m for m in (row.mean(metric) for row in self.rows) if m is not None]
        if not means:
            return None
        return min(means) if lower_is_better(metric) else max(means)


def build_tables(runs: Iterable[tuple[Path | None, dict[str, Any]]]) -> list[Table]:
    """Tables from (run directory, record) pairs; the directory may be None when not needed."""
    tables: dict[tuple, Table] = {}
    for run_dir, record in runs:
        dataset = record["dataset"]
        versions = record["metric_versions"]
        for setting, values in record["metrics"].items():
            key = (dataset["name"], dataset["fingerprint"], json.dumps(versions, sort_keys=True),
                   json.dumps(record.get("metric_params", {}), sort_keys=True), setting)
            table = tables.setdefault(key, Table(dataset["name"], dataset["fingerprint"], versions, setting))
            label = {kind: record["config"][kind]["name"] for kind in ("model", "loss", "augmenter")}
            row = next((r for r in table.rows if r.config_hash == record["config_hash"]), None)
            if row is None:
                row = Row(label, record["config_hash"])
                table.rows.append(row)
            if record["config"]["seed"] in row.seeds:
                continue
            row.seeds.append(record["config"]["seed"])
            if run_dir is not None:
                row.run_dirs.append(run_dir)
            for metric, value in values.items():
                if metric.startswith(COUNT_PREFIXES):
                    row.counts[metric] = value
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    row.values.setdefault(metric, []).append(float(value))
    result = sorted(tables.values(), key=lambda t: (t.dataset, t.fingerprint, t.setting != "standard", t.setting))
    for table in result:
        _disambiguate(table.rows)
        table.rows.sort(key=lambda r: (-(r.mean("recall@10") or 0.0), _row_name(r)))
    return result


def _row_name(row: Row) -> str:
    return " + ".join(row.label[k] for k in ("model", "loss", "augmenter"))


def _disambiguate(rows: list[Row]) -> None:
    """Rows with the same components but different params get their config hash in the name."""
    names: dict[str, int] = {}
    for row in rows:
        names[_row_name(row)] = names.get(_row_name(row), 0) + 1
    for row in rows:
        if names[_row_name(row)] > 1:
            row.label = {**row.label, "augmenter": f"{row.label['augmenter']} [{row.config_hash[:8]}]"}


def mark_ties_with_best(tables: list[Table], metric_family: Any, resamples: int = 1000) -> None:
    """Paired bootstrap (seeds averaged per sample) of every row against the best row, per column."""
    import numpy as np

    from .evaluation import lists_from_rows
    from .ranking import MetricContext
    from .results import read_samples
    from .significance import paired_bootstrap

    for table in tables:
        if len(table.rows) < 2 or any(not row.run_dirs for row in table.rows):
            continue
        stored = {position: [[r for r in read_samples(run_dir) if r.get("setting") == table.setting and "top" in r]
                             for run_dir in sorted(row.run_dirs)] for position, row in enumerate(table.rows)}
        # one native-id -> index map for the whole table, so that labels compare across runs
        ids = sorted({item for runs in stored.values() for rows in runs for r in rows for item in [r["label"], *r["top"]]})
        lists = {position: [lists_from_rows(rows, ids)[table.setting] for rows in runs]
                 for position, runs in stored.items()}
        ctx = MetricContext(num_items=len(ids), popularity=np.zeros(len(ids)), tiers=np.zeros(len(ids)))
        columns = [m for m in table.metrics if m.split("@")[0] in ("recall", "ndcg", "mrr")]
        for metric in columns:
            means = [row.mean(metric) for row in table.rows]
            if any(m is None for m in means):
                continue
            best = (min if lower_is_better(metric) else max)(range(len(means)), key=lambda i: means[i])
            table.ties_with_best[metric] = {best}
        cache: dict[tuple[int, int], dict] = {}
        for metric, tied in table.ties_with_best.items():
            best = next(iter(tied))
            for position in range(len(table.rows)):
                if position == best:
                    continue
                key = (best, position)
                if key not in cache:
                    same_samples = all(run.sample_ids == lists[best][0].sample_ids
                                       for run in lists[best] + lists[position])
                    cache[key] = paired_bootstrap(lists[best], lists[position], ctx, [metric_family],
                                                  resamples=resamples) if same_samples else {}
                result = cache[key].get(metric)
                if result and result["p"] is not None and result["p"] >= 0.05:
                    tied.add(position)


def _cell(row: Row, metric: str, best: float | None, tied: bool = False) -> str:
    mean = row.mean(metric)
    if mean is None:
        return "n/a"
    std = row.std(metric)
    text = f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")
    if best is not None and round(mean, 4) == round(best, 4):
        return f"**{text}**"
    return f"{text} ≈" if tied else text


def render_markdown(tables: list[Table], views: Sequence[Any] = ()) -> str:
    lines = ["# Leaderboard", "",
             "Generated by `bench leaderboard` from `results/runs/*/record.json`; do not edit by hand.",
             "Mean ± sample std over seeds (n = number of seeds); **bold** = best in column "
             "(lowest for ARP, highest otherwise); ≈ = not significantly different from the best row "
             "(paired bootstrap over test samples, 1,000 resamples, p ≥ 0.05; Recall, NDCG and MRR columns). "
             "Tables never mix dataset fingerprints or metric definitions.",
             ""]
    if views:
        lines += ["Views (selected rows, defined in `results/views.yaml`): "
                  + "; ".join(f"[{view.title}](#{_anchor('view: ' + view.title)})" for view in views), ""]
    for table in tables:
        lines += [f"## {table.dataset} · {table.setting}", ""] + _table_lines(table, MARKDOWN_COLUMNS)
    if not tables:
        lines.append("No records yet: run `bench run` first.\n")
    for view in views:
        lines += [f"## View: {view.title}", "", f"Rows produced by {', '.join(f'`{r}`' for r in view.recipes)}."
                  + (f" {view.note}" if view.note else ""), ""]
        for table in view.tables:
            lines += [f"### {table.dataset} · {table.setting}", ""] + _table_lines(table, view.columns or MARKDOWN_COLUMNS)
        if not view.tables:
            lines += ["No records of these recipes yet.", ""]
    return "\n".join(lines)


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def _table_lines(table: Table, wanted: Sequence[str]) -> list[str]:
    columns = [m for m in wanted if m in table.metrics]
    versions = ", ".join(f"{k} v{v}" for k, v in sorted(table.metric_versions.items()))
    samples = next((r.counts.get("n_samples") for r in table.rows if r.counts.get("n_samples") is not None), "?")
    lines = [f"Dataset fingerprint `{table.fingerprint[:12]}` · {samples} test samples · metrics: {versions}", "",
             "| model | loss | augmenter | n | " + " | ".join(columns) + " |",
             "|---|---|---|---|" + "---|" * len(columns)]
    for position, row in enumerate(table.rows):
        cells = [_cell(row, metric, table.best(metric), position in table.ties_with_best.get(metric, ()))
                 for metric in columns]
        lines.append(f"| {row.label['model']} | {row.label['loss']} | {row.label['augmenter']} | "
                     f"{len(row.seeds)} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_csv(tables: list[Table]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "fingerprint", "setting", "model", "loss", "augmenter", "config_hash", "n_seeds",
                     "metric", "mean", "std"])
    for table in tables:
        for row in table.rows:
            for metric in table.metrics:
                mean, std = row.mean(metric), row.std(metric)
                writer.writerow([table.dataset, table.fingerprint, table.setting, row.label["model"],
                                 row.label["loss"], row.label["augmenter"], row.config_hash, len(row.seeds), metric,
                                 "" if mean is None else f"{mean:.6f}", "" if std is None else f"{std:.6f}"])
    return buffer.getvalue()


def render_json(tables: list[Table]) -> str:
    data = [{
        "dataset": t.dataset, "fingerprint": t.fingerprint, "setting": t.setting, "metric_versions": t.metric_versions,
        "rows": [{**r.label, "config_hash": r.config_hash, "seeds": sorted(r.seeds), "counts": r.counts,
                  "metrics": {m: {"mean": r.mean(m), "std": r.std(m)} for m in t.metrics if r.mean(m) is not None},
                  "tied_with_best": sorted(m for m, tied in t.ties_with_best.items() if i in tied)}
                 for i, r in enumerate(t.rows)],
    } for t in tables]
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def outputs(results_dir: Path, metric_family: Any = None) -> dict[Path, str]:
    """The three leaderboard files; `metric_family` (the registered "ranking" family) enables the
    significance marks. Views (`results/views.yaml`) add focused tables to the Markdown file."""
    from .leaderboard_views import load_views, select_rows

    tables = build_tables((path.parent, record) for path, record in iter_records(results_dir))
    views = load_views(results_dir)
    select_rows(views, tables)
    if metric_family is not None:
        mark_ties_with_best(tables + [t for view in views for t in view.tables], metric_family)
    return {
        results_dir / f"{OUTPUT_STEM}.md": render_markdown(tables, views),
        results_dir / f"{OUTPUT_STEM}.csv": render_csv(tables),
        results_dir / f"{OUTPUT_STEM}.json": render_json(tables),
    }


def stale_files(results_dir: Path, metric_family: Any = None) -> list[Path]:
    """Files whose committed content differs from what the records give (for ``--check``)."""
    return [path for path, text in outputs(results_dir, metric_family).items()
            if not path.is_file() or path.read_text() != text]
