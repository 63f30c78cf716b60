"""``pipetrail keys rotate``: wrap the project's data keys under a new key encryption key.

Thin: :func:`pipetrail.execution.key_rotation.rotate_project_keys` does the work.
"""

from __future__ import annotations

import click

from pipetrail.cli.exits import emit_json

__all__ = ["keys"]


@click.group("keys")
def keys() -> None:
    """Keys that protect sensitive artifacts (encryption at rest)."""


@keys.command("rotate")
@click.option(
    "--old-variable",
    metavar="NAME",
    help="env provider: the variable holding the old key (the configured one holds the new).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rotate(old_variable: str | None, as_json: bool) -> None:
    """Wrap every data key under a new key encryption key; retire the old one."""
    from pipetrail.execution.key_rotation import rotate_project_keys
    from pipetrail.execution.project import Project

    project = Project.discover(must_exist=True)
    try:
        done = rotate_project_keys(project, old_variable=old_variable)
    finally:
        project.close()
    if as_json:
        emit_json(done)
        return
    click.echo(
        f"{len(done['data_keys'])} data key(s) now wrapped by {done['new_kek']} "
        f"(was {', '.join(done['old_keks'])}); no data was rewritten"
    )
    if done["retired"]:
        click.echo("the old key was removed from the key file")
