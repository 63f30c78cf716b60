"""The ``pipetrail env`` commands: compare and export recorded environments.

``env diff RUN_A RUN_B`` shows how run B's environment differs from run A's (Python, OS,
hardware, packages, environment variables) and which differences count for parity;
``env export RUN --format requirements|pylock|dockerfile`` writes files that rebuild a
run's environment. The logic lives in :mod:`pipetrail.lineage.environment` and
:mod:`pipetrail.lineage.exports.environment`; ``cli.main`` registers the group.

Exit codes follow ``cli.main``: 2 for an unknown run, format or unavailable snapshot,
3 for an integrity failure, 4 when a store cannot be used. Differences are a result,
not an error: ``env diff`` exits 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetrail.cli.exits import reporting_errors

if TYPE_CHECKING:
    from pipetrail.capture.environment_diff import MappingDiff
    from pipetrail.lineage.environment import EnvironmentComparison

__all__ = ["env"]


@click.group()
def env() -> None:
    """Compare and export the environments runs recorded."""


@env.command("diff")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def env_diff(run_a: str, run_b: str, as_json: bool) -> None:
    """Show how RUN_B's environment differs from RUN_A's.

    Python, OS, hardware, packages (added, removed, changed) and recorded environment
    variables, then the differences that count for parity with RUN_A as the reference.
    """
    from pipetrail.execution.project import Project
    from pipetrail.lineage.environment import diff_run_environments

    with reporting_errors():
        project = Project.discover(must_exist=True)
        try:
            result = diff_run_environments(project, run_a, run_b)
        finally:
            project.close()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        _print_comparison(result)


@env.command("export")
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--format",
    "format_name",
    type=click.Choice(["requirements", "pylock", "dockerfile"]),
    default="requirements",
    show_default=True,
    help="What to write.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
def env_export(run_ref: str, format_name: str, output: Path | None) -> None:
    """Write RUN's environment as pinned requirements, a pylock.toml or a Dockerfile."""
    from pipetrail.execution.project import Project
    from pipetrail.lineage.exports.environment import export_environment

    with reporting_errors():
        project = Project.discover(must_exist=True)
        try:
            text = export_environment(project, run_ref, format_name)
        finally:
            project.close()
    if output is None:
        click.echo(text, nl=False)
        return
    from pipetrail.cli.files import write_text

    with reporting_errors():
        write_text(output, text)
    click.echo(f"wrote {output}", err=True)


# -- rendering --------------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return json.dumps(value, sort_keys=True, default=str)


def _print_mapping(title: str, changes: MappingDiff) -> None:
    if changes.empty:
        return
    click.echo(title)
    for key, value in changes.added.items():
        click.echo(f"  + {key} {_text(value)}")
    for key, value in changes.removed.items():
        click.echo(f"  - {key} {_text(value)}")
    for key, change in changes.changed.items():
        click.echo(f"  ~ {key} {_text(change.a)} -> {_text(change.b)}")


def _print_comparison(result: EnvironmentComparison) -> None:
    click.echo(f"A {result.a}")
    click.echo(f"B {result.b}")
    diff = result.diff
    if diff.note:
        click.echo(f"note: {diff.note}")
    if diff.same:
        click.echo("environments: same")
        return
    shown = False
    for section, changes in (("python", diff.python), ("os", diff.os), ("hardware", diff.hardware)):
        if changes:
            shown = True
            click.echo(section)
            for key, change in changes.items():
                click.echo(f"  ~ {key} {_text(change.a)} -> {_text(change.b)}")
    for title, mapping in (("packages", diff.packages), ("environment variables", diff.env_vars)):
        shown = shown or not mapping.empty
        _print_mapping(title, mapping)
    if not shown:
        click.echo("environments differ only in paths")
    if result.parity:
        click.echo(f"parity (with {result.a} as reference): {len(result.parity)} difference(s)")
        for line in result.parity:
            click.echo(f"  - {line}")
    else:
        click.echo(f"parity (with {result.a} as reference): no difference that counts")
