"""Terminal rendering of run records (rich tables); the data comes from the library.

rich is imported by the functions that draw with it, not with this module: the line that
ends every ``pipetrail run`` is plain (styled by click), so a run does not pay for
importing rich (tens of milliseconds, more than the rest of a cached run's output). The
list of runs printed to a pipe or a file is a plain table (:mod:`pipetrail.cli.plain`),
without rich at all. Neither does this module import the runner's modules.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from pipetrail.cli.plain import is_terminal, plain_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console

__all__ = [
    "print_run",
    "print_run_done",
    "print_run_failure",
    "print_run_interrupted",
    "print_runs",
    "print_why",
]

_STATUS_STYLE = {
    "completed": "green",
    "cached": "cyan",
    "failed": "red",
    "crashed": "magenta",
    "interrupted": "dark_orange",
    "running": "yellow",
    "not run": "dim",
}


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    # Off a terminal (pipes, CI logs) rich assumes 80 columns; digests and ids need more.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def _short(digest: str | None, width: int = 12) -> str:
    if not digest:
        return "-"
    return digest.removeprefix("blake3:")[:width]


def _status(status: str) -> str:
    style = _STATUS_STYLE.get(status, "white")
    return f"[{style}]{status}[/]"


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in params.items())


def print_runs(rows: list[dict[str, Any]], *, columns: Sequence[str] = ()) -> None:
    """Print a table of runs (a plain one when standard output is not a terminal).

    ``columns`` (``params.X``, ``metrics.X``, ``tags.X``) are added at the end, from each
    row's ``columns`` entry.
    """
    if not rows:
        click.echo("no runs yet; start one with `pipetrail run pipeline.py`")
        return
    named = any(row.get("name") or row.get("tags") for row in rows)
    headers = ["run", "pipeline", "status", "steps", "started (UTC)", "owner", "params"]
    if named:
        headers[1:1] = ["name", "tags"]
    headers += list(columns)
    cells = []
    for row in rows:
        purpose = row.get("purpose") or "run"
        line = [
            row["run_id"] + ("" if purpose == "run" else f" ({purpose})"),
            row["pipeline"],
            row["status"],
            f"{row['steps_executed']} run, {row['steps_cached']} cached"
            + (f", {row['steps_failed']} failed" if row["steps_failed"] else "")
            + f" / {row['steps_total']}",
            row["started_at"][:19].replace("T", " "),
            row["owner"],
            _params(row["params"]),
        ]
        if named:
            line[1:1] = [row.get("name") or "", _tags(row.get("tags") or {})]
        extra = row.get("columns") or {}
        line += [_cell(extra.get(column)) for column in columns]
        cells.append(line)
    if not is_terminal():
        click.echo(plain_table(tuple(headers), cells))
        return
    from rich.markup import escape
    from rich.table import Table

    status_at = headers.index("status")
    table = Table(show_edge=False, header_style="bold")
    for column in headers:
        table.add_column(column)
    for line in cells:
        table.add_row(
            *map(escape, line[:status_at]),
            _status(line[status_at]),
            *map(escape, line[status_at + 1 :]),
        )
    _console().print(table)


def _cell(value: Any) -> str:
    """A value of an added column: numbers to 4 significant digits, nothing as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _tags(tags: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _resources(res: dict[str, Any]) -> str:
    if not res:
        return "-"
    wall = res["wall_ns"] / 1e9 if res.get("wall_ns") is not None else None
    cpu = res["cpu_ns"] / 1e9 if res.get("cpu_ns") is not None else None
    peak = res.get("peak_rss_bytes")
    parts = []
    if wall is not None:
        parts.append(f"{wall:.3f}s")
    if cpu is not None:
        parts.append(f"cpu {cpu:.3f}s")
    if peak:
        parts.append(f"rss {peak / 2**20:.0f}M")
    return " ".join(parts) or "-"


def _requested(req: dict[str, Any] | None) -> str:
    """What a step asked for: ``cpu 2 mem 4GiB gpu 1`` (``-``: nothing)."""
    if not req:
        return "-"
    parts = []
    for key, amount in sorted(req.items()):
        if key == "memory" and isinstance(amount, int | float):
            parts.append(f"mem {_bytes(amount)}")
        else:
            parts.append(f"{key} {amount:g}" if isinstance(amount, float) else f"{key} {amount}")
    return " ".join(parts)


def _bytes(n: float) -> str:
    unit = "B"
    for larger in ("KiB", "MiB", "GiB"):
        if n < 1024:
            break
        n, unit = n / 1024, larger
    return f"{n:g}{unit}" if float(n).is_integer() else f"{n:.1f}{unit}"


def print_run(summary: dict[str, Any]) -> None:
    """Print one run's record: header, sources and a table of step runs."""
    from rich.markup import escape
    from rich.table import Table

    from pipetrail.cli.contracts_render import print_contracts_brief
    from pipetrail.execution.records import METRIC_OUTPUT_PREFIX, is_recorded_output

    console = _console()
    console.print(f"[bold]run[/] {summary['run_id']}  {_status(summary['status'])}")
    git = summary.get("git") or {}
    lines = [
        ("pipeline", f"{summary['pipeline']} ({_short(summary['pipeline_fingerprint'])})"),
        ("params", _params(summary["params"]) or "-"),
        ("seed", str(summary["seed"])),
        ("owner", f"{summary['owner']} on {summary['host']}"),
        ("started", summary["started_at"]),
        ("ended", summary["ended_at"] or "-"),
        (
            "git",
            f"{(git.get('commit') or '')[:12]} {git.get('branch') or '(detached)'}"
            + (" dirty" if git.get("dirty") else "")
            if git
            else "not a git repository",
        ),
        ("environment", _short(summary["environment"])),
        ("cache", "on" if summary["cache"] else "off (--no-cache)"),
    ]
    if summary.get("name"):
        lines.insert(0, ("name", summary["name"]))
    if summary.get("tags"):
        lines.insert(1 if summary.get("name") else 0, ("tags", _tags(summary["tags"])))
    if summary.get("reproduces"):
        lines[-1] = ("cache", "off")
        lines.append(("reproduces", f"run {summary['reproduces']} (pipetrail reproduce)"))
    if summary.get("purpose") == "check":
        lines.append(("made by", "pipetrail check"))
    if summary.get("trace_id"):
        lines.append(("trace", summary["trace_id"]))
    if summary.get("error"):
        lines.append(("error", summary["error"]))
    deleted = summary.get("deleted")
    if deleted:
        lines.append(
            (
                "DELETED",
                f"on {deleted['deleted_at']} by {deleted['deleted_by']}: {deleted['reason']}",
            )
        )
    purged = summary.get("purged")
    if purged and purged.get("content"):
        what = " and ".join(c.replace("_", " ") for c in purged["content"])
        lines.append(
            (
                "PURGED",
                f"its {what} by policy {purged['policy']} on {purged['purged_at']} (what no "
                f"kept run needs was removed, the record stays; ledger event {purged['seq']})",
            )
        )
    elif purged:
        lines.append(
            (
                "PURGED",
                f"by policy {purged['policy']} on {purged['purged_at']} (its objects no kept "
                f"run needs were removed; ledger event {purged['seq']}, store.collected)",
            )
        )
    for label, value in lines:
        console.print(f"  [dim]{label:<12}[/] {value}")
    for note in summary.get("notes") or []:
        when = note["noted_at"][:19].replace("T", " ")
        text = escape(f"{when} {note['actor']}: {note['text']}")
        console.print(f"  [dim]{'note':<12}[/] {text}")
    if summary["sources"]:
        console.print("[bold]sources[/]")
        for src in summary["sources"]:
            ref = " (by reference)" if src["by_reference"] else ""
            label = f"  [{src['classification']}]" if src.get("classification") else ""
            console.print(
                f"  {src['path']}  {_short(src['digest'])}  {src['size']} B{ref}{label}",
                markup=False,
                highlight=False,
            )
    table = Table(show_edge=False, header_style="bold", title="steps", title_justify="left")
    # What steps asked for shows beside what they used, when any step asked (ADR 0026).
    asked = any(step.get("resource_requests") for step in summary["steps"])
    columns = ("step", "status", "cache", "outputs", "metrics", "requested", "resources", "key")
    for column in columns if asked else tuple(c for c in columns if c != "requested"):
        table.add_column(column)
    for step in summary["steps"]:
        returned = {k: v for k, v in step["outputs"].items() if not is_recorded_output(k)}
        outputs = ", ".join(f"{k}={_short(v, 10)}" for k, v in returned.items())
        logged = ", ".join(
            k.split(":", 1)[1] for k in step["outputs"] if k.startswith(METRIC_OUTPUT_PREFIX)
        )
        cache = step["cache_decision"] or "-"
        table.add_row(
            escape(step["node_id"]),  # a named node's id holds brackets: train[lr-0.1]
            _status(step["status"]),
            cache,
            outputs or "-",
            logged or "-",
            *((_requested(step.get("resource_requests")),) if asked else ()),
            _resources(step["resources"]),
            _short(step["cache_key"], 10),
        )
    for node in summary.get("not_run") or []:
        table.add_row(
            escape(node["node_id"]), _status("not run"), *["-"] * (len(table.columns) - 2)
        )
    console.print(table)
    _print_metrics(console, summary.get("metrics") or [])
    print_contracts_brief(console, summary["steps"])
    _print_data_ops(console, summary["steps"])
    _print_labels(console, summary["steps"])
    for step in summary["steps"]:
        if step["status"] == "failed":
            console.print(
                f"[red]step {escape(step['node_id'])} failed:[/] {escape(step['error'] or '')}"
            )
            if step["traceback"]:
                console.print(step["traceback"], markup=False)
        elif step["status"] in ("crashed", "interrupted"):
            console.print(
                f"step {escape(step['node_id'])} {_status(step['status'])}: "
                f"{escape(step['error'] or '-')}"
            )


def _print_metrics(console: Console, metrics: list[dict[str, Any]]) -> None:
    """One line per metric: its value, and for a logged series its range and length."""
    if not metrics:
        return
    from rich.markup import escape

    console.print("[bold]metrics[/]")
    width = max(len(m["name"]) for m in metrics)
    for m in metrics:
        line = f"  {escape(m['name']):<{width}}  {m['value']:.6g}"
        if m.get("count") is not None:
            line += f"  (last of {m['count']}; min {m['min']:.6g}, max {m['max']:.6g})"
        console.print(line)


def _print_data_ops(console: Console, steps: list[dict[str, Any]]) -> None:
    """One line per sample or split the run's steps recorded (``pipetrail.data``)."""
    for step in steps:
        for op in step.get("data_ops") or []:
            parts = ", ".join(
                f"{name} {out.get('rows')} rows ({_short(out.get('digest'), 10)})"
                for name, out in (op.get("outputs") or {}).items()
            )
            leakage = (op.get("leakage") or {}).get("outcome", "not checked")
            console.print(
                f"{step['node_id']}: {op.get('op')} seed {op.get('seed')}"
                f" ({op.get('seed_from')}): {parts}; leakage check: {leakage}",
                markup=False,
                highlight=False,
            )


def _print_labels(console: Console, steps: list[dict[str, Any]]) -> None:
    """One line per labelled step: its outputs' labels, and what declassified them."""
    for step in steps:
        labels = step.get("classification")
        if not labels:
            continue
        text = ", ".join(f"{name} {label}" for name, label in labels.items())
        for name, how in (step.get("declassified") or {}).items():
            by = ", ".join(f"{op.get('op')} k={op.get('k')}" for op in how.get("by") or [])
            text += f"; {name} declassified from {how.get('from')} by {by or '-'}"
        console.print(f"{step['node_id']}: classification {text}", markup=False, highlight=False)


def print_run_done(summary: dict[str, Any]) -> None:
    """Print the end-of-run line (plain text off a terminal, the status in color on one)."""
    steps = summary["steps"]
    executed = sum(1 for s in steps if s["status"] == "completed")
    cached = sum(1 for s in steps if s["status"] == "cached")
    status = summary["status"]
    styled = click.style(status, fg=_STATUS_STYLE.get(status, "white"))
    click.echo(
        f"run {summary['run_id']} {styled}: {executed} executed, "
        f"{cached} cached of {summary['steps_total']} steps",
        color=_color(),
    )


def _color() -> bool | None:
    """Color as rich decides it: off with ``NO_COLOR``, on with ``FORCE_COLOR``, else on a tty."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return None


def print_run_failure(summary: dict[str, Any]) -> None:
    """Print what failed in a run, with the failing step's error and traceback."""
    from rich.markup import escape

    console = _console(stderr=True)
    console.print(f"run {summary['run_id']} {_status('failed')}")
    for step in summary["steps"]:
        if step["status"] == "failed":
            console.print(
                f"[red]step {escape(repr(step['node_id']))} failed:[/] "
                f"{escape(step['error'] or '')}"
            )
            if step["traceback"]:
                console.print(step["traceback"], markup=False)
    not_run = [node["node_id"] for node in summary.get("not_run") or []]
    if not_run:
        console.print(f"not run: {', '.join(not_run)}", markup=False, highlight=False)
    console.print(f"details: pipetrail show {summary['run_id']}")


def print_run_interrupted(summary: dict[str, Any], signal_name: str) -> None:
    """Print the one line saying a run was interrupted and what became of its steps."""
    counts: dict[str, int] = {}
    for step in summary["steps"]:
        counts[step["status"]] = counts.get(step["status"], 0) + 1
    if summary.get("not_run"):
        counts["not run"] = len(summary["not_run"])
    steps = ", ".join(f"{count} {status}" for status, count in counts.items()) or "no steps"
    _console(stderr=True).print(
        f"run {summary['run_id']} {_status(summary['status'])} by {signal_name}: {steps}; "
        f"details: pipetrail show {summary['run_id']}",
        soft_wrap=True,
    )


def print_why(report: dict[str, Any]) -> None:
    """Print each cache-key component of a step run and what changed since last time."""
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    console.print(
        f"[bold]{escape(report['node_id'])}[/] in run {report['run_id']}: "
        f"{report['cache_decision'] or '-'} ({escape(report['cache_reason'] or '')})"
    )
    console.print(f"  key {report['cache_key']}")
    previous = report["previous"]
    pairing = report.get("pairing") or {}
    if previous is None:
        console.print("  no earlier run of this step to compare with")
        if pairing.get("run_id"):
            console.print(f"  {pairing['note']}", markup=False)
    else:
        console.print(
            f"  compared with {escape(previous.get('node_id') or '')} of run "
            f"{previous['run_id']} (key {_short(previous['cache_key'])}, paired by "
            f"{pairing.get('by') or 'node id'})"
        )
    table = Table(show_edge=False, header_style="bold")
    for column in ("component", "changed", "value"):
        table.add_column(column)
    for comp in report["components"]:
        if comp["component"] == "code_parts":
            continue
        value = comp["value"]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if isinstance(text, str) and len(text) > 70:
            text = text[:67] + "..."
        mark = "[red]yes[/]" if comp["changed"] else ("-" if previous is None else "no")
        table.add_row(comp["component"], mark, str(text))
    console.print(table)
    for comp in report["components"]:
        if comp["changed"] and comp["detail"]:
            console.print(f"[bold]{comp['component']}[/] changes:")
            for line in comp["detail"]:
                console.print(f"  {line}", markup=False)
    if previous is not None and not report["changed"]:
        console.print("nothing changed since the previous run of this step")
    elif report["changed"]:
        console.print(f"changed: {', '.join(report['changed'])}")
