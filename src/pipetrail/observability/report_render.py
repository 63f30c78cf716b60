"""``pipetrail report`` as a self-contained HTML page or as Markdown.

Owns the layout of a :class:`~pipetrail.observability.report_data.PipelineReport`. The
HTML page holds everything it shows: inline CSS and inline SVG charts drawn by
:mod:`pipetrail.observability.report_svg`, no script, no font, no stylesheet or image
fetched from anywhere, so it opens offline and can be attached to a retrospective as
one file. The Markdown carries the same figures as tables (trends as one row per run,
with a sparkline), for a wiki or a CI summary. Runs are numbered ``#1``... oldest first
within the report, the full run id beside each. Pure; standard library only.
"""

from __future__ import annotations

import statistics
from html import escape
from typing import TYPE_CHECKING, Any

from pipetrail.observability.report_svg import PALETTE, bar_chart, line_chart, number

if TYPE_CHECKING:
    from pipetrail.observability.report_data import PipelineReport

__all__ = ["report_html", "report_markdown"]

# At most this many lines in one step-duration chart (the slowest steps); all are tabled.
_MAX_LINES = 8
_SPARKS = "▁▂▃▄▅▆▇█"
_NO_DRIFT = "No drift above the thresholds between consecutive runs or against a baseline"
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:60rem;
color:#222;padding:0 1rem}h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}td,th{border:1px solid #ddd;
padding:.25rem .55rem;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}.chart{width:100%;height:auto;
margin:.4rem 0}.tick{font-size:11px;fill:#555}.ok{color:#08660f}.bad{color:#a40000;
font-weight:600}.legend span{display:inline-block;margin-right:1rem}.legend i{display:
inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
code{font-size:.85rem}.muted{color:#666}
"""


def _labels(report: PipelineReport) -> tuple[list[str], dict[str, str]]:
    """``#1``... for the ordinary runs, oldest first, and run id -> its label."""
    ids = [r["run_id"] for r in report.ordinary_runs]
    labels = [f"#{i + 1}" for i in range(len(ids))]
    return labels, dict(zip(ids, labels, strict=True))


def _by_run(points: list[dict[str, Any]], ids: list[str], key: str) -> list[float | None]:
    found = {p["run_id"]: p[key] for p in points}
    return [found.get(run_id) for run_id in ids]


def _step_seconds(report: PipelineReport, ids: list[str]) -> dict[str, list[float | None]]:
    found = {}
    for node, points in report.steps.items():
        by_run = {p.run_id: p.seconds for p in points}
        found[node] = [by_run.get(run_id) for run_id in ids]
    return found


def _step_rows(report: PipelineReport) -> list[list[str]]:
    rows = []
    for node, points in report.steps.items():
        times = [p.seconds for p in points if p.seconds is not None]
        hits = sum(p.cached for p in points)
        failed = sum(p.status == "failed" for p in points)
        rows.append(
            [
                node,
                str(len(points)),
                str(len(times)),
                f"{hits} ({hits / len(points):.0%})",
                str(failed),
                number(statistics.median(times)) if times else "-",
                number(max(times)) if times else "-",
                number(times[-1]) if times else "-",
            ]
        )
    return rows


_STEP_HEAD = ["step", "runs", "executed", "cache hits", "failed", "median s", "max s", "last s"]


def _summary(report: PipelineReport) -> list[tuple[str, str]]:
    runs = report.runs
    ordinary = report.ordinary_runs
    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run["status"]] = statuses.get(run["status"], 0) + 1
    durations = [r["seconds"] for r in ordinary if r["seconds"] is not None]
    gates = report.gates
    return [
        ("pipeline", report.pipeline),
        (
            "runs",
            f"{len(runs)} ({len(ordinary)} ordinary, {len(runs) - len(ordinary)} by check "
            "or reproduce)",
        ),
        ("statuses", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))),
        ("period", f"{runs[0]['started_at']} to {runs[-1]['started_at']}"),
        ("median run duration", f"{number(statistics.median(durations))} s" if durations else "-"),
        ("gates", f"{sum(bool(g['passed']) for g in gates)} passed of {len(gates)}"),
        ("drift events", str(len(report.drift))),
        (
            "alerts",
            f"{sum(a['delivered'] for a in report.alerts)} delivered, "
            f"{sum(not a['delivered'] for a in report.alerts)} failed",
        ),
    ]


