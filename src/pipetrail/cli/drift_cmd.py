"""The ``pipetrail drift`` command: parse, call observability, render.

``drift RUN_A RUN_B`` compares the table profiles of two runs step by step and names the
first step where a column drifts (:mod:`pipetrail.observability.drift`);
``--baseline-runs N`` compares RUN_B with the pooled profiles of RUN_A and the runs of its
pipeline before it (N in all), or, given one run, of the N runs before it; ``--json`` prints
the report as JSON, ``--picture DIR`` also writes per-column histogram comparisons (SVG).
A drift is a result, not an error: the command exits 0 whether or not anything drifts;
2 for an unknown run, runs with nothing in common, a malformed ``[drift]`` or a picture
folder that cannot be written (4 when the disk is full). ``cli.main`` registers this command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from pipetrail.cli.exits import emit_json, reporting_errors

if TYPE_CHECKING:
    from pipetrail.observability.drift import ArtifactDrift, ColumnDrift, DriftReport

__all__ = ["drift"]


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="[RUN_A] RUN_B")
@click.option(
    "--baseline-runs",
    type=int,
    metavar="N",
    help="Pool the profiles of N runs as the baseline: RUN_A and the runs of its pipeline "
    "before it, or (RUN_B alone) the N runs before RUN_B.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--picture",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write one SVG per drifting column (A vs B histograms) into this folder.",
)
@click.option("--all", "show_all", is_flag=True, help="List (and draw) every compared column.")
def drift(
    runs: tuple[str, ...],
    baseline_runs: int | None,
    as_json: bool,
    picture: Path | None,
    show_all: bool,
) -> None:
    """Show how the tables of RUN_B drift from RUN_A, and where the drift starts.

    Tables of paired steps are compared by their profiles (PSI, KS, Wasserstein, null
    rates, schema); thresholds come from [drift] in pipetrail.toml. RUN_A and RUN_B are
    ids, unique prefixes or 'latest'; RUN_A may be left out with --baseline-runs.
    """
    from pipetrail.execution.project import Project
    from pipetrail.observability.drift import drift_runs

    if len(runs) > 2 or (len(runs) == 1 and baseline_runs is None):
        raise click.UsageError(
            "give two runs (RUN_A RUN_B), or one run with --baseline-runs N to compare it "
            "with the N runs of its pipeline before it"
        )
    run_a, run_b = (None, runs[0]) if len(runs) == 1 else runs
    with reporting_errors():
        project = Project.discover(must_exist=True)
        try:
            report = drift_runs(project, run_a, run_b, baseline_runs=baseline_runs)
        finally:
            project.close()
        pictures = []
        if picture is not None:
            from pipetrail.observability.drift_picture import write_pictures

            pictures = write_pictures(report, picture, only_drifted=not show_all)
    if as_json:
        data = report.to_dict()
        if picture is not None:
            data["pictures"] = [str(p) for p in pictures]
        emit_json(data)
        return
    _print_report(report, show_all=show_all)
    if picture is not None:
        click.echo(f"{len(pictures)} picture(s) written to {picture}")


def _rate(column: ColumnDrift) -> str:
    if column.null_rate_a is None or column.null_rate_b is None:
        return "-"
    return f"{column.null_rate_a:.1%} -> {column.null_rate_b:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _rows(item: ArtifactDrift, show_all: bool) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for column in item.columns:
        if not (show_all or column.drifted):
            continue
        what = column.change or column.kind
        rows.append(
            (
                item.node_a,
                item.output,
                column.column,
                what,
                _number(column.psi),
                _number(column.ks),
                _rate(column),
                "; ".join(column.reasons) if column.drifted else "no",
            )
        )
    return rows


def _print_report(report: DriftReport, *, show_all: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    console = Console(highlight=False, soft_wrap=False, width=width)
    limits = report.thresholds
    pooled = len(report.baseline_runs)
    against = f"{pooled} pooled run(s)" if pooled else f"run {report.run_a}"
    console.print(
        f"Drift of run {report.run_b} against {against} (pipeline {escape(report.pipeline_a)})"
    )
    if pooled:
        console.print(f"baseline runs: {', '.join(report.baseline_runs)}")
    extra = "".join(
        f", {name} {value:g}"
        for name, value in (("ks", limits.ks), ("wasserstein_std", limits.wasserstein_std))
        if value is not None
    )
    console.print(
        f"thresholds: psi {limits.psi:g}, null rate {limits.null_rate * 100:g} points{extra}"
    )
    changed = sum(1 for a in report.artifacts if a.digest_a != a.digest_b)
    console.print(f"tables compared: {len(report.artifacts)} ({changed} changed)")
    if not report.origins:
        console.print("[bold]no drift[/] above the thresholds")
    for i, origin in enumerate(report.origins):
        lead = "[bold]drift starts at step" if i == 0 else "  also starts at step"
        console.print(
            f"{lead} {escape(origin.node)}{'[/]' if i == 0 else ''} (output "
            f"{escape(origin.output)}): {escape(', '.join(origin.columns))}"
        )
        if origin.downstream:
            console.print(f"  carried to: {escape(', '.join(origin.downstream))}")
    table = Table(show_edge=False, header_style="bold")
    for name in ("step", "output", "column", "kind", "psi", "ks", "nulls A -> B", "drift"):
        table.add_column(name)
    rows = [row for item in report.artifacts for row in _rows(item, show_all)]
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    if rows:
        console.print(table)
    for item in report.artifacts:
        if item.note is not None:
            console.print(f"{escape(item.node_a)} {escape(item.output)}: {escape(item.note)}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
