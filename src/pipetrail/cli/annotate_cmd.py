"""``pipetrail tag`` and ``pipetrail note``: names, tags and notes added to a run.

Each change is an event appended to the ledger (``run.tagged``, ``run.untagged``,
``run.named``, ``run.noted``), so it is part of the audited record; ``runs`` and ``show``
display them. Bad input (an unknown run, a malformed tag, a tag the run does not have)
is refused with one message and records nothing. ``cli.main`` registers these commands.
"""

from __future__ import annotations

import click

from pipetrail.cli.exits import emit_json

__all__ = ["note", "tag"]


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option("--remove", "removals", multiple=True, metavar="KEY", help="Remove tag KEY.")
@click.option("--name", "new_name", metavar="NAME", help="Also give the run this name.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's tags as JSON.")
def tag(
    run_ref: str,
    assignments: tuple[str, ...],
    removals: tuple[str, ...],
    new_name: str | None,
    as_json: bool,
) -> None:
    """Tag RUN (id, prefix or 'latest') with KEY=VALUE pairs; --remove KEY drops one."""
    from pipetrail.errors import ParamError
    from pipetrail.ledger.annotations import parse_tag_assignments, validate_name
    from pipetrail.read.project import Project

    if not assignments and not removals and new_name is None:
        raise ParamError(
            "give tags as KEY=VALUE, --remove KEY or --name NAME "
            "(for example `pipetrail tag latest stage=baseline`)"
        )
    tags = parse_tag_assignments(assignments)  # checked before anything is recorded
    if new_name is not None:
        validate_name(new_name)
    with Project.open() as project:
        run_id = project.reader().resolve_run(run_ref)
        now = project.run(run_id).tags
        if removals:
            now = project.untag(run_id, *removals)
        if tags:
            now = project.tag(run_id, **tags)
        if new_name is not None:
            project.rename(run_id, new_name)
    if as_json:
        emit_json({"run_id": run_id, "tags": now, "name": new_name})
        return
    shown = " ".join(f"{k}={v}" for k, v in sorted(now.items())) or "no tags"
    click.echo(f"run {run_id}: {shown}" + (f" (named {new_name!r})" if new_name else ""))


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("text")
def note(run_ref: str, text: str) -> None:
    """Add a note (TEXT) to RUN (id, prefix or 'latest')."""
    from pipetrail.ledger.annotations import note_draft
    from pipetrail.read.project import Project

    note_draft("-", text)  # checked before the project is opened
    with Project.open() as project:
        run_id = project.reader().resolve_run(run_ref)
        project.note(run_id, text)
    click.echo(f"noted on run {run_id}")