def _html_table(
    head: list[str], rows: list[list[str]], numeric: frozenset[int] = frozenset()
) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{escape(c)}</td>' if i in numeric else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _legend(names: list[str]) -> str:
    items = "".join(
        f'<span><i style="background:{PALETTE[n % len(PALETTE)]}"></i>{escape(name)}</span>'
        for n, name in enumerate(names)
    )
    return f'<p class="legend">{items}</p>'


def _origins(item: dict[str, Any]) -> str:
    return "; ".join(f"{o['step']} ({', '.join(o['columns'])})" for o in item["origins"])


def report_html(report: PipelineReport) -> str:
    """The report as one self-contained HTML page (module docstring)."""
    labels, label_of = _labels(report)
    ids = [r["run_id"] for r in report.ordinary_runs]
    title = f"pipetrail report: {report.pipeline}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">generated {escape(report.generated_at)}'
        + (f", runs since {escape(report.since)}" if report.since else "")
        + "</p>",
        _html_table(["", ""], [[k, v] for k, v in _summary(report)]),
        "<h2>Runs</h2>",
        _html_table(_RUN_HEAD, _run_rows(report, label_of), frozenset({5})),
        "<h2>Metric trends</h2>",
    ]
    if not report.metrics:
        out.append("<p>No metric recorded.</p>")
    for name, points in report.metrics.items():
        values = _by_run(points, ids, "value")
        out += [
            f"<h3>{escape(name)}</h3>",
            line_chart({name: values}, labels, title=f"{name} over runs"),
        ]
    out += ["<h2>Step durations</h2>"]
    seconds = _step_seconds(report, ids)
    slowest = sorted(
        seconds, key=lambda n: -max((v for v in seconds[n] if v is not None), default=0)
    )[:_MAX_LINES]
    shown = {n: seconds[n] for n in report.steps if n in slowest}
    out += [
        line_chart(shown, labels, title="wall seconds per executed step", unit="s"),
        _legend(list(shown)),
        '<p class="muted">A cache hit executes nothing: no point for that run.</p>',
        _html_table(_STEP_HEAD, _step_rows(report), frozenset({1, 2, 4, 5, 6, 7})),
        "<h2>Cache hits</h2>",
        line_chart(
            {"share of steps from the cache": _by_run(report.cache_hit_rate, ids, "rate")},
            labels,
            title="cache-hit rate per run",
            unit="share",
        ),
        "<h2>Failures by cause</h2>",
    ]
    if report.failures:
        out += [
            bar_chart([(f["cause"], f["count"]) for f in report.failures], title="failed runs"),
            _html_table(_FAILURE_HEAD, _failure_rows(report), frozenset({1})),
        ]
    else:
        out.append('<p class="ok">No run failed.</p>')
    out += ["<h2>Drift events</h2>"]
    out.append(
        _html_table(_DRIFT_HEAD, _drift_rows(report)) if report.drift else f"<p>{_NO_DRIFT}.</p>"
    )
    out += ["<h2>Gate results</h2>"]
    out.append(
        _html_table(_GATE_HEAD, _gate_rows(report, "FAILED"))
        if report.gates
        else "<p>No gate (<code>pipetrail check</code>) ran in this period.</p>"
    )
    if report.alerts:
        out += [
            "<h2>Alerts</h2>",
            _html_table(_ALERT_COLUMNS, _alert_rows(report, "NO"), frozenset({5})),
        ]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def sparkline(values: list[float | None]) -> str:
    """One character per value, low to high (a space for a missing one)."""
    found = [v for v in values if v is not None]
    if not found:
        return ""
    low, high = min(found), max(found)
    span = (high - low) or 1.0
    top = len(_SPARKS) - 1
    return "".join(" " if v is None else _SPARKS[round((v - low) / span * top)] for v in values)


