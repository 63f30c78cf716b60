"""``pipetrail gc`` and ``pipetrail runs delete``: thin wrappers over the library.

The work is :func:`pipetrail.execution.gc.collect_garbage` and
:func:`pipetrail.execution.deletion.delete_runs`; this module parses, calls and renders.
Imports only click and the CLI's own helpers at import time.
"""

from __future__ import annotations

from typing import Any

import click

from pipetrail.cli.exits import emit_json

__all__ = ["gc", "purge", "runs_delete", "runs_pin", "runs_unpin"]


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
@click.option(
    "--policy",
    is_flag=True,
    help="First delete the runs past their [retention] rule (pipetrail.toml), then collect.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gc(dry_run: bool, grace: str | None, wait_for: str, policy: bool, as_json: bool) -> None:
    """Remove stored objects no kept run needs (after `runs delete`); print what it frees.

    With --policy, the [retention] rules of pipetrail.toml delete the runs they let go
    first (never a run a model version, alias, open promotion request or pin protects).
    """
    from pipetrail.cli.args import parse_duration
    from pipetrail.cli.main import open_project
    from pipetrail.execution.gc import collect_garbage

    grace_seconds = None if grace is None else parse_duration(grace, option="--grace")
    wait_seconds = parse_duration(wait_for, option="--wait")
    project = open_project()
    try:
        if policy:
            from pipetrail.governance.retention import apply_retention

            outcome = apply_retention(
                project, dry_run=dry_run, grace=grace_seconds, wait=wait_seconds
            )
        else:
            report = collect_garbage(
                project, dry_run=dry_run, grace=grace_seconds, wait=wait_seconds
            )
    finally:
        project.close()
    if policy:
        _print_retention(outcome, as_json=as_json)
        return
    if as_json:
        emit_json(report)
        return
    _print_collection(report, dry_run=dry_run)


def _print_retention(outcome: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        emit_json(outcome)
        return
    rules = outcome["rules"]
    click.echo("retention rules: " + ", ".join(f"{k} = {v}" for k, v in rules.items()))
    expired = outcome["expired"]
    protected = outcome["protected"]
    verb = "would delete" if outcome["dry_run"] else "deleted"
    click.echo(f"{verb} {len(expired)} runs past their rule")
    for run_id, entry in expired.items():
        frees = ""
        if "objects" in entry:
            frees = f"; frees {entry['objects']} objects, {_size(entry['bytes'])}"
        click.echo(f"  {run_id} ({entry['pipeline']}, {entry['status']}): {entry['rule']}{frees}")
    content = outcome.get("content") or {}
    if content:
        verb = "would remove" if outcome["dry_run"] else "removed"
        click.echo(f"{verb} the content of {len(content)} runs past a content rule (runs stay)")
        for run_id, entry in content.items():
            frees = ""
            if "objects" in entry:
                frees = f"; frees {entry['objects']} objects, {_size(entry['bytes'])}"
            what = ", ".join(entry["classes"])
            click.echo(f"  {run_id} ({entry['pipeline']}, {entry['status']}): {what}{frees}")
    if protected:
        click.echo(f"kept {len(protected)} runs a rule let go, because they are protected")
        for run_id, entry in protected.items():
            click.echo(f"  {run_id}: {entry['why']}")
    if outcome["collection"] is not None:
        _print_collection(outcome["collection"], dry_run=False)
    freed = outcome.get("would_free")
    if freed is not None:
        click.echo(
            f"would free {freed['objects']} objects, {_size(freed['bytes'])} (objects a "
            "kept run still names stay)"
        )
        for kind, figures in freed["kinds"].items():
            if figures["objects"]:
                click.echo(f"  {kind:<8} {figures['objects']} objects, {_size(figures['bytes'])}")
        if freed["earlier"]["objects"]:
            click.echo(
                f"  of which {freed['earlier']['objects']} objects, "
                f"{_size(freed['earlier']['bytes'])}, only runs deleted earlier name"
            )
        if freed["shared"]:
            click.echo(
                f"  {freed['shared']} of them are named by several of these runs (counted "
                "for each above)"
            )
        if freed["young"]:
            click.echo(
                f"kept {freed['young']} unneeded objects younger than the grace period "
                f"({freed['grace_seconds']:g} s)"
            )
    if outcome["dry_run"] and (expired or content):
        click.echo("run `pipetrail gc --policy` to delete them and free what only they need")


def _print_collection(report: dict[str, Any], *, dry_run: bool) -> None:
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


@click.command("pin")
@click.argument("run_ref", metavar="RUN")
@click.option("--reason", help="Why the run is kept (recorded; required).")
def runs_pin(run_ref: str, reason: str | None) -> None:
    """Pin RUN: no retention policy deletes it (a `pinned` tag, recorded in the ledger)."""
    from pipetrail.errors import ParamError
    from pipetrail.ledger.retention_reads import PIN_TAG
    from pipetrail.read.project import Project

    text = (reason or "").strip()
    if not text:
        raise ParamError(
            "a pin needs a reason, recorded for auditors: pass --reason TEXT "
            '(for example --reason "baseline for the 2026 audit")'
        )
    with Project.open() as project:
        run_id = project.reader().resolve_run(run_ref)
        project.tag(run_id, **{PIN_TAG: text})
    click.echo(f"pinned run {run_id}: retention policies keep it ({text})")


@click.command("unpin")
@click.argument("run_ref", metavar="RUN")
def runs_unpin(run_ref: str) -> None:
    """Unpin RUN: retention policies apply to it again."""
    from pipetrail.errors import ParamError
    from pipetrail.ledger.retention_reads import PIN_TAG
    from pipetrail.read.project import Project

    with Project.open() as project:
        run_id = project.reader().resolve_run(run_ref)
        if PIN_TAG not in project.run(run_id).tags:
            raise ParamError(f"run {run_id} is not pinned; nothing was recorded")
        project.untag(run_id, PIN_TAG)
    click.echo(f"unpinned run {run_id}: retention policies apply to it again")


@click.command()
@click.option("--source", "path", required=True, metavar="PATH", help="The source to erase.")
@click.option("--reason", help="Why (recorded; required).")
@click.option(
    "--force",
    is_flag=True,
    help="Admin only: also purge runs that made a promoted model version (signed decision).",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def purge(path: str, reason: str | None, force: bool, dry_run: bool, as_json: bool) -> None:
    """Erase a source: delete the runs that read it and remove what no kept run needs.

    Reports what it could not remove and why (a model version, an open promotion request
    or a pin keeps a run). Refused when it would remove a promoted model's inputs, unless
    an admin passes --force.
    """
    from pipetrail.cli.user_cmd import governance
    from pipetrail.governance.purge import purge_source

    with governance(acts=True) as gov:
        report = purge_source(gov, path, reason=reason or "", force=force, dry_run=dry_run)
    if as_json:
        emit_json(report)
        return
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} {len(report['purged'])} runs that read {path}")
    for run_id, pipeline in report["purged"].items():
        click.echo(f"  {run_id} ({pipeline})")
    for run_id, why in report["overridden"].items():
        click.echo(f"  {run_id}: forced, although {why}")
    if report["kept"]:
        click.echo(f"could not remove {len(report['kept'])} runs (and what they name):")
        for run_id, why in report["kept"].items():
            click.echo(f"  {run_id}: {why}")
    if report["by_reference"]:
        click.echo("the source was tracked by reference: its content was never in the store")
    if report["collection"] is not None:
        _print_collection(report["collection"], dry_run=False)
    click.echo(f"the file {path} itself is not touched: delete it where it lives")
