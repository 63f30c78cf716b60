"""``pipetrail token``: API tokens for the server (thin: parse, call governance, render)."""

from __future__ import annotations

import click

from pipetrail.cli.exits import emit_json
from pipetrail.cli.user_cmd import governance

__all__ = ["token"]


@click.group()
def token() -> None:
    """API tokens for `pipetrail serve` (stored as digests, expiring, revocable)."""


def _lifetime(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from pipetrail.errors import GovernanceError
    from pipetrail.governance.tokens import parse_expiry

    try:
        parse_expiry(value)
    except GovernanceError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@token.command("create")
@click.option("--user", "user", required=True, help="The recorded user the token acts as.")
@click.option(
    "--expires",
    default="30d",
    show_default=True,
    callback=_lifetime,
    help="Lifetime: 12h, 30d, 8w (max 366d).",
)
@click.option("--label", default="", help="A note saying what the token is for.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_create(user: str, expires: str, label: str, as_json: bool) -> None:
    """Issue a token for --user (yourself, or anyone as admin); it is shown only once."""
    from pipetrail.governance.tokens import issue_token

    with governance(acts=True) as gov:
        issued = issue_token(gov, user, expires=expires, label=label)
    if as_json:
        emit_json(
            {
                "token": issued.token,
                "token_id": issued.token_id,
                "user": issued.user,
                "expires_at": issued.expires_at,
            }
        )
        return
    click.echo(issued.token)
    click.echo(
        f"token {issued.token_id} for {issued.user}, expires {issued.expires_at}; "
        "keep it secret: it is not stored and cannot be shown again",
        err=True,
    )


@token.command("list")
@click.option("--user", "user", help="Only this user's tokens (an admin sees everyone's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(user: str | None, as_json: bool) -> None:
    """List tokens (never the tokens themselves): owner, expiry, status."""
    from pipetrail.governance.tokens import token_records

    with governance() as gov:
        rows = [record.to_dict() for record in token_records(gov, user)]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no tokens; `pipetrail token create --user NAME` issues one")
    for row in rows:
        label = f"  {row['label']}" if row["label"] else ""
        click.echo(
            f"{row['token_id']}  {row['user']}  {row['status']}  expires {row['expires_at']}{label}"
        )


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke the token TOKEN_ID (its owner or an admin); refused from the next request."""
    from pipetrail.governance.tokens import revoke_token

    with governance(acts=True) as gov:
        record = revoke_token(gov, token_id)
    click.echo(f"token {record.token_id} of {record.user} revoked at {record.revoked_at}")
