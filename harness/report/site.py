"""`bench leaderboard --html DIR`: the leaderboard as a static site (docs/report.md).

* ``index.html``: a table per dataset, fingerprint, task and setting with the Markdown leaderboard's marks
  (bold best, ≈ ties), sortable columns and filters; published reference rows apart, never sorted into the
  measured rows; the views of ``results/views.yaml``; the figures;
* ``runs/<config hash>.html``: a page per run group (the seeds of one config): results, recall by tier,
  where the top-10 lists go, training curves, timings, the resolved config, provenance and a browser of
  the test samples;
* ``figures/*.png|svg``: the figures for papers (`harness.report.plots`).

The numbers are the leaderboard's own: every table is serialised by `leaderboard.render_json`, the function
that writes ``LEADERBOARD.json``; the site never recomputes a metric. Pages are self-contained: styles,
scripts and figures are inlined (a Content-Security-Policy forbids any network access), and the only links
are between the site's own files.
"""
from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..api.metrics import HIGHER, LOWER
from ..leaderboard import LABEL_KINDS, Table, _family_text, _samples_text, render_json
from ..results import write_atomic
from . import collect, plots, svg
from .collect import TIER_NAMES, TOP_K, Group, Items

FILTER_KINDS = ("model", "loss", "augmenter", "generator", "backbone")
LONGTAIL_SYSTEMS = 10  # lines of a main table's long-tail curve (a view draws all its rows, up to 16)
TIER_SYSTEMS = 12
BROWSER_SAMPLES = 200  # samples per setting and seed embedded in a run page (the first in stored order)
TIER_COLOURS = {"head": "#d62728", "body": "#ff7f0e", "tail": "#1f77b4", "cold": "#17becf", "labels": "#555"}
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


@dataclass
class TableView:
    """A leaderboard table as the site shows it: `render_json`'s data plus what the objects declare."""

    table: Table
    data: dict[str, Any]  # render_json's entry for the table
    columns: list[str]  # shown by default
    anchor: str
    view: Any = None  # the `View` it belongs to, or None for a main table

    @property
    def metrics(self) -> list[str]:
        return self.table.metrics

    def direction(self, metric: str) -> str:
        return self.table.direction(metric)

    def best(self, metric: str) -> float | None:
        means = [row["metrics"][metric]["mean"] for row in self.data["rows"] if metric in row["metrics"]]
        if not means:
            return None
        return min(means) if self.direction(metric) == LOWER else max(means)

    @property
    def title(self) -> str:
        return self.table.heading


def table_view(table: Table, anchor: str, wanted: Sequence[str] | None = None, view: Any = None) -> TableView:
    [data] = json.loads(render_json([table]))
    present = set(table.metrics)
    columns = [m for m in wanted if m in present] if wanted else table.columns()
    if not columns:  # no declarations (no registries): every scored metric
        columns = list(table.metrics)
    return TableView(table, data, columns, anchor, view)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _base(value: str) -> str:
    """A label without the config-hash suffix the leaderboard adds to tell same-named rows apart."""
    return re.sub(r" \[[0-9a-f]{8}\]$", "", value)


def backbone_of(record: dict[str, Any]) -> str:
    """The declared backbone of a run (a ``backbone`` parameter or detail of its model or generator), or —."""
    config, components = record.get("config", {}), record.get("components", {})
    for kind in ("model", "generator"):
        params = (config.get(kind) or {}).get("params") or {}
        details = (components.get(kind) or {}).get("details") or {}
        for source in (params, details):
            value = source.get("backbone")
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
            if isinstance(value, dict) and value.get("name"):
                return str(value["name"])
    return "—"


def facets(row: dict[str, Any], group: Group | None) -> dict[str, str]:
    record = group.record if group is not None else {}
    generator = row.get("generator") or ((record.get("config") or {}).get("generator") or {}).get("name") or "—"
    return {"model": row.get("model", "—"), "loss": row.get("loss", "—"), "augmenter": _base(row.get("augmenter", "—")),
            "generator": _base(generator), "backbone": backbone_of(record) if record else "—"}


def row_name(row: dict[str, Any], kinds: Sequence[str]) -> str:
    return " · ".join(str(row.get(kind, "")) for kind in kinds) or row.get("model", "?")


def varying(rows: Sequence[dict[str, Any]], kinds: Sequence[str] = (*LABEL_KINDS, "generator")) -> list[str]:
    """The label kinds whose value differs between rows (what a legend needs to tell them apart)."""
    found = [kind for kind in kinds if len({row.get(kind) for row in rows}) > 1]
    return found or ["model"]


def _cut(key: str | None) -> str:
    return key.partition("@")[2] if key and "@" in key else str(TOP_K)


def format_cell(mean: float, std: float | None) -> str:
    """The Markdown leaderboard's number format (`leaderboard._cell`)."""
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


# ---------------------------------------------------------------------------------------------- the site


@dataclass
class Site:
    out_dir: Path
    groups: dict[str, Group]
    items: dict[tuple, Items | str]
    notes: list[str] = field(default_factory=list)
    figures: dict[str, bytes | str] = field(default_factory=dict)  # path under out_dir -> content
    pending: list[Any] = field(default_factory=list)  # `Embedded` figures to draw

    def items_for(self, record: dict[str, Any]) -> Items | None:
        found = self.items.get(collect.items_key(record))
        return found if isinstance(found, Items) else None


def write_site(out_dir: Path, tables: list[Table], views: Sequence[Any] = (), registries: Any = None,
               data_dir: Path | None = None, cache_dir: Path = Path(".cache"), figures: bool = True,
               timings: dict[str, float] | None = None) -> Path:
    """Write the site for leaderboard `tables` and `views` (as `leaderboard.outputs` prepares them) into
    `out_dir`; returns the index page. Items' tiers, titles and test contexts come from the datasets when they
    load (`data_dir`, `cache_dir`); otherwise pages show item ids and say why. `timings`, when given,
    receives the seconds of each phase (benchmarks/bench_html.py)."""
    clock = _Clock(timings)
    pool = FigurePool() if figures else None  # workers start (import matplotlib) while the datasets load
    try:
        return _write_site(out_dir, tables, views, registries, data_dir, cache_dir, pool, clock)
    finally:
        if pool is not None:
            pool.close()


