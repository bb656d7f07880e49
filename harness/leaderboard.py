"""Rebuild the leaderboard purely from stored runs (records and their per-sample outputs).

One table per dataset, fingerprint, task and setting. Within it, runs are compared only when every metric
family they share has the same version and parameters (a run scored by another definition opens a table of
its own); a family that only some runs have (installed or back-filled later) adds a column, never a table.
Rows are configurations, aggregated over seeds as mean ± sample standard deviation with the seed count.

The core knows no metric: columns, their direction (higher or lower is better), the sort key and which
columns get significance marks come from the families' `MetricSpec` declarations. The best value of each
column is bold; ≈ marks every row a paired bootstrap over the stored per-sample outputs cannot tell apart
from the best (p >= 0.05, docs/protocol.md). Published reference rows (`harness.published`) are shown under
the measured rows of their dataset's table, as a table of their own: never ranked, bolded or tested.
"""
from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from .api.interfaces import OutputsMetricFamily
from .api.metrics import COUNT, HIGHER, INFO, LOWER, MetricSpec
from .resplit import split_of, table_fingerprint
from .results import iter_records

OUTPUT_STEM = "LEADERBOARD"
LABEL_KINDS = ("model", "loss", "augmenter")
OFFICIAL, RESAMPLED = "official", "resampled"  # Table.splits


@dataclass
class Declarations:
    """The metric declarations of the installed families, in registration order."""

    specs: dict[str, MetricSpec] = field(default_factory=dict)
    factories: dict[str, Any] = field(default_factory=dict)  # name -> Component, to build for significance

    @classmethod
    def of(cls, registries: Any) -> "Declarations":
        if registries is None:
            return cls()
        components = registries.metrics.in_order()
        return cls({c.name: c.spec for c in components}, {c.name: c for c in components})

    def family_of(self, key: str, task: str, names: Iterable[str]) -> str | None:
        for name in names:
            spec = self.specs.get(name)
            if spec is not None and spec.task == task and spec.produces(key):
                return name
        return None

    def direction(self, key: str, task: str, names: Iterable[str]) -> str:
        name = self.family_of(key, task, names)
        return self.specs[name].direction(key) or HIGHER if name else HIGHER


@dataclass
class Row:
    label: dict[str, str]
    config_hash: str
    seeds: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    run_dirs: list[Path] = field(default_factory=list)
    splits: list[int] = field(default_factory=list)  # each run's split index (`harness.resplit`), as `seeds`
    samples: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # conv: test_samples and subset of the record's summary

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
    task: str
    setting: str
    families: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {task, version, params}
    # "official": runs on the dataset's own split; "resampled": the configs run on resampled splits, over
    # every split they ran on (the official one included), aggregated over splits x seeds
    splits: str = "official"
    rows: list[Row] = field(default_factory=list)
    declarations: Declarations = field(default_factory=Declarations)
    # metric -> positions of rows not significantly different from the best row (absent: not tested)
    ties_with_best: dict[str, set[int]] = field(default_factory=dict)
    published: list[Any] = field(default_factory=list)  # `harness.published.PublishedTable`s shown beside the rows

    @property
    def metrics(self) -> list[str]:
        keys = {k for row in self.rows for k in row.values}
        return sorted(keys, key=_metric_order)

    def direction(self, metric: str) -> str:
        return self.declarations.direction(metric, self.task, self.family_order())

    def family_order(self) -> list[str]:
        """The table's families in registration order (unknown ones last, by name)."""
        known = [name for name in self.declarations.specs if name in self.families]
        return known + sorted(set(self.families) - set(known))

    def columns(self) -> list[str]:
        """The declared default columns of the table's families that some row has."""
        present = {k for row in self.rows for k in row.values}
        return [column for name in self.family_order() if name in self.declarations.specs
                for column in self.declarations.specs[name].columns if column in present]

    def sort_key(self) -> str | None:
        """The first family's declared primary key, else the first scored column."""
        return _primary(self) or next((c for c in self.columns() if self.direction(c) in (HIGHER, LOWER)), None)

    def best(self, metric: str) -> float | None:
        means = [m for m in (row.mean(metric) for row in self.rows) if m is not None]
        if not means:
            return None
        return min(means) if self.direction(metric) == LOWER else max(means)

    @property
    def heading(self) -> str:
        return f"{self.dataset} · {self.task} · {self.setting}" + (" · resampled splits" if self.splits == RESAMPLED else "")

    def with_rows(self, rows: list[Row]) -> "Table":
        return replace(self, rows=rows, ties_with_best={}, published=[])


