"""Metric series drawn as inline SVG on the server: no script, no chart library.

:func:`line_chart` turns one series (steps and values) into a small SVG line chart with
its axes' extremes written out, a ``<title>`` and a ``<desc>`` a screen reader announces
(what the series is, how many points, first, last, lowest and highest value). Only
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

__all__ = ["Chart", "line_chart"]

WIDTH, HEIGHT = 480, 180
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28


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