def _write_site(out_dir: Path, tables: list[Table], views: Sequence[Any], registries: Any, data_dir: Path | None,
                cache_dir: Path, pool: "FigurePool | None", clock: "_Clock") -> Path:
    figures = pool is not None
    if registries is None:
        from ..plugin_manager import load_plugins

        registries = load_plugins(autoload=False).registries
    out_dir = Path(out_dir)
    groups = collect.groups_of(tables)
    items: dict[tuple, Items | str] = {}
    for group in groups.values():
        key = collect.items_key(group.record)
        if key not in items:
            items[key] = collect.load_items(group.record, registries, data_dir, cache_dir)
    clock.lap("datasets")
    for group in groups.values():
        for run in group.runs:
            run.outputs()
    clock.lap("stored outputs")
    site = Site(out_dir, groups, items)
    site.notes = sorted({note for note in items.values() if isinstance(note, str)})

    main = [table_view(table, f"t-{_slug(f'{table.dataset}-{table.fingerprint[:8]}-{table.task}-{table.setting}')}"
                       + ("-resampled" if table.splits != "official" else "")
                       + (f"-{index}" if index else ""))
            for index, table in enumerate(tables)]
    _unique_anchors(main)
    view_tables = [[table_view(table, f"v{number}-{_slug(table.task + '-' + table.setting)}-{index}", view.columns,
                               view) for index, table in enumerate(view.tables)]
                   for number, view in enumerate(views, 1)]
    index_figures = _main_figures(site, main) if figures else {}
    view_figures = [_view_figures(site, view, tvs, number) if figures else []
                    for number, (view, tvs) in enumerate(zip(views, view_tables), 1)]
    drawn = pool.start([e.job for e in site.pending]) if pool is not None else (lambda: [])
    pages: dict[str, str] = {}  # the run pages are written while the workers draw
    memberships: dict[str, list[tuple[TableView, int]]] = {}
    for tv in main:
        for position, row in enumerate(tv.data["rows"]):
            memberships.setdefault(row["config_hash"], []).append((tv, position))
    for config_hash, group in groups.items():
        pages[group.page] = render_run_page(site, group, memberships.get(config_hash, []))
    clock.lap("run pages")
    for embedded, figure in zip(site.pending, drawn()):
        embedded.svg, embedded.alt = figure.svg, figure.alt
        site.figures[f"figures/{embedded.stem}.png"] = figure.png
        site.figures[f"figures/{embedded.stem}.svg"] = figure.svg
    clock.lap("figures")
    pages["index.html"] = render_index(site, main, list(zip(views, view_tables)), index_figures, view_figures)

    clock.lap("index")
    written = {**{name: text.encode("utf-8") for name, text in pages.items()},
               **{name: data.encode("utf-8") if isinstance(data, str) else data for name, data in site.figures.items()}}
    for name, data in written.items():
        write_atomic(out_dir / name, data)
    for folder, suffixes in (("runs", (".html",)), ("figures", (".png", ".svg"))):
        for path in (out_dir / folder).glob("*"):  # pages of runs no longer in the results
            if path.suffix in suffixes and f"{folder}/{path.name}" not in written:
                path.unlink()
    clock.lap("writing")
    return out_dir / "index.html"


class FigurePool:
    """Draws the figures in worker processes (matplotlib is slow; the figures are independent): one
    `python -m harness.report.figure_worker` per CPU (at most 4), started first so that their matplotlib import
    overlaps the dataset loading, each sent its share of the jobs through a pipe while this process writes the
    run pages. A worker that cannot start or fails leaves its figures to this process (drawn one by one)."""

    def __init__(self, workers: int | None = None):
        import subprocess
        import sys

        if workers is None:
            available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            workers = min(available, 4)
        root = str(Path(__file__).resolve().parents[2])  # the directory holding the `harness` package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.workers: list[Any] = []
        for _ in range(workers if workers >= 2 else 0):
            try:
                self.workers.append(subprocess.Popen([sys.executable, "-m", "harness.report.figure_worker"], env=env,
                                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                     stderr=subprocess.DEVNULL))
            except OSError:
                break

    def start(self, jobs: Sequence[tuple[str, tuple]]):
        """Send the jobs; returns a function that waits for the figures (in job order)."""
        import pickle
        import threading

        shares = [list(range(i, len(jobs), len(self.workers))) for i in range(len(self.workers))] if self.workers \
            and len(jobs) > 1 else []
        results: dict[int, Any] = {}

        def run(worker: Any, share: list[int]) -> None:
            try:
                out, _ = worker.communicate(pickle.dumps([jobs[i] for i in share]))
                if worker.returncode == 0:
                    results.update(zip(share, pickle.loads(out)))  # our own child's answer, over our own pipe
            except (OSError, EOFError, pickle.UnpicklingError, ValueError):
                pass

        threads = [threading.Thread(target=run, args=(worker, share), daemon=True)
                   for worker, share in zip(self.workers, shares)]
        for thread in threads:
            thread.start()

        def collect() -> list[Any]:
            for thread in threads:
                thread.join()
            return [results[i] if i in results else plots.draw(job) for i, job in enumerate(jobs)]

        return collect

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
        self.workers = []


class _Clock:
    def __init__(self, timings: dict[str, float] | None):
        import time

        self.timings, self.now, self.last = timings, time.perf_counter, time.perf_counter()

    def lap(self, name: str) -> None:
        if self.timings is not None:
            now = self.now()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now