def _primary(table: Table) -> str | None:
    """The first family's declared primary key (what rows are sorted by), when some row has it."""
    present = {k for row in table.rows for k in row.values}
    for name in table.family_order():
        spec = table.declarations.specs.get(name)
        if spec is not None and spec.primary and spec.primary in present:
            return spec.primary
    return None


def _metric_order(key: str) -> tuple:
    stem, _, cut = key.partition("@")
    return (stem, int(cut) if cut.isdigit() else 0, key)


def _compatible(table: Table, families: dict[str, dict[str, Any]]) -> bool:
    return all(table.families[name] == identity for name, identity in families.items() if name in table.families)


def build_tables(runs: Iterable[tuple[Path | None, dict[str, Any]]], registries: Any = None) -> list[Table]:
    """Tables from (run directory, record) pairs; the directory may be None when not needed."""
    declarations = Declarations.of(registries)
    runs = list(runs)
    resampled = {record["config_hash"] for _, record in runs if split_of(record)}
    tables: dict[tuple, list[Table]] = {}
    for run_dir, record in runs:
        dataset = record["dataset"]
        fingerprint = table_fingerprint(dataset)
        scopes = ([OFFICIAL] if not split_of(record) else []) + ([RESAMPLED] if record["config_hash"] in resampled else [])
        for task, settings in record["metrics"].items():
            families = {name: identity for name, identity in record["metric_families"].items()
                        if identity["task"] == task}
            for setting, values in settings.items():
                for scope in scopes:
                    group = tables.setdefault((dataset["name"], fingerprint, task, setting, scope), [])
                    table = next((t for t in group if _compatible(t, families)), None)
                    if table is None:
                        table = Table(dataset["name"], fingerprint, task, setting, declarations=declarations,
                                      splits=scope)
                        group.append(table)
                    table.families.update(families)
                    _add_run(table, run_dir, record, values, _sample_count(record, task, setting))
    result = [table for group in tables.values() for table in group]
    result.sort(key=lambda t: (t.dataset, t.fingerprint, t.splits != OFFICIAL, t.task != "rec", t.task,
                               t.setting != "standard", t.setting))
    for table in result:
        _disambiguate(table.rows)
        key = table.sort_key()
        sign = 1.0 if key is not None and table.direction(key) == LOWER else -1.0
        table.rows.sort(key=lambda r: (sign * (r.mean(key) if key and r.mean(key) is not None else 0.0), _row_name(r)))
    return result


def _sample_count(record: dict[str, Any], task: str, setting: str) -> int | None:
    """How many test samples the run scored in this task and setting (from the harness's own summary)."""
    if task == "conv":
        return (record.get("conversation") or {}).get("samples")
    return record["dataset"].get("splits", {}).get("test", {}).get("rec_samples", {}).get(setting)


