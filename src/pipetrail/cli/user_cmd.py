"""``pipetrail user``: keys, users and roles (thin: parse, call governance, render)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import click

from pipetrail.cli.exits import emit_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.governance.service import Governance

__all__ = ["governance", "user"]


@contextlib.contextmanager
def governance(*, acts: bool = False) -> Iterator[Governance]:
    """The project here, governed by the configured identity; closed afterwards.

    Signs a checkpoint after an act when ``[audit] checkpoint_after_governance`` asks.

    Args:
        acts: the command records events (a request, a vote, a grant...): like other
            writing commands, it may create the configuration's validation record, so
            later commands skip the validation (a listing creates no file).
    """
    from pipetrail.cli.audit_cmd import checkpoint_after_governance
    from pipetrail.execution.project import Project
    from pipetrail.governance.service import Governance

    project = Project.discover(must_exist=True, writes=acts)
    try:
        with checkpoint_after_governance(project):
            yield Governance(project)
    finally:
        project.close()


@click.group()
def user() -> None:
    """Users, their keys and roles (recorded as signed ledger events)."""


@user.group("key")
def key() -> None:
    """This identity's signing key."""


@key.command("create")
@click.option("--name", help="Whose key (default: the acting identity).")
@click.option(
    "--passphrase-prompt", is_flag=True, help="Encrypt the private key with a passphrase."
)
def key_create(name: str | None, passphrase_prompt: bool) -> None:
    """Make a key pair; print the public key (give it to an admin for `user add`)."""
    from pipetrail.governance.identity import current_user
    from pipetrail.governance.keys import create_key

    passphrase = (
        click.prompt("passphrase", hide_input=True, confirmation_prompt=True)
        if passphrase_prompt
        else None
    )
    click.echo(create_key(name or current_user(), passphrase=passphrase).text)


@user.command("init")
@click.option("--email", help="Your email address.")
def user_init(email: str | None) -> None:
    """Make yourself the first admin of a project that has no user yet."""
    with governance(acts=True) as gov:
        public = gov.bootstrap(email=email)
        click.echo(f"{gov.user} is the first admin of this project (key {public.key_id})")


@user.command("add")
@click.argument("name")
@click.option("--key", "public_key", required=True, help="Their public key (ed25519:...).")
@click.option("--email", help="Their email address.")
@click.option("--service", is_flag=True, help="A service account (it may never approve).")
@click.option("--role", "roles", multiple=True, help="A role to grant at once; repeatable.")
def user_add(
    name: str, public_key: str, email: str | None, service: bool, roles: tuple[str, ...]
) -> None:
    """Record the user NAME with their public key (admin only)."""
    with governance(acts=True) as gov:
        gov.add_user(name, public_key, email=email, service=service, roles=roles)
        click.echo(f"added {'service account' if service else 'user'} {name}")


@user.command("grant")
@click.argument("name")
@click.argument("role")
def user_grant(name: str, role: str) -> None:
    """Grant ROLE (viewer, researcher, approver, admin) to NAME (admin only)."""
    with governance(acts=True) as gov:
        gov.grant(name, role)
        click.echo(f"granted {role} to {name}")


@user.command("revoke")
@click.argument("name")
@click.argument("role")
def user_revoke(name: str, role: str) -> None:
    """Revoke ROLE from NAME (admin only)."""
    with governance(acts=True) as gov:
        gov.revoke(name, role)
        click.echo(f"revoked {role} from {name}")


@user.command("rotate-key")
@click.argument("name", required=False)
@click.option("--key", "public_key", help="NAME's new public key (an admin replacing it).")
def user_rotate_key(name: str | None, public_key: str | None) -> None:
    """Replace your key with a new one (or, as admin, NAME's with --key)."""
    with governance(acts=True) as gov:
        new = gov.rotate_key(name, public_key)
        click.echo(f"{name or gov.user} now signs with {new.key_id}")
        click.echo(new.text)


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def user_list(as_json: bool) -> None:
    """List the users, their roles and current keys."""
    from pipetrail.governance.views import list_users

    with governance() as gov:
        rows: list[dict[str, Any]] = list_users(gov.state())
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no users yet: `pipetrail user init` makes you the first admin")
    for row in rows:
        roles = ", ".join(row["roles"]) or "no role"
        email = f" <{row['email']}>" if row["email"] else ""
        click.echo(f"{row['name']}{email}  {row['kind']}  {roles}  {row['key_id']}")
