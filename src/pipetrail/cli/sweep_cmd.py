"""The ``pipetrail sweep`` command: run a pipeline over a grid of parameters.

Parses the grid, calls :func:`pipetrail.execution.sweep.run_sweep` and prints one line
per run as it ends, then a table (one row per run: params, status, metrics). Exits 0
when every run completed, 1 when one or more failed (naming them), 2 on bad input
(nothing recorded). ``cli.main`` registers it.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

import click

from pipetrail.cli.args import parse_params, parse_seed
from pipetrail.cli.exits import EXIT_BAD_INPUT, EXIT_RUN_FAILED, emit_json, fail, reporting_errors
from pipetrail.cli.interruptible import interruptible
from pipetrail.errors import ParamError

if TYPE_CHECKING:
    from pipetrail.execution.sweep import SweepResult, SweepRun

__all__ = ["sweep"]


@click.command()
@click.argument("target")
@click.option(
    "-p",
    "--param",
    "grid_items",
    multiple=True,
    metavar="NAME=V1,V2,...",
    help="A parameter and its values; repeatable (the grid is every combination).",
)
@click.option(
    "--set",
    "fixed_items",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter fixed for every run (a value may contain commas).",
)
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many runs may go on at once.",
)
@click.option(
    "--executor",
    "executor_name",
    metavar="inline|processes|dask[=ADDRESS]",
    help="Where steps execute (default: the project's executor).",
)
@click.option("--no-cache", is_flag=True, help="Execute every step, reuse nothing.")
@click.option("--seed", "seed_text", metavar="N|random", help="Run seed (default: the project's).")
@click.option("--tag", "tag_items", multiple=True, metavar="KEY=VALUE", help="A tag for every run.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep as JSON.")
@interruptible("no new run of the sweep was started")
def sweep(
    target: str,
    grid_items: tuple[str, ...],
    fixed_items: tuple[str, ...],
    max_parallel: int,
    executor_name: str | None,
    no_cache: bool,
    seed_text: str | None,
    tag_items: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run the pipeline in TARGET (FILE.py or FILE.py:NAME) once per point of a grid.

    `-p C=0.1,1,10 -p penalty=l1,l2` makes six runs, grouped under one sweep id
    (`pipetrail compare --sweep ID` shows them side by side). Steps whose code, inputs
    and params are those of an earlier run are cache hits. A failing run does not stop
    the others; the sweep then exits 1 and names it.
    """
    from pipetrail.execution.loader import load_pipeline
    from pipetrail.execution.project import Project
    from pipetrail.execution.run_state import RunOptions
    from pipetrail.execution.sweep import parse_grid, run_sweep
    from pipetrail.ledger.annotations import parse_tag_assignments

    with reporting_errors():
        grid = parse_grid(grid_items)
        if not grid:
            fail(
                "the sweep's grid is empty; give at least one -p NAME=V1,V2,... "
                "(use `pipetrail run` for a single run)",
                EXIT_BAD_INPUT,
            )
        fixed = parse_params(fixed_items)
        clash = sorted(set(fixed) & set(grid))
        if clash:
            raise ParamError(f"parameter(s) {', '.join(clash)} given both by -p and by --set")
        tags = parse_tag_assignments(tag_items)
        if "sweep" in tags:
            raise ParamError("the tag 'sweep' is set by the sweep itself (its id); use another key")
        definition, path = load_pipeline(target)
        project = Project.discover()
        options = RunOptions(
            cache=not no_cache,
            seed=parse_seed(seed_text),
            source_file=str(path),
            argv=["pipetrail", *sys.argv[1:]],
            tags=tags or None,
            executor=executor_name,
        )
        # What steps print goes to stderr: stdout carries the table (or the JSON).
        try:
            with contextlib.redirect_stdout(sys.stderr):
                result = run_sweep(
                    definition,
                    grid,
                    project,
                    options,
                    params=fixed,
                    max_parallel=max_parallel,
                    on_run=None if as_json else _progress_line,
                )
        finally:
            project.close()
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_sweep(result)
    if result.failed:
        if not as_json:
            names = ", ".join(f"#{r.index} ({_point(r)})" for r in result.failed)
            click.echo(
                f"error: {len(result.failed)} of {len(result.runs)} runs of sweep "
                f"{result.sweep_id} did not complete: {names}; see `pipetrail show RUN`",
                err=True,
            )
        sys.exit(EXIT_RUN_FAILED)


def _point(row: SweepRun) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.params.items())


def _progress_line(row: SweepRun) -> None:
    where = row.run_id or "not recorded"
    click.echo(f"[{row.index}] {_point(row)}: {row.status} ({where})", err=True)


def _print_sweep(result: SweepResult) -> None:
    from rich.markup import escape

    from pipetrail.cli.diff_cmd import console_for_tables, format_value

    param_names = list(dict.fromkeys(k for r in result.runs for k in r.params))
    metric_names = sorted({k for r in result.runs for k in r.metrics})
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for column in ["#", "run", *param_names, "status", *metric_names]:
        table.add_column(escape(column))
    for row in result.runs:
        status = row.status if row.status == "completed" else f"[red]{row.status}[/]"
        cells: list[Any] = [
            str(row.index),
            row.run_id or "-",
            *(escape(format_value(row.params.get(n))) for n in param_names),
            status,
            *(format_value(row.metrics.get(n)) for n in metric_names),
        ]
        table.add_row(*cells)
    console = console_for_tables()
    console.print(table)
    done = len(result.runs) - len(result.failed)
    console.print(
        f"sweep {result.sweep_id}: {done} of {len(result.runs)} runs completed; "
        f"compare them with `pipetrail compare --sweep {result.sweep_id}`",
        markup=False,
    )
