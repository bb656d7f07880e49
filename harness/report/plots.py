"""The report's figures for papers, drawn with matplotlib (Agg) and written as PNG and SVG.

* the long-tail curve: cumulative share of top-10 recommendation slots taken by the r most popular items
  (training popularity), one line per system, with the training label distribution as reference;
* tier recall bars: head / body / tail / cold recall@k per system, with the test samples of each tier (n);
* the coverage-accuracy scatter: catalogue coverage@k against the table's sort key, mean ± std over seeds;
* the loss-comparison chart: one panel per metric, a bar per loss, the `ce` control of each model as a line.

Every function takes plain numbers (the leaderboard's means and stds, counts from the stored outputs) and
returns a `Figure`: the caller decides where it goes (`render`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

TIER_COLOURS = {"head": "#d62728", "body": "#ff7f0e", "tail": "#1f77b4", "cold": "#17becf"}
PNG_DPI = 150


@dataclass
class Figure:
    png: bytes
    svg: str
    alt: str


DRAWN = ("longtail_curve", "tier_bars", "coverage_scatter", "loss_comparison")


def draw(job: tuple[str, tuple]) -> "Figure":
    """Run one figure function by name (what `site.FigurePool` sends to its workers)."""
    name, args = job
    if name not in DRAWN:
        raise ValueError(f"unknown figure {name!r}")
    return globals()[name](*args)


def warm_up() -> None:
    """Import pyplot in a worker before the first figure arrives."""
    _pyplot()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "crs-bench", "font.size": 8,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def render(fig, alt: str) -> Figure:
    """PNG and SVG bytes of a matplotlib figure (closed afterwards); the SVG without its metadata date, so
    the same numbers give the same file."""
    plt = _pyplot()
    try:
        png, svg = io.BytesIO(), io.StringIO()
        fig.savefig(png, format="png", dpi=PNG_DPI, metadata={"Software": None})
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
        return Figure(png.getvalue(), svg.getvalue(), alt)
    finally:
        plt.close(fig)


def _colours(n: int) -> list:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def longtail_curve(systems: Sequence[tuple[str, np.ndarray]], reference: np.ndarray, tier_bounds: dict[str, int],
                   title: str) -> Figure:
    """`systems`: (name, slots per popularity rank) with rank 1 first; `reference`: training labels per rank;
    `tier_bounds`: how many items each tier holds (head, body, tail incl. cold), in rank order."""
    plt = _pyplot()
    n = reference.size
    ranks = np.unique(np.geomspace(1, max(n, 1), num=min(n, 160)).astype(np.int64))  # log-spaced points
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    fig.subplots_adjust(left=0.08, right=0.66, bottom=0.12, top=0.92)
    start = 0.5
    for tier in ("head", "body", "tail"):
        size = tier_bounds.get(tier, 0)
        if size:
            ax.axvspan(start, start + size, color=TIER_COLOURS[tier], alpha=0.08, linewidth=0)
            ax.text(np.sqrt(start * (start + size)) if start > 0 else 1, 0.02, tier, color=TIER_COLOURS[tier],
                    ha="center", fontsize=7, alpha=0.9)
            start += size
    total = reference.sum()
    if total:
        share = np.cumsum(reference) / total
        ax.plot(ranks, share[ranks - 1], color="black", linestyle="--", linewidth=1.4,
                label="training labels (reference)")
    for (name, counts), colour in zip(systems, _colours(len(systems))):
        total = counts.sum()
        if total:
            ax.plot(ranks, (np.cumsum(counts) / total)[ranks - 1], color=colour, linewidth=1.1, label=name)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(plt.NullLocator())  # minor log ticks: half the drawing time, no information
    ax.set_xlim(0.9, n + 0.5)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("item rank by training popularity (1 = most popular)")
    ax.set_ylabel("share of top-10 slots on items of rank ≤ r")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6.5, frameon=False)
    alt = (f"Long-tail curve, {title}: cumulative share of top-10 recommendations by item popularity rank for "
           + ", ".join(name for name, _ in systems) + ", with the training label distribution as reference")
    return render(fig, alt)


def tier_bars(panels: Sequence[tuple[str, Sequence[tuple[str, dict[str, tuple[float, float | None]]]],
                                     dict[str, int | None]]], k: str, title: str) -> Figure:
    """`panels`: (setting, [(system, {tier: (mean, std)})], {tier: n test samples}); one panel per setting."""
    plt = _pyplot()
    systems = max(len(rows) for _, rows, _ in panels)
    height = 3.4 * len(panels) + 0.4
    width = min(max(5.5, 2.6 + 0.45 * systems), 7.5)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.65 / width, right=1 - 0.15 / width, bottom=1.15 / height, top=1 - 0.45 / height,
                        hspace=1.1 / 2.3)
    for ax, (setting, rows, counts) in zip(axes[:, 0], panels):
        x = np.arange(len(rows))
        tiers = [tier for tier in ("head", "body", "tail", "cold") if any(tier in values for _, values in rows)]
        width = 0.8 / max(len(tiers), 1)
        for offset, tier in enumerate(tiers):
            means = [values.get(tier, (np.nan, None))[0] for _, values in rows]
            errors = [values.get(tier, (np.nan, None))[1] or 0.0 for _, values in rows]
            n = counts.get(tier)
            ax.bar(x - 0.4 + width * (offset + 0.5), means, width, yerr=errors, color=TIER_COLOURS[tier],
                   error_kw={"linewidth": 0.6, "capsize": 1.2}, label=f"{tier} (n={n})" if n is not None else tier)
        ax.set_xticks(x, [name for name, _ in rows], rotation=40, ha="right", fontsize=6.5)
        ax.set_title(setting, fontsize=8, loc="left")
        ax.set_ylim(bottom=0)
        ax.set_ylabel(f"recall@{k} in tier")
        ax.grid(axis="y", alpha=0.25)
        ax.legend(fontsize=6, frameon=False, ncol=4, loc="upper right")
    fig.suptitle(title, fontsize=9)
    return render(fig, f"Tier recall bars, {title}: head, body, tail and cold recall@{k} per system")


def coverage_scatter(panels: Sequence[tuple[str, Sequence[tuple[str, str, tuple, tuple]]]], x_key: str,
                     y_key: str, title: str) -> Figure:
    """`panels`: (setting, [(system, colour group, (x mean, x std), (y mean, y std))])."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels) + 0.4, 4.2), squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.86, wspace=0.2)
    kinds = list(dict.fromkeys(kind for _, points in panels for _, kind, _, _ in points))
    colours = dict(zip(kinds, _colours(len(kinds))))
    for ax, (setting, points) in zip(axes[0], panels):
        for kind in kinds:
            chosen = [p for p in points if p[1] == kind]
            if not chosen:
                continue
            ax.errorbar([p[2][0] for p in chosen], [p[3][0] for p in chosen],
                        xerr=[p[2][1] or 0.0 for p in chosen], yerr=[p[3][1] or 0.0 for p in chosen], fmt="o",
                        markersize=3.5, color=colours[kind], elinewidth=0.6, capsize=1.5, label=kind)
        for name, _, (x, _), (y, _) in labelled(points):
            ax.annotate(name, (x, y), xytext=(3, 2), textcoords="offset points", fontsize=6, alpha=0.9)
        ax.set_xlabel(x_key)
        ax.set_title(setting, fontsize=8)
        ax.grid(alpha=0.25)
    axes[0][0].set_ylabel(y_key)
    axes[0][-1].legend(fontsize=6, frameon=False, loc="best")
    fig.suptitle(title, fontsize=9)
    return render(fig, f"Coverage-accuracy scatter, {title}: {x_key} against {y_key}, one point per system "
                       "(named: the Pareto front and the most accurate)")


