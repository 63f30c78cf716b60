"""Pictures of a drift: one SVG per compared column, run A's histogram against run B's.

Owns :func:`write_pictures`. Numeric columns are drawn on the shared bin edges the PSI is
computed on (:func:`~pipetrail.observability.drift_stats.shared_histograms`), categorical
ones over the shared buckets, both as shares of rows, A and B side by side in each bin.
The SVG is written by hand (no plotting library), the same bytes for the same report.
Files are named ``NODE.OUTPUT.COLUMN.svg`` (characters other than letters, digits, ``-``,
``_`` and ``.`` replaced by ``_``); columns of tables equal in both runs are not drawn.
"""

from __future__ import annotations

import re
from html import escape
from typing import TYPE_CHECKING

from pipetrail.errors import OutputFileError
from pipetrail.observability.drift_stats import categorical_distances, shared_histograms

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.observability.drift import ArtifactDrift, ColumnDrift, DriftReport

__all__ = ["write_pictures"]

_WIDTH, _HEIGHT, _PAD = 640, 300, 40
_COLOURS = ("#4c72b0", "#dd8452")  # run A, run B


def _file_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", ".".join(parts)) + ".svg"


def _shares(counts: list[float]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _bars(item: ArtifactDrift, column: ColumnDrift) -> tuple[list[str], list[float], list[float]]:
    """Bin labels and the shares of A and B in each bin, or empty lists."""
    profile_a, profile_b = item.profiles
    if profile_a is None or profile_b is None:
        return [], [], []
    col_a = next((c for c in profile_a["columns"] if c["name"] == column.column), None)
    col_b = next((c for c in profile_b["columns"] if c["name"] == column.column), None)
    if col_a is None or col_b is None or col_a["kind"] != col_b["kind"]:
        return [], [], []
    if col_a.get("histogram") and col_b.get("histogram"):
        edges, counts_a, counts_b = shared_histograms(col_a["histogram"], col_b["histogram"])
        labels = [f"{edge:.4g}" for edge in edges[:-1]]
        return labels, _shares(counts_a), _shares(counts_b)
    if col_a["kind"] == "categorical":
        found = categorical_distances(col_a, col_b)
        return list(found["buckets"]), _shares(found["a"]), _shares(found["b"])
    return [], [], []


def _svg(title: str, labels: list[str], a: list[float], b: list[float]) -> str:
    top = max([*a, *b, 1e-12])
    plot_w, plot_h = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD
    slot = plot_w / max(len(labels), 1)
    bar = slot * 0.4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" font-family="sans-serif" font-size="10">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_PAD}" y="20" font-size="13">{escape(title)}</text>',
        f'<line x1="{_PAD}" y1="{_HEIGHT - _PAD}" x2="{_WIDTH - _PAD}" '
        f'y2="{_HEIGHT - _PAD}" stroke="#333"/>',
        f'<text x="{_PAD - 4}" y="{_PAD + 4}" text-anchor="end">{top:.0%}</text>',
    ]
    for i, label in enumerate(labels):
        x = _PAD + i * slot + slot * 0.1
        for j, (share, colour) in enumerate(((a[i], _COLOURS[0]), (b[i], _COLOURS[1]))):
            height = plot_h * share / top
            parts.append(
                f'<rect x="{x + j * bar:.2f}" y="{_HEIGHT - _PAD - height:.2f}" '
                f'width="{bar:.2f}" height="{height:.2f}" fill="{colour}"/>'
            )
        if len(labels) <= 12 or i % 4 == 0:
            parts.append(f'<text x="{x:.2f}" y="{_HEIGHT - _PAD + 14}">{escape(label[:14])}</text>')
    legend_x = _WIDTH - _PAD - 120
    for j, name in enumerate(("run A", "run B")):
        parts.append(
            f'<rect x="{legend_x + j * 60}" y="10" width="10" height="10" '
            f'fill="{_COLOURS[j]}"/><text x="{legend_x + j * 60 + 14}" y="19">{name}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_pictures(
    report: DriftReport, directory: Path, *, only_drifted: bool = False
) -> list[Path]:
    """Write one SVG per compared column of the report's changed tables into ``directory``.

    Args:
        report: what :func:`~pipetrail.observability.drift.drift_runs` returned.
        directory: where to write (created if missing).
        only_drifted: draw only the columns that drift.

    Returns:
        The files written, in report order.

    Raises:
        OutputFileError: the folder cannot be created or a file cannot be written.
    """
    written: list[Path] = []
    path = directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for item in report.artifacts:
            for column in item.columns:
                if only_drifted and not column.drifted:
                    continue
                labels, a, b = _bars(item, column)
                if not labels:
                    continue
                psi = "" if column.psi is None else f" (PSI {column.psi:.3g})"
                title = f"{item.node_a} {item.output}: {column.column}{psi}"
                path = directory / _file_name(item.node_a, item.output, column.column)
                path.write_text(_svg(title, labels, a, b), encoding="utf-8")
                written.append(path)
    except OSError as exc:
        raise OutputFileError(
            f"cannot write the drift picture {path}: {exc.strerror or exc}; choose a folder "
            "you can write to (--picture DIR)",
            path=str(path),
            errno=exc.errno,
        ) from exc
    return written
