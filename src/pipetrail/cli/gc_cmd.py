"""``pipetrail gc`` and ``pipetrail runs delete``: thin wrappers over the library.

The work is :func:`pipetrail.execution.gc.collect_garbage` and
:func:`pipetrail.execution.deletion.delete_runs`; this module parses, calls and renders.
Imports only click and the CLI's own helpers at import time.
"""

from __future__ import annotations

import click

from pipetrail.cli.exits import emit_json

__all__ = ["gc", "runs_delete"]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


@click.command("delete")
@click.argument("run_refs", metavar="RUN...", nargs=-1)
@click.option("--reason", help="Why the runs are deleted (recorded; required).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_delete(run_refs: tuple[str, ...], reason: str | None, as_json: bool) -> None:
    """Mark runs deleted (recorded in the ledger, with a reason); `gc` frees their objects."""
    from pipetrail.cli.main import open_project
    from pipetrail.execution.deletion import delete_runs

    project = open_project()
    try:
        deleted = delete_runs(project, list(run_refs), reason=reason or "")
    finally:
        project.close()
    if as_json:
        emit_json(deleted)
        return
    for entry in deleted:
        click.echo(f"deleted run {entry['run_id']} ({entry['pipeline']}, {entry['status']})")
        if entry["reused_by"]:
            click.echo(f"  outputs it shares with later runs stay: {', '.join(entry['reused_by'])}")
    click.echo("run `pipetrail gc` to free the objects only deleted runs needed")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option(
    "--grace",
    metavar="DURATION",
    help="Keep objects stored less than this long ago (90, 30m, 1h, 2d; default: "
    "gc_grace in pipetrail.toml, else 1h).",
)
@click.option(
    "--wait",
    "wait_for",
    metavar="DURATION",
    default="0",
    help="Wait this long for runs in progress to end (default: refuse at once).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gc(dry_run: bool, grace: str | None, wait_for: str, as_json: bool) -> None:
    """Remove stored objects no kept run needs (after `runs delete`); print what it frees."""
    from pipetrail.cli.args import parse_duration
    from pipetrail.cli.main import open_project
    from pipetrail.execution.gc import collect_garbage

    grace_seconds = None if grace is None else parse_duration(grace, option="--grace")
    wait_seconds = parse_duration(wait_for, option="--wait")
    project = open_project()
    try:
        report = collect_garbage(project, dry_run=dry_run, grace=grace_seconds, wait=wait_seconds)
    finally:
        project.close()
    if as_json:
        emit_json(report)
        return
    verb = "would free" if dry_run else "freed"
    click.echo(
        f"{verb} {report['objects']} objects, {_size(report['bytes'])} "
        f"({report['reachable']} digests still needed by kept runs; "
        f"{report['deleted_runs']} runs deleted)"
    )
    for kind, figures in report["kinds"].items():
        if figures["objects"]:
            click.echo(f"  {kind:<8} {figures['objects']} objects, {_size(figures['bytes'])}")
    if report["young"]:
        click.echo(
            f"kept {report['young']} unneeded objects younger than the grace period "
            f"({report['grace_seconds']:g} s)"
        )
    if report["segments_dropped"] or report["segments_rewritten"]:
        click.echo(
            f"segments: {report['segments_dropped']} removed, {report['segments_rewritten']} "
            f"rewritten ({_size(report['segment_bytes_freed'])} given back)"
        )
    if report["pack_bytes_freed"]:
        click.echo(f"pack vacuumed: {_size(report['pack_bytes_freed'])} given back")
    if report["event_seq"] is not None:
        click.echo(f"recorded as ledger event {report['event_seq']} (store.collected)")