def _add_run(table: Table, run_dir: Path | None, record: dict[str, Any], values: dict[str, Any],
             samples: int | None) -> None:
    label = {kind: record["config"][kind]["name"] for kind in LABEL_KINDS}
    details = ((record.get("components") or {}).get("model") or {}).get("details") or {}
    qualifiers = [str(details[key]) for key in ("backbone", "variant") if details.get(key)]
    if qualifiers:  # a model's backbone (hybrid or prompt-lm) and variant (dcrs: its retriever) name its row
        label["model"] = f"{label['model']} ({', '.join(qualifiers)})"
    generator = record["config"].get("generator")
    if table.task == "conv":
        label["generator"] = generator["name"] if generator else "(model)"
    row = next((r for r in table.rows if r.config_hash == record["config_hash"]), None)
    if row is None:
        summary = (record.get("conversation") or {}) if table.task == "conv" else {}
        row = Row(label, record["config_hash"], samples=samples,
                  facts={key: summary[key] for key in ("test_samples", "subset") if key in summary})
        table.rows.append(row)
    seed, split = record["config"]["seed"], split_of(record)
    if (split, seed) in zip(row.splits, row.seeds):
        return
    row.seeds.append(seed)
    row.splits.append(split)
    if run_dir is not None:
        row.run_dirs.append(run_dir)
    for metric, value in values.items():
        direction = table.direction(metric)
        if direction == COUNT:
            row.counts[metric] = value
        elif direction != INFO and isinstance(value, (int, float)) and not isinstance(value, bool):
            row.values.setdefault(metric, []).append(float(value))


def _row_name(row: Row) -> str:
    return " + ".join(row.label[k] for k in row.label)


def _disambiguate(rows: list[Row]) -> None:
    """Rows with the same components but different params get their config hash in the name."""
    names: dict[str, int] = {}
    for row in rows:
        names[_row_name(row)] = names.get(_row_name(row), 0) + 1
    for row in rows:
        if names[_row_name(row)] > 1:
            row.label = {**row.label, "augmenter": f"{row.label['augmenter']} [{row.config_hash[:8]}]"}


def mark_ties_with_best(tables: list[Table], resamples: int = 1000) -> None:
    """Paired bootstrap (seeds averaged per sample) of every row against the best row, for every column its
    family declares testable from stored outputs."""
    from .metric_families import LLM_BACKENDS
    from .results import read_samples

    for table in tables:
        if len(table.rows) < 2 or any(not row.run_dirs for row in table.rows):
            continue
        tested = _tested_columns(table)
        if not tested:
            continue
        stored = {position: _samples_by_split(row, read_samples) for position, row in enumerate(table.rows)}
        compare = _rec_comparer(table, stored) if table.task == "rec" else _conv_comparer(table, stored)
        for family_name, columns in tested.items():
            component = table.declarations.factories[family_name]
            if LLM_BACKENDS in component.requires:
                continue  # a judge: the leaderboard calls no LLM
            family = component.build(**table.families[family_name]["params"])
            if table.task == "conv" and isinstance(family, OutputsMetricFamily):
                continue  # needs the dataset's item names, which the leaderboard does not load
            for metric in columns:
                means = [row.mean(metric) for row in table.rows]
                if any(m is None for m in means):
                    continue
                pick = min if table.direction(metric) == LOWER else max
                best = pick(range(len(means)), key=lambda i: means[i])
                tied = {best}
                for position in range(len(table.rows)):
                    if position != best:
                        result = compare(family, best, position, resamples).get(metric)
                        if result and result["p"] is not None and result["p"] >= 0.05:
                            tied.add(position)
                table.ties_with_best[metric] = tied


def _tested_columns(table: Table) -> dict[str, list[str]]:
    """{family: [columns]} of the columns whose declaring family allows significance marks."""
    tested: dict[str, list[str]] = {}
    for metric in table.metrics:
        name = table.declarations.family_of(metric, table.task, table.family_order())
        if name is not None and table.declarations.specs[name].tested(metric) and name in table.families:
            tested.setdefault(name, []).append(metric)
    return tested


Stored = dict[int, dict[int, list[list[dict[str, Any]]]]]  # row position -> split -> its runs' sample rows


