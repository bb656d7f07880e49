"""Small inline SVG charts for the run pages (training curves, tier bars): a few kilobytes each, drawn
without matplotlib so that a page per run group stays fast to write. Every mark has a <title> tooltip."""
from __future__ import annotations

import math
from html import escape
from typing import Sequence

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:.4g}"


def _open(title: str, width: int, height: int, left: int) -> list[str]:
    return [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
            f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>']


def _legend(entries: Sequence[tuple[str, str]], x: float, y: float) -> str:
    """A row of colour swatches and names under the title."""
    parts = []
    for name, colour in entries:
        parts.append(f'<rect x="{x:.1f}" y="{y - 8}" width="9" height="9" style="fill:{colour}"/>'
                     f'<text x="{x + 12:.1f}" y="{y}" class="legend">{escape(name)}</text>')
        x += 22 + 5.6 * len(name)
    return "".join(parts)


def _y_axis(parts: list[str], ticks: Sequence[float], sy, left: int, right_edge: int, top: int, bottom_edge: int,
            label: str) -> None:
    for tick in ticks:
        parts.append(f'<line x1="{left}" x2="{right_edge}" y1="{sy(tick):.1f}" y2="{sy(tick):.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{sy(tick) + 3:.1f}" class="tick" text-anchor="end">{_number(tick)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom_edge}" class="axis"/>'
                 f'<text transform="translate(12 {(top + bottom_edge) / 2}) rotate(-90)" class="label" '
                 f'text-anchor="middle">{escape(label)}</text>')


def line_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], title: str, x_label: str,
               y_label: str, width: int = 420, height: int = 240) -> str:
    """One polyline per series (name, [(x, y)]) with points, axes and a legend."""
    points = [(x, y) for _, values in series for x, y in values if y is not None and math.isfinite(y)]
    if not points:
        return ""
    left, right, top, bottom = 52, 12, 36, 38
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    pad = (y_high - y_low) * 0.08 or abs(y_high) * 0.1 or 1.0
    y_low, y_high = y_low - pad, y_high + pad

    def sx(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y_low) / (y_high - y_low) * (height - top - bottom)

    parts = _open(title, width, height, left)
    _y_axis(parts, _ticks(y_low, y_high), sy, left, width - right, top, height - bottom, y_label)
    for tick in _ticks(x_low, x_high, 6):
        if float(tick).is_integer() or x_high - x_low < 6:
            parts.append(f'<text x="{sx(tick):.1f}" y="{height - bottom + 13}" class="tick" '
                         f'text-anchor="middle">{_number(tick)}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" class="axis"/>'
                 f'<text x="{(left + width - right) / 2}" y="{height - 6}" class="label" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    for index, (name, values) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        shown = [(x, y) for x, y in values if y is not None and math.isfinite(y)]
        if not shown:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in shown)
        parts.append(f'<polyline points="{path}" style="fill:none;stroke:{colour};stroke-width:1.6"/>')
        for x, y in shown:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.4" style="fill:{colour}">'
                         f'<title>{escape(name)}: {escape(x_label)} {_number(x)}, {escape(y_label)} {y:.4f}</title>'
                         f'</circle>')
    parts.append(_legend([(name, PALETTE[i % len(PALETTE)]) for i, (name, _) in enumerate(series)], left, 28))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(groups: Sequence[tuple[str, Sequence[tuple[str, float | None, float | None, str]]]], title: str,
              y_label: str, colours: dict[str, str], width: int = 420, height: int = 230) -> str:
    """Grouped bars: groups of (group label, [(bar label, mean, std, tooltip)]), bars coloured by label."""
    values = [(mean or 0.0) + (std or 0.0) for _, bars in groups for _, mean, std, _ in bars if mean is not None]
    if not values:
        return ""
    left, right, top, bottom = 46, 10, 36, 26
    high = max(values) * 1.1 or 1.0

    def sy(y: float) -> float:
        return height - bottom - y / high * (height - top - bottom)

    parts = _open(title, width, height, left)
    _y_axis(parts, _ticks(0.0, high), sy, left, width - right, top, height - bottom, y_label)
    slot = (width - left - right) / max(len(groups), 1)
    for g, (group, bars) in enumerate(groups):
        bar_width = slot * 0.8 / max(len(bars), 1)
        for b, (label, mean, std, tooltip) in enumerate(bars):
            x = left + g * slot + slot * 0.1 + b * bar_width
            if mean is None:
                continue
            parts.append(f'<rect x="{x:.1f}" y="{sy(mean):.1f}" width="{bar_width * 0.92:.1f}" '
                         f'height="{max(sy(0) - sy(mean), 0.5):.1f}" style="fill:{colours.get(label, PALETTE[0])}" '
                         f'class="bar" data-label="{escape(label)}"><title>{escape(tooltip)}</title></rect>')
            if std:
                cx = x + bar_width * 0.46
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{sy(mean + std):.1f}" '
                             f'y2="{sy(max(mean - std, 0)):.1f}" class="whisker"/>')
        parts.append(f'<text x="{left + (g + 0.5) * slot:.1f}" y="{height - bottom + 14}" class="label" '
                     f'text-anchor="middle">{escape(group)}</text>')
    labels = list(dict.fromkeys(label for _, bars in groups for label, mean, _, _ in bars if mean is not None))
    parts.append(_legend([(label, colours.get(label, PALETTE[0])) for label in labels], left, 28))
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" class="axis"/></svg>')
    return "".join(parts)
