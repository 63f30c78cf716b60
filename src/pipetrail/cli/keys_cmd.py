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
@click.option(
    "--reencrypt",
    is_flag=True,
    help="Also make a new data key and rewrite every sealed object under it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rotate(old_variable: str | None, reencrypt: bool, as_json: bool) -> None:
    """Wrap every data key under a new key encryption key; retire the old one.

    With --reencrypt, a new data key seals every sealed object again (outputs, source
    copies, step logs) and the old data key is removed; an interrupted run is finished
    by running the command again.
    """
    from pipetrail.execution.key_rotation import rotate_project_keys
    from pipetrail.execution.project import Project

    project = Project.discover(must_exist=True)
    try:
        if reencrypt:
            from pipetrail.execution.reencryption import reencrypt_project

            done = reencrypt_project(project, old_variable=old_variable)
        else:
            done = rotate_project_keys(project, old_variable=old_variable)
    finally:
        project.close()
    if as_json:
        emit_json(done)
        return
    if reencrypt:
        if done["new_kek"]:
            click.echo(f"key encryption key now {done['new_kek']}")
        click.echo(
            f"{done['objects']} sealed object(s) re-encrypted under data key "
            f"{done['new_data_key']}; removed data key(s): "
            f"{', '.join(done['retired_data_keys']) or 'none'}"
        )
        if done["missing"]:
            click.echo(
                f"{done['missing']} recorded sealed object(s) are missing from the store "
                "(see `pipetrail store verify`)"
            )
        click.echo("the old objects are no longer needed: `pipetrail gc` removes them")
        return
    click.echo(
        f"{len(done['data_keys'])} data key(s) now wrapped by {done['new_kek']} "
        f"(was {', '.join(done['old_keks'])}); no data was rewritten"
    )
    if done["retired"]:
        click.echo("the old key was removed from the key file")