def _samples_by_split(row: Row, read: Any) -> dict[int, list[list[dict[str, Any]]]]:
    """A row's stored samples grouped by split (`harness.resplit`), runs in directory order within each."""
    grouped: dict[int, list[list[dict[str, Any]]]] = {}
    for run_dir, split in sorted(zip(row.run_dirs, row.splits)):
        grouped.setdefault(split, []).append(read(run_dir))
    return grouped


def _rec_comparer(table: Table, stored: Stored):
    """Rows compared by a paired bootstrap over test samples; over several splits, samples are drawn
    within each split and the splits' values averaged (`paired_bootstrap_splits`)."""
    import numpy as np

    from .evaluation import lists_from_rows
    from .ranking import MetricContext
    from .significance import paired_bootstrap, paired_bootstrap_splits

    rows = {position: {split: [[r for r in run if r.get("setting") == table.setting and "top" in r] for run in runs]
                       for split, runs in splits.items()} for position, splits in stored.items()}
    # one native-id -> index map for the whole table, so that labels compare across runs
    ids = sorted({item for splits in rows.values() for runs in splits.values() for run in runs for r in run
                  for item in [r["label"], *r["top"]]})
    lists = {position: {split: [lists_from_rows(run, ids)[table.setting] for run in runs]
                        for split, runs in splits.items()} for position, splits in rows.items()}
    ctx = MetricContext(num_items=len(ids), popularity=np.zeros(len(ids)), tiers=np.zeros(len(ids)))
    cache: dict[tuple, dict] = {}

    def compare(family: Any, best: int, other: int, resamples: int) -> dict:
        key = (id(family), best, other)
        if key not in cache:
            a, b = lists[best], lists[other]
            same = sorted(a) == sorted(b) and all(run.sample_ids == a[split][0].sample_ids
                                                  for split in a for run in a[split] + b[split])
            if not same:
                cache[key] = {}
            elif len(a) == 1:
                [split] = a
                cache[key] = paired_bootstrap(a[split], b[split], ctx, [family], resamples=resamples)
            else:
                order = sorted(a)
                cache[key] = paired_bootstrap_splits([a[s] for s in order], [b[s] for s in order], ctx, [family],
                                                     resamples=resamples)
        return cache[key]

    return compare


def _conv_comparer(table: Table, stored: Stored):
    """Conversation rows: tested on one split only (rows over several splits are left unmarked)."""
    from .significance import paired_bootstrap_text

    single = {position: next(iter(splits.values())) for position, splits in stored.items() if len(splits) == 1}
    responses = {position: [[r for r in run if r.get("task") == "conv"] for run in runs]
                 for position, runs in single.items()}
    cache: dict[tuple, dict] = {}

    def compare(family: Any, best: int, other: int, resamples: int) -> dict:
        key = (id(family), best, other)
        if best not in responses or other not in responses or stored[best].keys() != stored[other].keys():
            return {}
        if key not in cache:
            reference = responses[best][0]
            ids = [r["id"] for r in reference]
            same = all([r["id"] for r in run] == ids for run in responses[best] + responses[other])
            cache[key] = paired_bootstrap_text([[r["prediction"] for r in run] for run in responses[best]],
                                               [[r["prediction"] for r in run] for run in responses[other]],
                                               [r["reference"] for r in reference], [family],
                                               resamples=resamples) if same else {}
        return cache[key]

    return compare


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
             "Mean ± sample std over seeds (n = number of seeds); **bold** = best in column (lowest where the "
             "metric family declares lower is better, e.g. ARP; highest otherwise); ≈ = not significantly "
             "different from the best row (paired bootstrap over test samples, 1,000 resamples, p ≥ 0.05; the "
             "columns each family declares testable, e.g. Recall, NDCG and MRR). Tables never mix dataset "
             "fingerprints, tasks or metric definitions.",
             ""]
    if views:
        lines += ["Views (selected rows, defined in `results/views.yaml`): "
                  + "; ".join(f"[{view.title}](#{_anchor('view: ' + view.title)})" for view in views), ""]
    for table in tables:
        lines += [f"## {table.heading}", ""] + _table_lines(table)
    if not tables:
        lines.append("No records yet: run `bench run` first.\n")
    for view in views:
        lines += [f"## View: {view.title}", "", f"Rows produced by {', '.join(f'`{r}`' for r in view.recipes)}."
                  + (f" {view.note}" if view.note else ""), ""]
        for table in view.tables:
            lines += [f"### {table.heading}", ""] + _table_lines(table, view.columns,
                                                                                               with_published=False)
        if not view.tables:
            lines += ["No records of these recipes yet.", ""]
    return "\n".join(lines)


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def _family_text(name: str, identity: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(identity["params"].items()))
    details = json.dumps(identity["details"], sort_keys=True) if identity.get("details") else ""
    inside = "; ".join(part for part in (params, details) if part)
    return f"{name} v{identity['version']}" + (f" ({inside})" if inside else "")


