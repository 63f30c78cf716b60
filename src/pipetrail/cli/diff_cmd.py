"""The ``pipetrail diff`` and ``pipetrail compare`` commands: parse, call lineage, render.

``diff RUN_A RUN_B`` shows what differs between two runs (params, code as a unified diff,
data, seeds, environment, metric deltas) and whether they are comparable like for like;
``compare RUN...`` (or ``compare --sweep ID``) shows one table over many runs, each judged
against the first. Both
take ``--json``. The logic lives in :mod:`pipetrail.lineage.diff` and
:mod:`pipetrail.lineage.compare`; ``cli.main`` registers these commands.

Exit codes follow ``cli.main``: 2 for an unknown or ambiguous run (or a bad project),
3 for an integrity failure, 4 when a store cannot be used. A "not comparable" verdict is
a result, not an error: it exits 0.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from pipetrail.cli.exits import EXIT_BAD_INPUT, emit_json, fail, reporting_errors

if TYPE_CHECKING:
    from rich.console import Console

    from pipetrail.lineage.compare import Comparison, Verdict
    from pipetrail.lineage.diff import MappingDiff, RunDiff

__all__ = ["compare", "diff"]


@click.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def diff(run_a: str, run_b: str, as_json: bool) -> None:
    """Show what differs between two runs.

    Params, code (a unified diff), sources and inputs, seeds, environment and metric
    deltas of RUN_B against RUN_A (ids, unique prefixes or 'latest'), and whether the
    two are comparable like for like.
    """
    from pipetrail.execution.project import Project
    from pipetrail.lineage.diff import diff_runs

    with reporting_errors():
        project = Project.discover(must_exist=True)
        try:
            result = diff_runs(project, run_a, run_b)
        finally:
            project.close()
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_diff(result)


@click.command()
@click.argument("run_refs", metavar="RUN...", nargs=-1)
@click.option("--sweep", "sweep_id", metavar="ID", help="Compare the runs of sweep ID.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compare(run_refs: tuple[str, ...], sweep_id: str | None, as_json: bool) -> None:
    """Compare params and metrics of many runs.

    One row per RUN (ids, unique prefixes or 'latest'), or per run of a sweep
    (``--sweep ID``, in grid order); metric deltas and comparability are relative to
    the first.
    """
    from pipetrail.execution.project import Project
    from pipetrail.lineage.compare import compare_runs

    if bool(run_refs) == bool(sweep_id):
        fail("give RUN... or --sweep ID (one of them)", EXIT_BAD_INPUT)
    with reporting_errors():
        project = Project.discover(must_exist=True)
        try:
            if sweep_id:
                from pipetrail.execution.sweep import sweep_run_ids

                run_refs = tuple(sweep_run_ids(project.reader(), sweep_id))
            result = compare_runs(project, run_refs)
        finally:
            project.close()
    if as_json:
        emit_json({**result.to_dict(), **({"sweep_id": sweep_id} if sweep_id else {})})
    elif sweep_id:
        _print_run_rows(result)
    else:
        _print_comparison(result)


# -- rendering --------------------------------------------------------------------------
def _console() -> Console:
    from rich.console import Console

    # Off a terminal (pipes, CI logs) rich assumes 80 columns; ids and digests need more.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    return Console(highlight=False, soft_wrap=False, width=width)


def _table(*columns: str) -> Any:
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    return table


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.removeprefix("blake3:")[:12] if value.startswith("blake3:") else value
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return json.dumps(value, sort_keys=True, default=str)


def _delta(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4g}"


def _mapping_rows(table: Any, changes: MappingDiff) -> None:
    for key, value in changes.removed.items():
        table.add_row(key, _value(value), "[dim](absent)[/]")
    for key, value in changes.added.items():
        table.add_row(key, "[dim](absent)[/]", _value(value))
    for key, change in changes.changed.items():
        table.add_row(key, _value(change.a), _value(change.b))


def _print_diff(result: RunDiff) -> None:
    console = _console()
    for label, run in (("A", result.a), ("B", result.b)):
        console.print(
            f"[bold]{label}[/] {run['run_id']}  {run['pipeline']}  {run['status']}  "
            f"{run['started_at'][:19].replace('T', ' ')}"
        )
    _print_verdict(console, result.verdict)
    sections: list[tuple[str, Any]] = []
    if not result.params.empty:
        table = _table("param", "A", "B")
        _mapping_rows(table, result.params)
        sections.append(("params", table))
    if result.metrics:
        table = _table("metric", "A", "B", "delta")
        for metric in result.metrics:
            table.add_row(
                escape(metric.name), _value(metric.a), _value(metric.b), _delta(metric.delta)
            )
        sections.append(("metrics", table))
    if result.run_seed is not None or result.step_seeds:
        table = _table("seed", "A", "B")
        if result.run_seed is not None:
            table.add_row("(run)", str(result.run_seed.a), str(result.run_seed.b))
        for name, change in result.step_seeds.items():
            table.add_row(escape(name), str(change.a), str(change.b))
        sections.append(("seeds", table))
    if not result.sources.empty:
        table = _table("source", "A", "B")
        _mapping_rows(table, result.sources)
        sections.append(("sources", table))
    if result.steps:
        table = _table("step", "A", "B", "paired", "changed")
        for step in result.steps:
            paired = step.paired_by or "-"
            if step.node_id_b is not None:
                paired = f"with {step.node_id_b} in B ({paired})"
            both = step.status_a is not None and step.status_b is not None
            changed = ", ".join(step.changed) or ("outputs" if both else "-")
            table.add_row(
                escape(step.node_id),
                step.status_a or "-",
                step.status_b or "-",
                escape(paired),
                changed,
            )
        sections.append(("steps", table))
    for title, table in sections:
        console.print(f"[bold]{title}[/]")
        console.print(table)
    _print_environment(console, result)
    for step in result.steps:
        if step.code is None:
            continue
        console.print(f"[bold]code of {escape(step.node_id)}[/]")
        for line in step.code.parts:
            console.print(f"  {line}", markup=False)
        if step.code.note:
            console.print(f"  {step.code.note}", markup=False)
        if step.code.source_diff:
            # A plain unified diff, so it can be piped to `patch` or a pager as is.
            click.echo(step.code.source_diff, nl=False)


def _print_verdict(console: Console, verdict: Verdict) -> None:
    if verdict.comparable:
        console.print("verdict: [green]comparable[/]")
    else:
        console.print("verdict: [red]not comparable[/]")
    for reason in verdict.reasons:
        console.print(f"  - {reason.code}: {reason.message}", markup=False)
    for note in verdict.notes:
        console.print(f"  note: {note}", markup=False)


def _print_environment(console: Console, result: RunDiff) -> None:
    env = result.environment
    if env.same:
        console.print("[bold]environment[/] same")
        return
    console.print("[bold]environment[/]" + (f" ({env.note})" if env.note else ""))
    table = _table("fact", "A", "B")
    for section, changes in (("python", env.python), ("os", env.os), ("", env.hardware)):
        for key, change in changes.items():
            name = f"{section}.{key}" if section else key
            table.add_row(name, _value(change.a), _value(change.b))
    _mapping_rows(table, _prefixed("package ", env.packages))
    _mapping_rows(table, _prefixed("env ", env.env_vars))
    if table.row_count:
        console.print(table)
    else:
        console.print("  (the snapshots differ only in paths)")


def _prefixed(prefix: str, changes: MappingDiff) -> MappingDiff:
    return type(changes)(
        {prefix + k: v for k, v in changes.added.items()},
        {prefix + k: v for k, v in changes.removed.items()},
        {prefix + k: v for k, v in changes.changed.items()},
    )


def _print_comparison(result: Comparison) -> None:
    # One column per run and one row per fact: runs are usually fewer than params and
    # metrics, so the table stays narrow.
    console = _console()
    headers = [run.run_id + ("\n(baseline)" if run.verdict is None else "") for run in result.runs]
    table = _table("", *headers)
    if len({run.pipeline for run in result.runs}) > 1:
        table.add_row("pipeline", *(run.pipeline for run in result.runs))
    table.add_row("status", *(run.status for run in result.runs))
    for name in result.param_names:
        table.add_row(name, *(_value(run.params.get(name)) for run in result.runs))
    for name in result.metric_names:
        cells: list[str] = []
        for run in result.runs:
            delta = run.deltas.get(name)
            cells.append(
                _value(run.metrics.get(name)) + ("" if delta is None else f" ({_delta(delta)})")
            )
        table.add_row(escape(name), *cells)
    table.add_row("comparable", *(_verdict_cell(run.verdict) for run in result.runs))
    console.print(table)
    for run in result.runs:
        if run.verdict is not None and not run.verdict.comparable:
            console.print(f"[bold]{run.run_id}[/] is not comparable with {result.baseline}:")
            for reason in run.verdict.reasons:
                console.print(f"  - {reason.message}", markup=False)


def _print_run_rows(result: Comparison) -> None:
    """The comparison with one row per run (a sweep has more runs than facts)."""
    console = _console()
    table = _table("run", *result.param_names, "status", *result.metric_names, "comparable")
    for run in result.runs:
        cells = [run.run_id + (" (baseline)" if run.verdict is None else "")]
        cells.extend(escape(_value(run.params.get(name))) for name in result.param_names)
        cells.append(run.status if run.status == "completed" else f"[red]{run.status}[/]")
        for name in result.metric_names:
            delta = run.deltas.get(name)
            cells.append(
                _value(run.metrics.get(name)) + ("" if delta is None else f" ({_delta(delta)})")
            )
        cells.append(_verdict_cell(run.verdict))
        table.add_row(*cells)
    console.print(table)
    for run in result.runs:
        if run.verdict is not None and not run.verdict.comparable:
            console.print(f"[bold]{run.run_id}[/] is not comparable with {result.baseline}:")
            for reason in run.verdict.reasons:
                console.print(f"  - {reason.message}", markup=False)


def console_for_tables() -> Console:
    """The console tables of run comparisons are printed on (wide off a terminal)."""
    return _console()


def format_value(value: Any) -> str:
    """A param or metric value as comparison tables show it."""
    return _value(value)


def _verdict_cell(verdict: Verdict | None) -> str:
    if verdict is None:
        return "baseline"
    if verdict.comparable:
        return "[green]yes[/]"
    return "[red]no[/]: " + ", ".join(sorted({r.code for r in verdict.reasons}))