def labelled(points: Sequence[tuple[str, str, tuple, tuple]], best: int = 3) -> list:
    """The points worth a name on the scatter: the coverage-accuracy Pareto front and the `best` most
    accurate (all of them when there are few)."""
    if len(points) <= 8:
        return list(points)
    front = [p for p in points
             if not any(q[2][0] >= p[2][0] and q[3][0] >= p[3][0] and (q[2][0], q[3][0]) != (p[2][0], p[3][0])
                        for q in points)]
    top = sorted(points, key=lambda p: -p[3][0])[:best]
    return list({id(p): p for p in [*front, *top]}.values())


def loss_comparison(metrics: Sequence[tuple[str, str]], rows: Sequence[tuple[str, str, dict]], title: str,
                    control: str = "ce") -> Figure:
    """`metrics`: (key, direction); `rows`: (model, loss, {key: (mean, std)}); a panel per metric, bars grouped
    by model, each model's `control` loss drawn as a dashed line."""
    plt = _pyplot()
    models = list(dict.fromkeys(model for model, _, _ in rows))
    colours = dict(zip(models, _colours(len(models))))
    fig, axes = plt.subplots(1, len(metrics), figsize=(1.9 * len(metrics) + 1.4, 0.19 * len(rows) + 1.3),
                             sharey=True, squeeze=False)
    fig.subplots_adjust(left=0.2, right=0.98, bottom=0.12 + 0.3 / max(len(rows), 1), top=0.88, wspace=0.1)
    y = np.arange(len(rows))[::-1]
    for ax, (key, direction) in zip(axes[0], metrics):
        means = [values.get(key, (np.nan, None))[0] for _, _, values in rows]
        errors = [values.get(key, (np.nan, None))[1] or 0.0 for _, _, values in rows]
        ax.barh(y, means, xerr=errors, color=[colours[model] for model, _, _ in rows], height=0.7,
                error_kw={"linewidth": 0.6, "capsize": 1.2})
        for model in models:
            base = [values.get(key, (np.nan,))[0] for m, loss, values in rows if m == model and loss == control]
            if base and base[0] == base[0]:
                ax.axvline(base[0], color=colours[model], linestyle="--", linewidth=0.8)
        ax.set_title(f"{key} ({'↓' if direction == 'lower' else '↑'})", fontsize=7.5)
        ax.grid(axis="x", alpha=0.25)
        ax.tick_params(axis="x", labelsize=6)
    axes[0][0].set_yticks(y, [f"{model} · {loss}" for model, loss, _ in rows], fontsize=6.5)
    fig.suptitle(f"{title} (dashed: each model's {control} control)", fontsize=8.5)
    return render(fig, f"Loss comparison, {title}: " + ", ".join(key for key, _ in metrics) + " per loss")
