"""Roles and what each may do: the one table every governance action is authorized by.

Deny by default: an action is allowed only when one of the actor's roles lists it, and a
refusal names the action, the roles the actor holds and the roles that would allow it.
A user may hold several roles; no role implies another, except that every role may read.

=========================  ======  ==========  ========  =====
action                     viewer  researcher  approver  admin
=========================  ======  ==========  ========  =====
read                       yes     yes         yes       yes
run                                yes                   yes
annotate (tags, notes)             yes         yes       yes
decide (decision records)          yes         yes       yes
register a model version           yes                   yes
request a promotion                yes                   yes
approve or reject                              yes       yes
roll back                                      yes       yes
delete runs, collect garbage                             yes
export audit bundles                           yes       yes
manage users, roles, keys                                yes
grant access to labels                                   yes
read sensitive content                                   yes
=========================  ======  ==========  ========  =====

Sensitive content (a label in :data:`~pipetrail.core.classification.SENSITIVE`) is read
by an admin, or by anyone holding an unexpired grant for its label
(:mod:`pipetrail.governance.grants`); ``read`` above covers the ledger and public content.

Whether a roll-back needs an approval on top, and how many distinct approvers a promotion
needs, is policy (``pipetrail.toml``), checked after this table allows the act at all.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from pipetrail.errors import PermissionDeniedError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["PERMISSIONS", "Action", "Role", "authorize", "parse_role", "roles_allowing"]


class Role(enum.StrEnum):
    """A role a user may be granted."""

    VIEWER = "viewer"
    RESEARCHER = "researcher"
    APPROVER = "approver"
    ADMIN = "admin"


class Action(enum.StrEnum):
    """Something a user may be allowed to do."""

    READ = "read"
    RUN = "run"
    ANNOTATE = "annotate"
    DECIDE = "decide"
    REGISTER_MODEL = "register a model version"
    REQUEST_PROMOTION = "request a promotion"
    APPROVE = "approve or reject"
    ROLLBACK = "roll back"
    DELETE = "delete runs, collect garbage"
    EXPORT_AUDIT = "export audit bundles"
    MANAGE_USERS = "manage users, roles, keys"
    GRANT_ACCESS = "grant access to labels"
    READ_SENSITIVE = "read sensitive content"


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.RESEARCHER: frozenset(
        {
            Action.READ,
            Action.RUN,
            Action.ANNOTATE,
            Action.DECIDE,
            Action.REGISTER_MODEL,
            Action.REQUEST_PROMOTION,
        }
    ),
    Role.APPROVER: frozenset(
        {
            Action.READ,
            Action.ANNOTATE,
            Action.DECIDE,
            Action.APPROVE,
            Action.ROLLBACK,
            Action.EXPORT_AUDIT,
        }
    ),
    Role.ADMIN: frozenset(Action),
}


def parse_role(text: str) -> Role:
    """Return the role ``text`` names.

    Raises:
        PermissionDeniedError: not a role; the message lists the roles there are.
    """
    try:
        return Role(text.strip().lower())
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise PermissionDeniedError(f"{text!r} is not a role; the roles are: {known}") from None


def roles_allowing(action: Action) -> list[Role]:
    """The roles whose holders may do ``action``, in the table's order."""
    return [role for role in Role if action in PERMISSIONS[role]]


def authorize(user: str, roles: Iterable[Role], action: Action) -> None:
    """Allow ``action`` for ``user`` holding ``roles``, or refuse it.

    Raises:
        PermissionDeniedError: none of the roles allows it; the message names the user,
            the action, the roles held and the roles needed.
    """
    mine = set(roles)
    if any(action in PERMISSIONS[role] for role in mine):
        return
    held = sorted(mine, key=list(Role).index)  # named in the table's order
    needed = " or ".join(r.value for r in roles_allowing(action))
    has = ", ".join(r.value for r in held) or "no role"
    raise PermissionDeniedError(
        f"{user} may not {action.value}: that needs the role {needed}, and {user} has {has}; "
        f"an admin can grant it with `pipetrail user grant {user} ROLE`"
    )