def _samples_text(table: Table) -> str:
    """``256 test samples``; conversation tables: ``40 of 960 test responses (subset: ...)``."""
    samples = next((r.samples for r in table.rows if r.samples is not None), "?")
    if table.splits == RESAMPLED:
        return "each split's test samples (the splits keep the official dialogue counts, not sample counts)"
    if table.task != "conv":
        return f"{samples} test samples"
    facts = next((r.facts for r in table.rows if r.facts), {})
    total = f" of {facts['test_samples']}" if "test_samples" in facts else ""
    return f"{samples}{total} test responses (subset: {facts.get('subset', '?')})"


def _runs_text(row: Row) -> str:
    """The n column: the seed count, or 'splits×seeds' when the row spans resampled splits."""
    splits = sorted(set(row.splits))
    if splits in ([], [0]):
        return str(len(row.seeds))
    seeds = len(set(row.seeds))
    return f"{len(splits)}×{seeds}" if len(row.seeds) == len(splits) * seeds else f"{len(row.seeds)} runs"


def _table_lines(table: Table, wanted: Sequence[str] | None = None, with_published: bool = True) -> list[str]:
    present = set(table.metrics)
    columns = [m for m in wanted if m in present] if wanted else table.columns()
    families = ", ".join(_family_text(name, table.families[name]) for name in table.family_order())
    label_kinds = list(table.rows[0].label) if table.rows else list(LABEL_KINDS)
    lines = [f"Dataset fingerprint `{table.fingerprint[:12]}` · {_samples_text(table)} · metrics: {families}", "",
             "| " + " | ".join(label_kinds) + " | n | " + " | ".join(columns) + " |",
             "|" + "---|" * (len(label_kinds) + 1 + len(columns))]
    for position, row in enumerate(table.rows):
        cells = [_cell(row, metric, table.best(metric), position in table.ties_with_best.get(metric, ()))
                 for metric in columns]
        lines.append("| " + " | ".join(row.label[k] for k in label_kinds) + f" | {_runs_text(row)} | "
                     + " | ".join(cells) + " |")
    lines.append("")
    if with_published:
        for published in table.published:
            lines += _published_lines(published)
    return lines


def _published_lines(published: Any) -> list[str]:
    """The published rows as a table of their own under the measured one: labelled, never ranked."""
    keys = published.keys()
    lines = [f"**Published** ({published.title}; not runs of this harness, never ranked or bolded): "
             f"{published.source}", "",
             "| published | evaluator | " + " | ".join(published.label(key) for key in keys) + " |",
             "|" + "---|" * (2 + len(keys))]
    for row in published.rows:
        cells = [f"{row.values[key]:.3f}" if key in row.values else "—" for key in keys]
        lines.append(f"| {row.model} | {row.evaluator} | " + " | ".join(cells) + " |")
    lines.append("")
    if published.comparable:
        lines.append("Comparable in kind with the measured columns: "
                     + ", ".join(f"`{key}`" for key in published.comparable) + "; the other published columns "
                     "are not (" + ", ".join(f"`{key}`" for key in keys if key not in published.comparable) + ").")
        lines.append("")
    lines += [f"* {note}" for note in published.notes]
    return lines + [""] if published.notes else lines


