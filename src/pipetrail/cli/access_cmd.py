"""``pipetrail grant`` and ``pipetrail access``: grants to read sensitive content, and the record.

Thin: parse, call governance, render. ``pipetrail grant USER --label L --purpose TEXT``
records a grant (``grant add`` spelled out); ``grant revoke`` and ``grant list`` manage
them; ``access log`` lists every recorded read and refusal of sensitive content.
"""

from __future__ import annotations

from typing import Any

import click

from pipetrail.cli.exits import emit_json
from pipetrail.cli.user_cmd import governance

__all__ = ["access", "grant"]


class _GrantGroup(click.Group):
    """``grant USER ...`` means ``grant add USER ...``; ``revoke`` and ``list`` are commands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["add", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_GrantGroup)
def grant() -> None:
    """Grants to read sensitive content: `pipetrail grant USER --label pii --purpose TEXT`.

    Admin only; each grant and revocation is a signed ledger event. A grant holds until
    revoked, or through the day given with --until (UTC).
    """


@grant.command("add")
@click.argument("user")
@click.option("--label", required=True, help="The label it opens (confidential, pii, phi).")
@click.option("--purpose", required=True, help="Why USER reads the data (recorded with reads).")
@click.option("--until", metavar="YYYY-MM-DD", help="The last day the grant holds (UTC).")
def grant_add(user: str, label: str, purpose: str, until: str | None) -> None:
    """Let USER read content labelled --label, for --purpose (admin only)."""
    with governance(acts=True) as gov:
        content = gov.grant_access(user, label, purpose=purpose, until=until)
    end = f" until {content['until']}" if content["until"] else ""
    click.echo(f"granted {user} access to {label} content{end} ({content['grant_id']})")


@grant.command("revoke")
@click.argument("user")
@click.option("--label", required=True, help="The label whose grants end.")
def grant_revoke(user: str, label: str) -> None:
    """End every open grant of USER for --label (admin only)."""
    with governance(acts=True) as gov:
        gov.revoke_access(user, label)
    click.echo(f"revoked {user}'s access to {label} content")


@grant.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include revoked and expired grants.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def grant_list(show_all: bool, as_json: bool) -> None:
    """List the open grants (with --all, every grant ever made)."""
    from pipetrail.core.clock import utcnow

    today = utcnow().date().isoformat()
    with governance() as gov:
        state = gov.state()
    rows: list[dict[str, Any]] = [
        {
            "grant_id": g.grant_id,
            "user": g.user,
            "label": g.label,
            "purpose": g.purpose,
            "until": g.until,
            "by": g.by,
            "ts": g.ts,
            "open": g.active(today),
            "revoked_seq": g.revoked_seq,
        }
        for g in state.grants.values()
        if show_all or g.active(today)
    ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no open grants" if not show_all else "no grants")
    for row in rows:
        end = f"until {row['until']}" if row["until"] else "no end"
        state_text = "" if row["open"] else "  (closed)"
        click.echo(
            f"{row['grant_id']}  {row['user']}  {row['label']}  {end}  by {row['by']}  "
            f"{row['purpose']}{state_text}"
        )


@click.group()
def access() -> None:
    """The record of reads of sensitive content."""


@access.command("log")
@click.option("--label", help="Only reads of content with this label.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def access_log(label: str | None, as_json: bool) -> None:
    """List every recorded read and refusal of sensitive content, oldest first."""
    from pipetrail.execution.project import Project
    from pipetrail.ledger.access_reads import access_records

    project = Project.discover(must_exist=True)
    try:
        records = access_records(project.reader(), label=label)
    finally:
        project.close()
    rows = [
        {
            "seq": r.seq,
            "ts": r.ts,
            "outcome": "read" if r.kind == "access.read" else "refused",
            "user": r.user,
            "label": r.label,
            "digest": r.digest,
            "action": r.action,
            "run_id": r.run_id,
            "purpose": r.purpose,
            "basis": r.basis,
            "reason": r.reason,
        }
        for r in records
    ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no reads of sensitive content recorded")
    for row in rows:
        why = row["purpose"] or row["basis"] if row["outcome"] == "read" else row["reason"]
        run = f" run {row['run_id']}" if row["run_id"] else ""
        click.echo(
            f"{row['ts']}  {row['outcome']:<7}  {row['user']}  {row['label']}  "
            f"{row['digest']}  {row['action']}{run}  {why}"
        )