def report_markdown(report: PipelineReport) -> str:
    """The report as Markdown (module docstring)."""
    labels, label_of = _labels(report)
    ids = [r["run_id"] for r in report.ordinary_runs]
    lines = [f"# pipetrail report: {report.pipeline}", ""]
    lines += _md_table(["", ""], [[k, v] for k, v in _summary(report)])
    lines += ["", "## Runs", ""]
    lines += _md_table(_RUN_HEAD, _run_rows(report, label_of))
    lines += ["", "## Metric trends", ""]
    if report.metrics:
        series = {name: _by_run(points, ids, "value") for name, points in report.metrics.items()}
        lines += _md_table(
            ["metric", *labels, "trend"],
            [
                [name, *(number(v) for v in values), sparkline(values)]
                for name, values in series.items()
            ],
        )
    else:
        lines.append("No metric recorded.")
    lines += ["", "## Step durations and cache hits", ""]
    lines += _md_table(_STEP_HEAD, _step_rows(report))
    lines += [""]
    rates = _by_run(report.cache_hit_rate, ids, "rate")
    lines += _md_table(
        ["", *labels, "trend"],
        [
            [
                "cache-hit rate",
                *(f"{v:.0%}" if v is not None else "-" for v in rates),
                sparkline(rates),
            ]
        ],
    )
    lines += ["", "## Failures by cause", ""]
    if report.failures:
        lines += _md_table(_FAILURE_HEAD, _failure_rows(report))
    else:
        lines.append("No run failed.")
    lines += ["", "## Drift events", ""]
    if report.drift:
        lines += _md_table(_DRIFT_HEAD, _drift_rows(report))
    else:
        lines.append(f"{_NO_DRIFT}.")
    lines += ["", "## Gate results", ""]
    if report.gates:
        lines += _md_table(_GATE_HEAD, _gate_rows(report, "**FAILED**"))
    else:
        lines.append("No gate (`pipetrail check`) ran in this period.")
    if report.alerts:
        lines += ["", "## Alerts", ""]
        lines += _md_table(_ALERT_COLUMNS, _alert_rows(report, "**no**"))
    return "\n".join(lines) + "\n"


_ALERT_COLUMNS = ["run", "at", "rule", "event", "delivered", "attempts", "error"]


def _alert_rows(report: PipelineReport, undelivered: str) -> list[list[str]]:
    """One row per alert delivery (``undelivered``: how a failed delivery is marked)."""
    return [
        [
            a["run_id"] or "-",
            a["at"],
            a["rule"],
            a["event"],
            "yes" if a["delivered"] else undelivered,
            str(a["attempts"]),
            a["error"] or "",
        ]
        for a in report.alerts
    ]


_RUN_HEAD = ["#", "run", "purpose", "status", "started", "seconds"]
_FAILURE_HEAD = ["cause", "runs", "run ids"]
_DRIFT_HEAD = ["run", "against", "found by", "drift starts at (columns)"]
_GATE_HEAD = ["check run", "at", "result", "baseline", "why"]


def _run_rows(report: PipelineReport, label_of: dict[str, str]) -> list[list[str]]:
    """One row per run, labelled ``#N`` when it is an ordinary run."""
    return [
        [
            label_of.get(r["run_id"], ""),
            r["run_id"],
            r["purpose"],
            r["status"],
            r["started_at"],
            number(r["seconds"]),
        ]
        for r in report.runs
    ]


def _failure_rows(report: PipelineReport) -> list[list[str]]:
    """One row per failure cause: how many runs, and which."""
    return [[f["cause"], str(f["count"]), ", ".join(f["runs"])] for f in report.failures]


def _drift_rows(report: PipelineReport) -> list[list[str]]:
    """One row per drift event, with the columns where it starts."""
    return [
        [
            d["run_id"],
            ", ".join(str(a) for a in d["against"]),
            d["source"],
            _origins(d) or d.get("note", ""),
        ]
        for d in report.drift
    ]


def _gate_rows(report: PipelineReport, failed: str) -> list[list[str]]:
    """One row per gate result (``failed``: how a failed gate is marked)."""
    return [
        [
            g["run_id"],
            g["at"],
            "passed" if g["passed"] else failed,
            g["baseline_run_id"] or "-",
            "; ".join(g["failures"]),
        ]
        for g in report.gates
    ]