def _unique_anchors(views: list[TableView]) -> None:
    seen: dict[str, int] = {}
    for tv in views:
        count = seen.get(tv.anchor, 0)
        seen[tv.anchor] = count + 1
        if count:
            tv.anchor = f"{tv.anchor}-{count}"


# ------------------------------------------------------------------------------------------------ figures


@dataclass
class Embedded:
    """A figure of the index: drawn later (`plots.draw` in `FigurePool`), then embedded and written."""

    stem: str
    job: tuple[str, tuple]  # (plots function, arguments): plain numbers and names
    caption: str
    svg: str = ""
    alt: str = ""


def _add_figure(site: Site, stem: str, function: str, args: tuple, caption: str) -> Embedded:
    embedded = Embedded(stem, (function, args), caption)
    site.pending.append(embedded)
    return embedded


def _tier_values(row: dict[str, Any], k: str) -> dict[str, tuple[float, float | None]]:
    values = {}
    for tier in TIER_NAMES:
        metric = row["metrics"].get(f"{tier}_recall@{k}")
        if metric is not None:
            values[tier] = (metric["mean"], metric["std"])
    return values


def _tier_counts(row: dict[str, Any]) -> dict[str, int | None]:
    return {tier: row.get("counts", {}).get(f"n_{tier}") for tier in TIER_NAMES}


def _longtail(site: Site, tv: TableView, rows: Sequence[dict[str, Any]], title: str, stem: str,
              names: Sequence[str]) -> Embedded | None:
    first = site.groups.get(rows[0]["config_hash"]) if rows else None
    items = site.items_for(first.record) if first else None
    if items is None or tv.table.task != "rec":
        return None
    order = items.order
    systems = []
    for row, name in zip(rows, names):
        group = site.groups.get(row["config_hash"])
        if group is not None:
            systems.append((name, collect.top_counts(group, tv.table.setting, items)[order]))
    tiers = [items.tiers[i] for i in order]
    bounds = {"head": tiers.count("head"), "body": tiers.count("body"),
              "tail": tiers.count("tail") + tiers.count("cold")}
    caption = (f"Long-tail curve ({tv.table.setting} setting): the share of top-{TOP_K} recommendation slots (each "
               f"distinct test context once per seed) taken by the r most popular items; dashed: the training "
               f"labels. A curve above the dashed line concentrates on popular items more than the training data.")
    return _add_figure(site, stem, "longtail_curve", (systems, items.label_counts[order], bounds, title), caption)


def _main_figures(site: Site, main: list[TableView]) -> dict[str, list[Embedded]]:
    """Figures per group of main tables that differ only in setting (panels per setting); keyed by the anchor
    of the group's first table."""
    groups: dict[tuple, list[TableView]] = {}
    for tv in main:
        if tv.table.task == "rec" and tv.data["rows"]:
            key = (tv.table.dataset, tv.table.fingerprint, tv.table.task, json.dumps(tv.table.families, sort_keys=True))
            groups.setdefault(key, []).append(tv)
    result: dict[str, list[Embedded]] = {}
    stems: set[str] = set()
    for (dataset, fingerprint, task, _), tvs in groups.items():
        stem = _slug(f"{dataset}-{task}") + ("" if sum(1 for k in groups if k[0] == dataset) == 1 else f"-{fingerprint[:8]}")
        stem = next(f"{stem}-{n}" if n else stem for n in range(len(groups) + 1)
                    if (f"{stem}-{n}" if n else stem) not in stems)  # same data, other metric definitions
        stems.add(stem)
        first = next((tv for tv in tvs if tv.table.setting == "standard"), tvs[0])
        embedded = []
        key = first.table.sort_key()
        k = _cut(key)
        kinds = varying(first.data["rows"])
        rows = first.data["rows"][:LONGTAIL_SYSTEMS]
        shown = f" (first {len(rows)} of {len(first.data['rows'])} rows by {key})" if len(first.data["rows"]) > len(rows) else ""
        figure = _longtail(site, first, rows, f"{dataset} · {first.table.setting}{shown}", f"{stem}-longtail",
                           [row_name(row, kinds) for row in rows])
        if figure is not None:
            embedded.append(figure)
        panels = []
        for tv in tvs:
            rows = tv.data["rows"][:TIER_SYSTEMS]
            data = [(row_name(row, varying(tv.data["rows"])), _tier_values(row, k)) for row in rows]
            if any(values for _, values in data):
                panels.append((tv.table.setting, data, _tier_counts(rows[0])))
        if panels:
            many = len(tvs[0].data["rows"]) > TIER_SYSTEMS
            title = f"{dataset}: recall@{k} by popularity tier" + (f" (first {TIER_SYSTEMS} rows by {key})" if many else "")
            embedded.append(_add_figure(site, f"{stem}-tiers", "tier_bars", (panels, k, title),
                                        f"Recall@{k} within each popularity tier of the test labels (n: test samples "
                                        "whose label is in the tier; cold items never occur in training dialogues "
                                        "and are a part of the tail). Whiskers: sample std over seeds."))
        x_key = f"coverage@{k}"
        points = []
        for tv in tvs:
            kinds = varying(tv.data["rows"])
            label_kinds = [kind for kind in kinds if kind != "model"] or ["model"]
            chosen = [(row_name(row, label_kinds), row.get("model", "?"), _pair(row, x_key), _pair(row, key))
                      for row in tv.data["rows"] if x_key in row["metrics"] and key in row["metrics"]]
            if chosen:
                points.append((tv.table.setting, chosen))
        if points and key:
            embedded.append(_add_figure(
                site, f"{stem}-coverage", "coverage_scatter", (points, x_key, key, f"{dataset}: coverage against accuracy"),
                f"{x_key} (share of the catalogue in some top-{k} list) against {key}, mean ± std over seeds; colour: "
                "model; named: the points no other beats on both axes, and the most accurate. Up and to the right is "
                "better on both."))
        result[first.anchor] = embedded
        result.update({tv.anchor: [] for tv in tvs if tv is not first})
    return result


