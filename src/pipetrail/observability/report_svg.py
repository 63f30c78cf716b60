"""Small inline SVG charts for ``pipetrail report``: lines over runs, horizontal bars.

Owns drawing; knows nothing of runs. Every chart is one ``<svg>`` element with a
``viewBox`` (it scales with the page), its text escaped, and a ``<title>`` on each point
or bar so a browser shows the exact figure on hover. Nothing is fetched: the page that
holds these charts is self-contained. Pure; standard library only.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["PALETTE", "bar_chart", "line_chart", "number"]

#: Line and bar colours, told apart also by people with the common colour blindnesses.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000")
_WIDTH, _HEIGHT = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 40


def number(value: float | None) -> str:
    """A figure for people: 4 significant digits, ``-`` for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-" if value is None else str(value)
    return f"{value:.4g}"


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / count
    return [low + step * i for i in range(count + 1)]


def line_chart(
    series: Mapping[str, Sequence[float | None]],
    labels: Sequence[str],
    *,
    title: str,
    unit: str = "",
) -> str:
    """Lines over runs: one per series, x = the run's position (``labels`` name them).

    Series take the colours of :data:`PALETTE` in order (the page draws the legend).

    A ``None`` value breaks its line (the run did not record it). The y axis spans the
    values shown (from 0 when all are positive and the unit is seconds or a share).
    """
    values = [v for points in series.values() for v in points if v is not None]
    count = len(labels)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    if not values or not count:
        parts.append(
            f'<text x="{_WIDTH / 2}" y="{_HEIGHT / 2}" text-anchor="middle">no data</text>'
        )
        return "".join(parts) + "</svg>"
    low, high = min(values), max(values)
    if unit in ("s", "share") and low >= 0:
        low = 0.0
    if high == low:
        high = low + (abs(low) or 1.0)
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - (v - low) / (high - low))

    for tick in _ticks(low, high):
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(number(tick))}{escape(' ' + unit if unit == 's' else '')}</text>"
        )
    every = max(1, math.ceil(count / 12))
    for i, label in enumerate(labels):
        if i % every == 0 or i == count - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{_HEIGHT - _BOTTOM + 16}" text-anchor="middle" '
                f'class="tick">{escape(label)}</text>'
            )
    for n, (name, points) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(points):
            if value is None:
                runs.append([])
                continue
            runs[-1].append((x(i), y(value)))
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} {escape(labels[i])}: {escape(number(value))}</title>"
                "</circle>"
            )
        for line in runs:
            if len(line) > 1:
                path = " ".join(f"{px:.1f},{py:.1f}" for px, py in line)
                parts.append(
                    f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
                )
    return "".join(parts) + "</svg>"


def bar_chart(bars: Sequence[tuple[str, float]], *, title: str) -> str:
    """Horizontal bars, one per ``(label, value)``, longest value full width."""
    height = _TOP + 24 * max(1, len(bars)) + 8
    label_w = 260
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    top = max((v for _, v in bars), default=0) or 1
    for i, (label, value) in enumerate(bars):
        y = _TOP + 24 * i
        width = (_WIDTH - label_w - 60) * value / top
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end" class="tick">'
            f"{escape(label[:40])}</text>"
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="18" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(label)}: '
            f"{escape(number(value))}</title></rect>"
            f'<text x="{label_w + width + 6:.1f}" y="{y + 14}" class="tick">'
            f"{escape(number(value))}</text>"
        )
    return "".join(parts) + "</svg>"
