"""Metric series drawn as inline SVG on the server: no script, no chart library.

:func:`line_chart` turns one series (steps and values) into a small SVG line chart with
its axes' extremes written out, a ``<title>`` and a ``<desc>`` a screen reader announces
(what the series is, how many points, first, last, lowest and highest value).
:func:`overlay_chart` draws one metric of several runs on shared axes, each run's line
in its own colour and dash pattern (told apart without colour too), with a legend. Only
numbers and escaped text go into the markup, and no ``style`` attribute (the pages'
Content-Security-Policy allows styles from the server's files only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MAX_OVERLAID", "Chart", "Series", "line_chart", "overlay_chart"]

WIDTH, HEIGHT = 480, 180
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28
MAX_OVERLAID = 6  # distinct line styles (pipetrail.css: .series-0 ... .series-5)
LEGEND_ROW = 16


@dataclass(frozen=True)
class Chart:
    """One drawn series: the SVG markup and the sentence describing it."""

    svg: str
    description: str


def _num(value: float) -> str:
    return f"{value:.6g}"


def line_chart(
    chart_id: str, name: str, steps: Sequence[int], values: Sequence[float | None]
) -> Chart:
    """The SVG line chart of one metric series.

    Args:
        chart_id: a unique id within the page (letters, digits, ``-``), for the ARIA
            references of the title and the description.
        name: the series' name, shown as the title.
        steps: the x values (the steps the values were logged at).
        values: the y values; None or a non-finite value is left out of the line.

    Returns:
        The markup (safe to insert as is) and its description.
    """
    points = [
        (float(x), float(y))
        for x, y in zip(steps, values, strict=False)
        if y is not None and math.isfinite(y)
    ]
    title = escape(name)
    if not points:
        description = f"{name}: no finite value to draw"
        return Chart(
            f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} 40" '
            f'aria-labelledby="{chart_id}-t {chart_id}-d"><title id="{chart_id}-t">{title}'
            f'</title><desc id="{chart_id}-d">{escape(description)}</desc>'
            f'<text x="8" y="24">no finite value</text></svg>',
            description,
        )
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span_x = (x1 - x0) or 1.0
    span_y = (y1 - y0) or 1.0
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(x: float, y: float) -> str:
        px = LEFT + (x - x0) / span_x * inner_w if x1 > x0 else LEFT + inner_w / 2
        py = TOP + inner_h - ((y - y0) / span_y * inner_h if y1 > y0 else inner_h / 2)
        return f"{px:.1f},{py:.1f}"

    description = (
        f"{name}: {len(points)} point(s) from step {_num(x0)} to {_num(x1)}; first "
        f"{_num(ys[0])}, last {_num(ys[-1])}, lowest {_num(y0)}, highest {_num(y1)}"
    )
    coords = " ".join(at(x, y) for x, y in points)
    mark = (
        f'<polyline class="series" fill="none" points="{coords}"/>'
        if len(points) > 1
        else f'<circle class="series" r="3" cx="{at(*points[0]).split(",")[0]}" '
        f'cy="{at(*points[0]).split(",")[1]}"/>'
    )
    bottom = TOP + inner_h
    return Chart(
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d">'
        f'<title id="{chart_id}-t">{title}</title>'
        f'<desc id="{chart_id}-d">{escape(description)}</desc>'
        f'<g class="axes" aria-hidden="true">'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>'
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>'
        f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end">{_num(y1)}</text>'
        f'<text x="{LEFT - 4}" y="{bottom}" text-anchor="end">{_num(y0)}</text>'
        f'<text x="{LEFT}" y="{HEIGHT - 8}">{_num(x0)}</text>'
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end">{_num(x1)}</text>'
        f"</g>{mark}</svg>",
        description,
    )


@dataclass(frozen=True)
class Series:
    """One run's series of a metric, and the label its legend entry shows."""

    label: str
    steps: Sequence[int]
    values: Sequence[float | None]