def render_csv(tables: list[Table]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "fingerprint", "task", "setting", "splits", "model", "loss", "augmenter", "generator",
                     "config_hash", "n_seeds", "metric", "mean", "std"])
    for table in tables:
        for row in table.rows:
            for metric in table.metrics:
                mean, std = row.mean(metric), row.std(metric)
                writer.writerow([table.dataset, table.fingerprint, table.task, table.setting, table.splits,
                                 row.label["model"],
                                 row.label["loss"], row.label["augmenter"], row.label.get("generator", ""),
                                 row.config_hash, len(row.seeds), metric,
                                 "" if mean is None else f"{mean:.6f}", "" if std is None else f"{std:.6f}"])
    return buffer.getvalue()


def render_json(tables: list[Table]) -> str:
    data = [{
        "dataset": t.dataset, "fingerprint": t.fingerprint, "task": t.task, "setting": t.setting,
        **({"splits": t.splits} if t.splits != OFFICIAL else {}), "metric_families": t.families,
        "rows": [{**r.label, "config_hash": r.config_hash, "n": _runs_text(r), "seeds": sorted(r.seeds),
                  "counts": r.counts,
                  **({"splits": sorted(set(r.splits))} if any(r.splits) else {}),
                  "metrics": {m: {"mean": r.mean(m), "std": r.std(m)} for m in t.metrics if r.mean(m) is not None},
                  "tied_with_best": sorted(m for m, tied in t.ties_with_best.items() if i in tied)}
                 for i, r in enumerate(t.rows)],
        # conversation tables: what the rows scored, and published rows kept apart from the measured ones
        **({"conversation": {"samples": next((r.samples for r in t.rows if r.samples is not None), None),
                             **next((r.facts for r in t.rows if r.facts), {})},
            "published": [p.as_dict() for p in t.published]} if t.task == "conv" else {}),
    } for t in tables]
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def outputs(results_dir: Path, registries: Any = None, significance: bool = True,
            prepared: dict[str, Any] | None = None) -> dict[Path, str]:
    """The three leaderboard files. With `registries` (the installed plugins), columns, directions and
    significance marks follow the families' declarations. Views (`results/views.yaml`) add focused tables to
    the Markdown file; published reference rows (`results/published.yaml`) join the Markdown and JSON
    tables of their dataset, task and setting, apart from the measured rows. `prepared`, when given, receives
    the `tables` and `views` the files are rendered from (the HTML report, `harness.report`, renders the same
    objects)."""
    from .leaderboard_views import load_views, select_rows
    from .published import for_table, load_published

    from .results import samples_path

    runs = list(iter_records(results_dir))
    for path, record in runs:
        samples_path(path.parent, record)  # every row's stored outputs exist and match its record
    tables = build_tables(((path.parent, record) for path, record in runs), registries)
    published = load_published(results_dir)
    for table in tables:
        table.published = for_table(published, table.dataset, table.task, table.setting)
    views = load_views(results_dir, registries=registries)
    select_rows(views, tables)
    if significance and registries is not None:
        mark_ties_with_best(tables + [t for view in views for t in view.tables])
    if prepared is not None:
        prepared.update(tables=tables, views=views)
    return {
        results_dir / f"{OUTPUT_STEM}.md": render_markdown(tables, views),
        results_dir / f"{OUTPUT_STEM}.csv": render_csv(tables),
        results_dir / f"{OUTPUT_STEM}.json": render_json(tables),
    }


def stale_files(results_dir: Path, registries: Any = None) -> list[Path]:
    """Files whose committed content differs from what the records give (for ``--check``)."""
    return [path for path, text in outputs(results_dir, registries).items()
            if not path.is_file() or path.read_text() != text]
