"""Access grants: leave for one user to read sensitive content of one label.

A grant is a signed governance act (``access.granted``), made by an admin only, naming
the user, the label, the purpose and optionally the last day it holds (``until``, an
ISO date, UTC); ``access.revoked`` ends every open grant of a user for a label. Both are
folded with the other governance events (:mod:`pipetrail.governance.rules` dispatches
them here), so a grant cannot be added or stretched by editing the database.

Who may read sensitive content is decided by :func:`read_basis`: an admin (the role
table's ``read sensitive content``), or a user holding an open grant for the label. See
docs/data-handling.md, "Grants".
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from pipetrail.core.classification import SENSITIVE, validate_label
from pipetrail.errors import DefinitionError, GovernanceError, IdentityError
from pipetrail.governance.roles import Action, Role, authorize
from pipetrail.governance.state import Grant

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.governance.state import GovernanceState, User
    from pipetrail.ledger.events import Event

__all__ = ["GRANT_HANDLERS", "check_grant_label", "check_until", "open_grants", "read_basis"]


def check_grant_label(label: str) -> str:
    """Return ``label`` when a grant can name it: a known, sensitive label.

    Raises:
        GovernanceError: an unknown label, or one whose content needs no grant.
    """
    try:
        validate_label(label, "a grant")
    except DefinitionError as exc:  # reworded as a governance refusal
        raise GovernanceError(str(exc)) from None
    if label not in SENSITIVE:
        needs = ", ".join(sorted(SENSITIVE))
        raise GovernanceError(
            f"content labelled {label!r} is not sensitive and needs no grant; grants are for "
            f"the labels {needs}"
        )
    return label


def check_until(text: str | None) -> str | None:
    """Return ``text`` as an ISO date (``YYYY-MM-DD``), or None for no end.

    Raises:
        GovernanceError: not a date.
    """
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise GovernanceError(
            f"--until {text!r} is not a date; write YYYY-MM-DD (the grant holds through that "
            "day, UTC)"
        ) from None


def open_grants(state: GovernanceState, user: str, label: str, today: str) -> list[Grant]:
    """The grants that let ``user`` read ``label`` content on ``today``, oldest first."""
    return [
        g for g in state.grants.values() if g.user == user and g.label == label and g.active(today)
    ]


def read_basis(state: GovernanceState, user: str, label: str, today: str) -> Grant | Role | None:
    """What lets ``user`` read content labelled ``label`` on ``today``, or None.

    The admin role first, then the newest open grant for the label.
    """
    found = state.users.get(user)
    if found is None:
        return None
    if Role.ADMIN in found.roles:
        return Role.ADMIN
    grants = open_grants(state, user, label, today)
    return grants[-1] if grants else None


def _admin(signer: User | None) -> User:
    if signer is None:
        raise IdentityError("only the first admin may sign before being added")
    authorize(signer.name, signer.roles, Action.GRANT_ACCESS)
    return signer


def _subject(state: GovernanceState, p: dict[str, Any]) -> str:
    name = str(p.get("user", ""))
    if name not in state.users:
        raise IdentityError(
            f"{name!r} is not a user of this project; add them first with "
            f"`pipetrail user add {name} --key PUBLIC_KEY`"
        )
    return name


def _granted(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    actor = _admin(signer)
    user = _subject(state, p)
    label = check_grant_label(str(p.get("label", "")))
    purpose = p.get("purpose")
    if not isinstance(purpose, str) or not purpose.strip():
        raise GovernanceError("a grant needs a purpose (--purpose TEXT): why the data is read")
    until = p.get("until")
    if until is not None and check_until(str(until)) != until:
        raise GovernanceError(f"the grant's end {until!r} is not a date (YYYY-MM-DD)")
    grant_id = str(p.get("grant_id") or "")
    if not grant_id or grant_id in state.grants:
        raise GovernanceError(f"grant id {grant_id!r} is empty or used already")
    state.grants[grant_id] = Grant(grant_id, user, label, purpose, until, actor.name, ev.ts, ev.seq)


def _revoked(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    _admin(signer)
    user = _subject(state, p)
    label = str(p.get("label", ""))
    found = [
        g
        for g in state.grants.values()
        if g.user == user and g.label == label and g.revoked_seq is None
    ]
    if not found:
        raise GovernanceError(f"{user} holds no grant for {label!r} to revoke")
    for grant in found:
        grant.revoked_seq = ev.seq


GRANT_HANDLERS: dict[str, Callable[[GovernanceState, Event, dict[str, Any], User | None], None]] = {
    "access.granted": _granted,
    "access.revoked": _revoked,
}