def _finite(series: Series) -> list[tuple[float, float]]:
    return [
        (float(x), float(y))
        for x, y in zip(series.steps, series.values, strict=False)
        if y is not None and math.isfinite(y)
    ]


def _sentence(label: str, points: list[tuple[float, float]]) -> str:
    if not points:
        return f"{label}: no finite value"
    ys = [y for _, y in points]
    return (
        f"{label}: {len(points)} point(s) from step {_num(points[0][0])} to "
        f"{_num(points[-1][0])}, first {_num(ys[0])}, last {_num(ys[-1])}, lowest "
        f"{_num(min(ys))}, highest {_num(max(ys))}"
    )


def overlay_chart(chart_id: str, name: str, series: Sequence[Series]) -> Chart:
    """One metric of several runs on shared axes, with a legend.

    Args:
        chart_id: a unique id within the page (letters, digits, ``-``).
        name: the metric's name, shown as the title.
        series: one per run, in legend order (at most :data:`MAX_OVERLAID`); a run
            without a finite value is listed in the legend as such and draws nothing.

    Returns:
        The markup (safe to insert as is) and its description (every run's series).

    Raises:
        ValueError: no series, or more than :data:`MAX_OVERLAID`.
    """
    if not 1 <= len(series) <= MAX_OVERLAID:
        raise ValueError(f"overlay between 1 and {MAX_OVERLAID} series, not {len(series)}")
    found = [_finite(s) for s in series]
    description = f"{name}, overlaid: " + "; ".join(
        _sentence(s.label, points) for s, points in zip(series, found, strict=True)
    )
    every = [p for points in found for p in points]
    legend_h = LEGEND_ROW * len(series) + 4
    height = HEIGHT + legend_h
    head = (
        f'<svg class="chart overlay" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d">'
        f'<title id="{chart_id}-t">{escape(name)}</title>'
        f'<desc id="{chart_id}-d">{escape(description)}</desc>'
    )
    legend = [f'<g class="legend" transform="translate(0 {HEIGHT})">']
    for i, (s, points) in enumerate(zip(series, found, strict=True)):
        y = LEGEND_ROW * i + LEGEND_ROW // 2 + 2
        note = "" if points else " (no finite value)"
        legend.append(
            f'<line class="series series-{i}" x1="{LEFT}" y1="{y}" x2="{LEFT + 28}" y2="{y}"/>'
            f'<text x="{LEFT + 34}" y="{y + 4}">{escape(s.label)}{note}</text>'
        )
    legend.append("</g>")
    if not every:
        return Chart(
            head + f'<text x="8" y="24">no finite value</text>{"".join(legend)}</svg>',
            description,
        )
    xs, ys = [p[0] for p in every], [p[1] for p in every]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        px = LEFT + (x - x0) / (x1 - x0) * inner_w if x1 > x0 else LEFT + inner_w / 2
        py = TOP + inner_h - ((y - y0) / (y1 - y0) * inner_h if y1 > y0 else inner_h / 2)
        return px, py

    marks = []
    for i, points in enumerate(found):
        if len(points) > 1:
            coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in (at(*p) for p in points))
            marks.append(f'<polyline class="series series-{i}" fill="none" points="{coords}"/>')
        elif points:
            px, py = at(*points[0])
            marks.append(f'<circle class="series series-{i}" r="3" cx="{px:.1f}" cy="{py:.1f}"/>')
    bottom = TOP + inner_h
    axes = (
        f'<g class="axes" aria-hidden="true">'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>'
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>'
        f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end">{_num(y1)}</text>'
        f'<text x="{LEFT - 4}" y="{bottom}" text-anchor="end">{_num(y0)}</text>'
        f'<text x="{LEFT}" y="{HEIGHT - 8}">{_num(x0)}</text>'
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end">{_num(x1)}</text>'
        "</g>"
    )
    return Chart(head + axes + "".join(marks) + "".join(legend) + "</svg>", description)