def _pair(row: dict[str, Any], metric: str | None) -> tuple[float, float | None]:
    value = row["metrics"].get(metric or "", {"mean": float("nan"), "std": None})
    return value["mean"], value["std"]


def loss_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of models that appear with three or more losses (a loss comparison), grouped by model."""
    losses: dict[str, set[str]] = {}
    for row in rows:
        losses.setdefault(row.get("model", "?"), set()).add(row.get("loss", "?"))
    models = [model for model, found in losses.items() if len(found) >= 3]
    return [row for model in models for row in rows if row.get("model") == model]


def _view_figures(site: Site, view: Any, tvs: list[TableView], number: int) -> list[Embedded]:
    """A view that compares losses gets the loss-comparison chart per setting and its long-tail curve."""
    embedded = []
    stem = f"view{number}-{_slug(view.title)[:40]}"
    compared = [(tv, loss_rows(tv.data["rows"])) for tv in tvs if tv.table.task == "rec"]
    compared = [(tv, rows) for tv, rows in compared if rows]
    if compared:
        tv, rows = next(((tv, rows) for tv, rows in compared if tv.table.setting == "standard"), compared[0])
        kinds = varying(rows)
        figure = _longtail(site, tv, rows[:16], f"{view.title} · {tv.table.setting}", f"{stem}-longtail",
                           [row_name(row, kinds) for row in rows[:16]])
        if figure is not None:
            embedded.append(figure)
    for tv, rows in compared:
        scored = [c for c in tv.columns if tv.direction(c) in (HIGHER, LOWER)][:4]
        data = [(row.get("model", "?"), row.get("loss", "?"), {key: _pair(row, key) for key in scored}) for row in rows]
        args = ([(key, tv.direction(key)) for key in scored], data, f"{view.title} · {tv.table.setting}")
        embedded.append(_add_figure(site, f"{stem}-losses-{_slug(tv.table.setting)}", "loss_comparison", args,
                                    f"Loss comparison ({tv.table.setting} setting): mean ± std over seeds per loss; "
                                    "dashed: the model's ce control; ↑ higher is better, ↓ lower."))
    return embedded


# --------------------------------------------------------------------------------------------- html parts


def _page(title: str, body: str, depth: int = 0) -> str:
    home = "../" * depth + "index.html"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{_asset('site.css')}</style></head>"
            f"<body><header class=\"top\"><a href=\"{home}\">crs-bench leaderboard</a></header><main>{body}</main>"
            f"<script>{_asset('site.js')}</script></body></html>\n")


def _figure_html(figure: Embedded, depth: int = 0) -> str:
    data = base64.b64encode(figure.svg.encode("utf-8")).decode("ascii")
    prefix = "../" * depth
    return (f"<figure class=\"plot\" id=\"fig-{escape(figure.stem)}\"><img src=\"data:image/svg+xml;base64,{data}\" "
            f"alt=\"{escape(figure.alt)}\"><figcaption>{escape(figure.caption)} "
            f"<a href=\"{prefix}figures/{escape(figure.stem)}.png\">PNG</a> · "
            f"<a href=\"{prefix}figures/{escape(figure.stem)}.svg\">SVG</a></figcaption></figure>")


def _number_cell(tv: TableView, row: dict[str, Any], metric: str, extra: bool) -> str:
    value = row["metrics"].get(metric)
    classes = ["num"] + (["extra"] if extra else [])
    if value is None:
        return f"<td class=\"{' '.join(classes)} na\" data-key=\"{escape(metric)}\">n/a</td>"
    mean, std = value["mean"], value["std"]
    best = tv.best(metric)
    text = escape(format_cell(mean, std))
    if best is not None and round(mean, 4) == round(best, 4):
        classes.append("best")
        inner = f"<strong>{text}</strong>"
    elif metric in row.get("tied_with_best", []):
        classes.append("tie")
        inner = (f"{text} <span class=\"mark\" title=\"not significantly different from the best row (paired "
                 f"bootstrap, p ≥ 0.05)\">≈</span>")
    else:
        inner = text
    std_attr = "" if std is None else f" data-std=\"{std!r}\""
    return (f"<td class=\"{' '.join(classes)}\" data-key=\"{escape(metric)}\" data-value=\"{mean!r}\" "
            f"data-mean=\"{mean!r}\"{std_attr}>{inner}</td>")


def render_table(site: Site, tv: TableView, depth: int = 0) -> str:
    rows = tv.data["rows"]
    kinds = [kind for kind in (list(tv.table.rows[0].label) if tv.table.rows else list(LABEL_KINDS))]
    extra = [m for m in tv.metrics if m not in tv.columns]
    key = tv.table.sort_key()
    head = []
    for kind in kinds:
        head.append(f"<th scope=\"col\" aria-sort=\"none\" data-type=\"text\"><button type=\"button\">{escape(kind)}"
                    "</button></th>")
    head.append("<th scope=\"col\" aria-sort=\"none\" data-type=\"number\" data-better=\"higher\" class=\"n\" "
                "title=\"seeds\"><button type=\"button\">n</button></th>")
    for metric in tv.columns + extra:
        direction = tv.direction(metric)
        sort = ("descending" if direction != LOWER else "ascending") if metric == key else "none"
        arrow = "↓" if direction == LOWER else "↑"
        cls = "num extra" if metric in extra else "num"
        head.append(f"<th scope=\"col\" class=\"{cls}\" aria-sort=\"{sort}\" data-type=\"number\" "
                    f"data-better=\"{escape(direction)}\" data-key=\"{escape(metric)}\" "
                    f"title=\"{'lower' if direction == LOWER else 'higher'} is better\"><button type=\"button\">"
                    f"{escape(metric)} <span class=\"dir\">{arrow}</span></button></th>")
    body = []
    for row in rows:
        group = site.groups.get(row["config_hash"])
        data = " ".join(f"data-{kind}=\"{escape(value)}\"" for kind, value in facets(row, group).items())
        link = ("../" * depth + group.page) if group is not None else None
        cells = []
        for position, kind in enumerate(kinds):
            value = escape(str(row.get(kind, "")))
            if position == 0 and link:
                value = f"<a href=\"{escape(link)}\" title=\"runs of this configuration\">{value}</a>"
            cells.append(f"<td class=\"label\" data-value=\"{escape(str(row.get(kind, '')))}\">{value}</td>")
        runs = f"seeds {', '.join(map(str, row['seeds']))}" + (f"; splits {', '.join(map(str, row['splits']))}"
                                                                 if row.get("splits") else "")
        cells.append(f"<td class=\"n\" data-value=\"{len(row['seeds'])}\" title=\"{runs}\">"
                     f"{escape(row.get('n', str(len(row['seeds']))))}</td>")
        cells += [_number_cell(tv, row, metric, metric in extra) for metric in tv.columns + extra]
        body.append(f"<tr data-hash=\"{escape(row['config_hash'])}\" {data}>{''.join(cells)}</tr>")
    families = ", ".join(_family_text(name, tv.table.families[name]) for name in tv.table.family_order())
    key_text = f"; rows sorted by {escape(key)}" if key else ""
    table_key = (f"{tv.table.dataset}|{tv.table.fingerprint}|{tv.table.task}|{tv.table.setting}"
                 + ("|resampled" if tv.table.splits != "official" else ""))
    html = [f"<p class=\"meta\">Dataset fingerprint <code>{escape(tv.table.fingerprint[:12])}</code> · "
            f"{escape(_samples_text(tv.table))} · metrics: {escape(families)}{key_text}</p>",
            f"<div class=\"scroll\"><table class=\"board\" data-table=\"{escape(table_key)}\">"
            f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"]
    if not rows:
        html.append("<p>No rows.</p>")
    html += [render_published(entry) for entry in tv.data.get("published") or []]
    return "".join(html)


def render_published(entry: dict[str, Any]) -> str:
    """Published reference rows: a table of their own, not sortable, never ranked or marked."""
    rows = entry.get("rows") if isinstance(entry.get("rows"), list) else [entry]
    columns = entry.get("columns") if isinstance(entry.get("columns"), dict) else {}
    keys = list(dict.fromkeys([*columns.values(), *(k for row in rows for k in (row.get("metrics") or {}))]))
    names = {key: name for name, key in columns.items()}

    def value(row: dict[str, Any], key: str) -> str:
        found = (row.get("metrics") or {}).get(key)
        found = found.get("mean") if isinstance(found, dict) else found
        return f"{found:.3f}" if isinstance(found, (int, float)) and not isinstance(found, bool) else "—"

    head = "".join(f"<th scope=\"col\">{escape(key)}" + (f" ({escape(names[key])})" if names.get(key, key) != key
                                                          else "") + "</th>" for key in keys)
    body = "".join(f"<tr><td>{escape(str(row.get('model', '?')))}</td><td>{escape(str(row.get('evaluator', '')))}</td>"
                   + "".join(f"<td class=\"num\">{value(row, key)}</td>" for key in keys) + "</tr>" for row in rows)
    comparable = entry.get("comparable") or []
    notes = "".join(f"<li>{escape(str(note))}</li>" for note in entry.get("notes") or [])
    return (f"<div class=\"published\"><p><strong>Published</strong> ({escape(str(entry.get('title', 'reference')))}; "
            f"not runs of this harness, never ranked, sorted or marked): {escape(str(entry.get('source', '')))}</p>"
            f"<div class=\"scroll\"><table class=\"published-rows\"><thead><tr><th scope=\"col\">published</th>"
            f"<th scope=\"col\">evaluator</th>{head}</tr></thead><tbody>{body}</tbody></table></div>"
            + (f"<p class=\"meta\">Comparable in kind with the measured columns: {escape(', '.join(comparable))}</p>"
               if comparable else "") + (f"<ul class=\"notes\">{notes}</ul>" if notes else "") + "</div>")


def _filters(site: Site, tvs: Iterable[TableView]) -> str:
    values: dict[str, set[str]] = {kind: set() for kind in FILTER_KINDS}
    for tv in tvs:
        for row in tv.data["rows"]:
            for kind, value in facets(row, site.groups.get(row["config_hash"])).items():
                values[kind].add(value)
    parts = []
    for kind in FILTER_KINDS:
        options = "".join(f"<option value=\"{escape(v)}\">{escape(v)}</option>" for v in sorted(values[kind]))
        disabled = " disabled title=\"one value in these tables\"" if len(values[kind]) < 2 else ""
        parts.append(f"<label>{kind} <select data-filter=\"{kind}\"{disabled}><option value=\"\">all</option>"
                     f"{options}</select></label>")
    return ("<form class=\"filters\" id=\"filters\" onsubmit=\"return false\">" + "".join(parts)
            + "<label><input type=\"checkbox\" id=\"all-metrics\"> all metrics</label>"
            "<button type=\"reset\" id=\"reset-filters\">reset</button>"
            "<span id=\"filter-count\" aria-live=\"polite\"></span></form>")


def render_index(site: Site, main: list[TableView], views: list[tuple[Any, list[TableView]]],
                 figures: dict[str, list[Embedded]], view_figures: list[list[Embedded]]) -> str:
    runs = sum(len(group.runs) for group in site.groups.values())
    toc = "".join(f"<li><a href=\"#{tv.anchor}\">{escape(tv.title)}</a> ({len(tv.data['rows'])} rows)</li>" for tv in main)
    toc += "".join(f"<li><a href=\"#view-{number}\">View: {escape(view.title)}</a></li>"
                   for number, (view, _) in enumerate(views, 1))
    body = ["<h1>Leaderboard</h1>",
            f"<p class=\"lead\">{len(main)} tables from {runs} runs in {len(site.groups)} configurations. Mean ± sample "
            "std over seeds (n = seeds); <strong>bold</strong> = best in column (lowest where the metric family declares "
            "lower is better, ↓); ≈ = not significantly different from the best row (paired bootstrap over test "
            "samples, 1,000 resamples, p ≥ 0.05, on the columns each family declares testable). Click a column header "
            "to sort; a configuration's name opens its runs. The numbers are those of <code>LEADERBOARD.json</code>.</p>"]
    body += [f"<p class=\"note\">{escape(note)}</p>" for note in site.notes]
    body.append(f"<nav class=\"toc\"><ul>{toc}</ul></nav>")
    body.append(_filters(site, [*main, *(tv for _, tvs in views for tv in tvs)]))
    if not main:
        body.append("<p>No records yet: run <code>bench run</code> first.</p>")
    for tv in main:
        plots = "".join(_figure_html(f) for f in figures.get(tv.anchor, []))
        body.append(f"<section class=\"board-section\" id=\"{tv.anchor}\"><h2>{escape(tv.title)}</h2>"
                    f"{render_table(site, tv)}" + (f"<div class=\"plots\">{plots}</div>" if plots else "") + "</section>")
    for number, ((view, tvs), embedded) in enumerate(zip(views, view_figures), 1):
        recipes = ", ".join(f"<code>{escape(r)}</code>" for r in view.recipes)
        parts = [f"<section class=\"view\" id=\"view-{number}\"><h2>View: {escape(view.title)}</h2>",
                 f"<p class=\"meta\">Rows produced by {recipes}." + (f" {escape(view.note)}" if view.note else "")
                 + " ≈ marks compare with the best row of the view.</p>"]
        for tv in tvs:
            parts.append(f"<h3 id=\"{tv.anchor}\">{escape(tv.title)}</h3>{render_table(site, tv)}")
        if not tvs:
            parts.append("<p>No records of these recipes yet.</p>")
        if embedded:
            parts.append("<div class=\"plots\">" + "".join(_figure_html(f) for f in embedded) + "</div>")
        body.append("".join(parts) + "</section>")
    return _page("crs-bench leaderboard", "".join(body))


# ------------------------------------------------------------------------------------------------ run page


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th scope=\"row\">{escape(str(k))}</th><td>{_value(v)}</td></tr>" for k, v in pairs)
    return f"<table class=\"kv\">{rows}</table>"


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"<code>{escape(json.dumps(value, sort_keys=True))}</code>"
    if isinstance(value, float):
        return escape(f"{value:.6g}")
    return escape("—" if value is None else str(value))


def _per_seed(group: Group, getter) -> list[tuple[str, Any]]:
    """(key, value) pairs of a record section; values that differ between seeds are listed per seed."""
    sections = [getter(run.record) or {} for run in group.runs]
    keys = list(dict.fromkeys(k for section in sections for k in section))
    pairs = []
    for key in keys:
        values = [section.get(key) for section in sections]
        if all(json.dumps(v, sort_keys=True) == json.dumps(values[0], sort_keys=True) for v in values):
            pairs.append((key, values[0]))
        else:
            pairs.append((key, "; ".join(f"seed {run.seed}: {_plain(v)}" for run, v in zip(group.runs, values))))
    return pairs


def _plain(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _group_title(group: Group) -> str:
    config = group.record["config"]
    parts = [config["model"]["name"], config["loss"]["name"], config["augmenter"]["name"]]
    if config.get("generator"):
        parts.append(config["generator"]["name"])
    return " · ".join(parts)


def render_run_page(site: Site, group: Group, memberships: list[tuple[TableView, int]]) -> str:
    record = group.record
    items = site.items_for(record)
    seeds = [run.seed for run in group.runs]
    title = _group_title(group)
    body = [f"<h1>{escape(title)}</h1>",
            f"<p class=\"lead\">{escape(record['dataset']['name'])} · seeds {', '.join(map(str, seeds))} · config "
            f"<code>{escape(group.config_hash[:16])}</code> · runs: "
            + ", ".join(f"<code>{escape(Path(run.run_dir).name)}</code>" for run in group.runs) + "</p>"]
    nav = ["results", "tiers", "training", "samples", "timings", "config", "provenance"]
    body.append("<nav class=\"toc\"><ul>" + "".join(f"<li><a href=\"#{n}\">{n}</a></li>" for n in nav) + "</ul></nav>")
    body.append(_results_section(memberships))
    body.append(_tier_section(site, group, memberships, items))
    body.append(_training_section(group))
    body.append(_samples_section(site, group, items))
    body.append(_timings_section(group))
    configs = [{k: v for k, v in run.record["config"].items() if k != "seed"} for run in group.runs]
    same = all(c == configs[0] for c in configs)
    body.append("<section id=\"config\"><h2>Resolved configuration</h2>"
                + ("<p class=\"meta\">The seeds' configs differ only in <code>seed</code>.</p>" if same else
                   "<p class=\"note\">The seeds' configs differ beyond the seed (see each run).</p>")
                + f"<pre class=\"config\">{escape(json.dumps(record['config'], indent=1, sort_keys=True))}</pre>"
                + f"<p class=\"meta\">config hash <code>{escape(group.config_hash)}</code></p></section>")
    body.append(_provenance_section(group))
    return _page(f"{title} · {record['dataset']['name']} · crs-bench", "".join(body), depth=1)


def _results_section(memberships: list[tuple[TableView, int]]) -> str:
    parts = ["<section id=\"results\"><h2>Results</h2>"]
    if not memberships:
        parts.append("<p>This configuration is in no leaderboard table.</p>")
    for tv, position in memberships:
        row = tv.data["rows"][position]
        key = tv.table.sort_key()
        rank = position + 1
        cells = "".join(_number_cell(tv, row, metric, False) for metric in tv.columns)
        head = "".join(f"<th scope=\"col\" class=\"num\">{escape(m)}</th>" for m in tv.columns)
        parts.append(f"<h3>{escape(tv.title)}</h3><p class=\"meta\">row {rank} of {len(tv.data['rows'])}"
                     + (f" by {escape(key)}" if key else "") + f" in <a href=\"../index.html#{tv.anchor}\">the "
                     "leaderboard table</a>; bold = best in the table, ≈ = tied with the best.</p>"
                     f"<div class=\"scroll\"><table class=\"board static\"><thead><tr>{head}</tr></thead><tbody><tr>"
                     f"{cells}</tr></tbody></table></div>")
    return "".join(parts) + "</section>"


def _tier_section(site: Site, group: Group, memberships: list[tuple[TableView, int]], items: Items | None) -> str:
    parts = ["<section id=\"tiers\"><h2>Recall by popularity tier</h2>",
             "<p class=\"meta\">Recall within the test samples whose label is a head, body, tail or cold item "
             "(popularity: training dialogues mentioning the item; cold: never mentioned, a part of the tail). "
             "Mean over seeds, whiskers: sample std; n = test samples per tier.</p><div class=\"charts\">"]
    charts = 0
    for tv, position in memberships:
        row = tv.data["rows"][position]
        cuts = sorted({m.partition("@")[2] for m in row["metrics"] if m.startswith("head_recall@")}, key=_int)
        counts = _tier_counts(row)
        names = {tier: tier if counts.get(tier) is None else f"{tier} n={counts[tier]}" for tier in TIER_NAMES}
        groups = []
        for k in cuts:
            values = _tier_values(row, k)
            groups.append((f"recall@{k}", [(names[tier], values[tier][0], values[tier][1],
                                            f"{tier} recall@{k} = {format_cell(*values[tier])} (n = {counts.get(tier)})")
                                           for tier in TIER_NAMES if tier in values]))
        if groups:
            colours = {names[tier]: TIER_COLOURS[tier] for tier in TIER_NAMES}
            chart = svg.bar_chart(groups, f"{tv.table.setting}: recall within each tier", "recall", colours)
            parts.append(f"<figure class=\"chart-box\">{chart}</figure>")
            charts += 1
    if items is not None:
        for setting, rows in sorted(group.runs[0].outputs().rec.items(), key=lambda kv: kv[0] != "standard"):
            counts = collect.top_counts(group, setting, items)
            tiers = np.asarray(items.tiers)
            total = counts.sum()
            label_total = items.label_counts.sum()
            if not total or not label_total:
                continue
            bars = []
            for tier in TIER_NAMES:
                share = counts[tiers == tier].sum() / total
                label_share = items.label_counts[tiers == tier].sum() / label_total
                bars.append((tier, [(f"top-{TOP_K} slots", float(share), None, f"{share:.1%} of the top-{TOP_K} slots are {tier} items"),
                                    ("training labels", float(label_share), None,
                                     f"{label_share:.1%} of the training labels are {tier} items")]))
            chart = svg.bar_chart(bars, f"{setting}: where the top-{TOP_K} lists go", "share",
                                  {f"top-{TOP_K} slots": "#1f77b4", "training labels": "#999"})
            parts.append(f"<figure class=\"chart-box\">{chart}<figcaption>Where the top-{TOP_K} lists go: the share of "
                         "recommendation slots (each distinct context once per seed) per tier, beside the share of "
                         "training labels.</figcaption></figure>")
            charts += 1
    if not charts:
        parts.append("<p>No tier metrics in these records.</p>")
    return "".join(parts) + "</div></section>"


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _training_section(group: Group) -> str:
    parts = ["<section id=\"training\"><h2>Training</h2>"]
    histories = [(run.seed, (run.record.get("training") or {}).get("history") or []) for run in group.runs]
    keys = list(dict.fromkeys(k for _, history in histories for entry in history for k, v in entry.items()
                              if k not in ("epoch", "improved") and isinstance(v, (int, float))
                              and not isinstance(v, bool)))
    if keys:
        parts.append("<div class=\"charts\">")
        for key in keys:
            series = [(f"seed {seed}", [(entry.get("epoch", i + 1), entry.get(key)) for i, entry in enumerate(history)
                                        if isinstance(entry.get(key), (int, float))]) for seed, history in histories]
            parts.append(f"<figure class=\"chart-box\">{svg.line_chart(series, key, 'epoch', key)}</figure>")
        parts.append("</div>")
    else:
        training = group.record.get("training") or {}
        parts.append(f"<p>No training history: {escape(str(training.get('selection', 'not trained')))}.</p>")
    fields = ("trained", "epochs_run", "best_epoch", "best_valid_value", "selection_metric", "stopped_early", "steps",
              "train_samples", "throughput_samples_per_second", "selection")
    parts.append(_kv((k, v) for k, v in _per_seed(group, lambda r: r.get("training")) if k in fields))
    return "".join(parts) + "</section>"


def _timings_section(group: Group) -> str:
    keys = list(dict.fromkeys(k for run in group.runs for k in (run.record.get("timings") or {})))
    head = "".join(f"<th scope=\"col\" class=\"num\">{escape(k.removesuffix('_seconds'))}</th>" for k in keys)
    rows = "".join(f"<tr><th scope=\"row\">seed {run.seed}</th>"
                   + "".join(f"<td class=\"num\">{_seconds((run.record.get('timings') or {}).get(k))}</td>" for k in keys)
                   + "</tr>" for run in group.runs)
    return (f"<section id=\"timings\"><h2>Timings</h2><p class=\"meta\">Seconds per stage.</p><div class=\"scroll\">"
            f"<table class=\"board static\"><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
            "</section>")


def _seconds(value: Any) -> str:
    return f"{value:,.1f}" if isinstance(value, (int, float)) else "—"


def _provenance_section(group: Group) -> str:
    record = group.record
    dataset = record["dataset"]
    splits = dataset.get("splits", {})
    split_rows = "".join(f"<tr><th scope=\"row\">{escape(name)}</th><td class=\"num\">{s.get('dialogues', '—')}</td>"
                         f"<td class=\"num\">{_value(s.get('rec_samples'))}</td><td class=\"num\">"
                         f"{s.get('conv_samples', '—')}</td><td class=\"num\">{s.get('synthetic_dialogues', '—')}</td></tr>"
                         for name, s in splits.items())
    components = "".join(
        f"<tr><th scope=\"row\">{escape(kind)}</th><td>{escape(str(c.get('name')))}</td><td>{escape(str(c.get('version')))}"
        f"</td><td>{_value(c.get('origin'))}</td><td>{_value(c.get('params'))}</td><td>{_value(c.get('parameters'))}</td></tr>"
        for kind, c in record.get("components", {}).items())
    packages = _per_seed(group, lambda r: r.get("packages"))
    parts = ["<section id=\"provenance\"><h2>Provenance</h2>",
             "<h3>Code</h3>", _kv(_per_seed(group, lambda r: r.get("code"))),
             "<h3>Packages</h3>", _kv(packages),
             "<h3>Dataset</h3>", _kv([("name", dataset.get("name")), ("fingerprint", dataset.get("fingerprint")),
                                       ("items", dataset.get("num_items")), ("popularity", dataset.get("popularity")),
                                       ("source", (dataset.get("info") or {}).get("source"))]),
             f"<div class=\"scroll\"><table class=\"board static\"><thead><tr><th>split</th><th>dialogues</th>"
             f"<th>rec samples</th><th>conv samples</th><th>synthetic</th></tr></thead><tbody>{split_rows}</tbody></table></div>",
             "<h3>Components</h3><div class=\"scroll\"><table class=\"board static\"><thead><tr><th>kind</th><th>name</th>"
             f"<th>version</th><th>origin</th><th>params</th><th>parameters</th></tr></thead><tbody>{components}</tbody>"
             "</table></div>",
             "<h3>Environment</h3>", _kv(_per_seed(group, lambda r: r.get("environment"))),
             "<h3>Seeds</h3>", _kv((f"seed {run.seed}", run.record.get("seeds")) for run in group.runs)]
    for section in ("augmentation", "conversation", "ild_features", "extra"):
        if any(run.record.get(section) for run in group.runs):
            parts += [f"<h3>{section.replace('_', ' ').capitalize()}</h3>", _kv(_per_seed(group, lambda r: r.get(section)))]
    plugins = ", ".join(sorted({p.get("name", "?") for run in group.runs for p in run.record.get("plugins", [])}))
    parts.append(f"<h3>Plugins</h3><p>{escape(plugins) or '—'}</p>")
    return "".join(parts) + "</section>"


def _samples_section(site: Site, group: Group, items: Items | None) -> str:
    """The test-sample browser: the data inline as JSON, drawn by site.js."""
    rows: dict[str, dict[str, list]] = {}
    conv: dict[str, list] = {}
    totals: dict[str, int] = {}
    wanted: set[int] = set()
    contexts: dict[str, Any] = {}
    for run in group.runs:
        outputs = run.outputs()
        seed = str(run.seed)
        rows[seed] = {}
        for setting, rec in outputs.rec.items():
            totals[setting] = max(totals.get(setting, 0), len(rec.ids))
            chosen = list(zip(rec.ids[:BROWSER_SAMPLES], rec.labels[:BROWSER_SAMPLES].tolist(),
                              ([i for i in top if i >= 0] for top in rec.tops[:BROWSER_SAMPLES].tolist())))
            rows[seed][setting] = [[uid, label, top] for uid, label, top in chosen]
            for uid, label, top in chosen:
                wanted.add(label)
                wanted.update(top)
                key = collect.context_key(uid)
                if items is not None and key not in contexts:
                    contexts[key] = items.context(key)
        if outputs.conv:
            totals["conversation"] = max(totals.get("conversation", 0), len(outputs.conv))
            chosen_conv = outputs.conv[:BROWSER_SAMPLES]
            conv[seed] = [{k: row.get(k) for k in ("id", "reference", "response", "prediction", "recommended", "gold")}
                          for row in chosen_conv]
            for row in chosen_conv:
                for item in [row.get("recommended"), *(row.get("gold") or [])]:
                    if isinstance(item, int):
                        wanted.add(item)
                key = collect.context_key(str(row["id"]), conversation=True)
                if items is not None and key not in contexts:
                    contexts[key] = items.context(key)
    catalogue = {}
    if items is not None:
        for native in sorted(wanted):
            described = items.describe(native)
            catalogue[str(native)] = [described["t"], described["tier"], described["r"]]
    data = {"seeds": [str(run.seed) for run in group.runs], "rows": rows, "conv": conv, "totals": totals,
            "limit": BROWSER_SAMPLES, "items": catalogue, "contexts": contexts, "tiers": items is not None, "k": TOP_K}
    note = "" if items is not None else (
        "<p class=\"note\">The dataset was not loaded (pass <code>--data-dir</code> or set <code>CRS_BENCH_DATA</code>"
        "): items are shown by id, without titles, tiers or contexts.</p>")
    encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    return ("<section id=\"samples\"><h2>Test samples</h2>"
            f"<p class=\"meta\">The first {BROWSER_SAMPLES} test samples of each setting and seed as stored in "
            f"<code>samples.jsonl.gz</code>: the label and the top-{TOP_K} list (tiers marked; the label in the list "
            "is highlighted); for the conversation task the generated response beside the reference.</p>" + note
            + "<div id=\"browser\" class=\"browser\"><noscript>The sample browser needs JavaScript.</noscript></div>"
            f"<script type=\"application/json\" id=\"samples-data\">{encoded}</script></section>")
