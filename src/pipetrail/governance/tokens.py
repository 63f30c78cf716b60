"""API tokens for the server: issued to a recorded user, stored as digests, expiring, revocable.

A token is ``ptk_`` + a 12-hex-digit token id + ``_`` + 43 characters of base64url secret
(256 random bits). The ledger's database keeps the token id, the BLAKE3 digest of the
whole token, its owner, who issued it, when it expires and whether it was revoked
(:mod:`pipetrail.ledger.api_tokens`); the token itself is printed once and never stored.
A token carries no roles: each request is authorized by the roles the governance events
give its owner at that moment, so revoking a role takes effect on the next request.

Who may do what: an admin issues, lists and revokes anyone's tokens; any other recorded
user issues, lists and revokes their own. The acting identity proves itself by loading
its signing key (as for every governance act), so a name in ``$PIPETRAIL_USER`` alone
issues nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import format_ts, utcnow
from pipetrail.errors import GovernanceError, IdentityError, NotFoundError, PermissionDeniedError
from pipetrail.hashing import digest_bytes
from pipetrail.ledger.api_tokens import (
    find_token,
    insert_token,
    list_tokens,
    mark_revoked,
    token_by_id,
)

if TYPE_CHECKING:
    from pipetrail.governance.service import Governance
    from pipetrail.governance.state import GovernanceState
    from pipetrail.ledger.queries import Reader

__all__ = [
    "DEFAULT_EXPIRY",
    "IssuedToken",
    "MAX_EXPIRY",
    "TokenRecord",
    "check_token",
    "issue_token",
    "parse_expiry",
    "revoke_token",
    "token_records",
]

TOKEN_PREFIX = "ptk_"  # noqa: S105 - a format marker, not a secret
DEFAULT_EXPIRY = "30d"
MAX_EXPIRY = dt.timedelta(days=366)
_TOKEN = re.compile(r"ptk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_TOKEN_ID = re.compile(r"[0-9a-f]{12}")
_EXPIRY = re.compile(r"(\d{1,4})([hdw])")
_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued: the only time the token text exists outside its holder."""

    token: str
    token_id: str
    user: str
    expires_at: str


@dataclass(frozen=True)
class TokenRecord:
    """What is recorded of a token (never the token itself)."""

    token_id: str
    user: str
    label: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    revoked_by: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TokenRecord:
        """The record of one ``api_tokens`` row."""
        return cls(
            token_id=str(row["token_id"]),
            user=str(row["user_name"]),
            label=str(row["label"]),
            created_at=str(row["created_at"]),
            created_by=str(row["created_by"]),
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            revoked_by=row["revoked_by"],
        )

    def status(self, now: str | None = None) -> str:
        """``active``, ``expired`` or ``revoked`` (at ``now``, ISO text; default: now)."""
        if self.revoked_at is not None:
            return "revoked"
        moment = now or format_ts(utcnow())
        if self.expires_at is not None and self.expires_at <= moment:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields, with the status now."""
        return {
            "token_id": self.token_id,
            "user": self.user,
            "label": self.label,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "status": self.status(),
        }


def parse_expiry(text: str) -> dt.timedelta:
    """How long a token lives: ``12h``, ``30d``, ``8w`` (at most 366 days).

    Raises:
        GovernanceError: not such a duration, zero, or longer than the maximum.
    """
    found = _EXPIRY.fullmatch(text.strip().lower())
    if found is None or int(found.group(1)) == 0:
        raise GovernanceError(
            f"{text!r} is not a token lifetime: write a whole number and h, d or w "
            "(for example 12h, 30d or 8w)"
        )
    span = int(found.group(1)) * _UNITS[found.group(2)]
    if span > MAX_EXPIRY:
        raise GovernanceError(
            f"a token lives at most {MAX_EXPIRY.days} days, not {text!r}; issue a new one "
            "before it expires"
        )
    return span


def _token_digest(token: str) -> str:
    return digest_bytes(token.encode("ascii"))


def _is_admin(state: GovernanceState, user: str) -> bool:
    found = state.users.get(user)
    return found is not None and any(role.value == "admin" for role in found.roles)


def _may_manage(gov: Governance, state: GovernanceState, owner: str, verb: str) -> None:
    gov.signer  # noqa: B018 - the acting identity proves itself by loading its key
    if gov.user not in state.users:
        raise IdentityError(
            f"{gov.user!r} is not a user of this project; an admin adds users with "
            "`pipetrail user add`"
        )
    if owner != gov.user and not _is_admin(state, gov.user):
        raise PermissionDeniedError(
            f"{gov.user} may not {verb} tokens of {owner}: only their owner or an admin may"
        )


def issue_token(
    gov: Governance, user: str, *, expires: str = DEFAULT_EXPIRY, label: str = ""
) -> IssuedToken:
    """Issue a token for the recorded user ``user``, valid for ``expires``.

    Raises:
        IdentityError: the acting identity has no usable key or is not a user, or
            ``user`` is not a user.
        PermissionDeniedError: a non-admin issuing for someone else.
        GovernanceError: a malformed lifetime or label.
    """
    span = parse_expiry(expires)
    if len(label) > 200 or "\n" in label:
        raise GovernanceError("a token label is one line of at most 200 characters")
    state = gov.state()
    _may_manage(gov, state, user, "issue")
    if user not in state.users:
        raise IdentityError(
            f"{user!r} is not a user of this project; add them first with `pipetrail user add`"
        )
    token_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    expires_at = format_ts(now + span)
    insert_token(
        gov.project.ledger.db,
        {
            "token_id": token_id,
            "digest": _token_digest(token),
            "user_name": user,
            "label": label,
            "created_at": format_ts(now),
            "created_by": gov.user,
            "expires_at": expires_at,
        },
    )
    return IssuedToken(token, token_id, user, expires_at)


def token_records(gov: Governance, user: str | None = None) -> list[TokenRecord]:
    """The tokens an admin may see (all, or ``user``'s), or the acting user's own."""
    state = gov.state()
    owner = user or (None if _is_admin(state, gov.user) else gov.user)
    _may_manage(gov, state, owner or gov.user, "list")
    return [TokenRecord.from_row(row) for row in list_tokens(gov.project.reader(), owner)]


def revoke_token(gov: Governance, token_id: str) -> TokenRecord:
    """Revoke the token ``token_id`` (its owner or an admin); it is refused from then on.

    Raises:
        NotFoundError: no such token.
        PermissionDeniedError: someone else's token, and the actor is not an admin.
    """
    token_id = token_id.strip().removeprefix(TOKEN_PREFIX)[:12]
    found = token_by_id(gov.project.reader(), token_id) if _TOKEN_ID.fullmatch(token_id) else None
    if found is None:
        raise NotFoundError(f"there is no token {token_id!r}; `pipetrail token list` lists them")
    _may_manage(gov, gov.state(), str(found["user_name"]), "revoke")
    row = mark_revoked(gov.project.ledger.db, token_id, by=gov.user, at=format_ts(utcnow()))
    if row is None:  # pragma: no cover - deleted between the two reads; rows never are
        raise NotFoundError(f"there is no token {token_id!r}")
    return TokenRecord.from_row(row)


def check_token(reader: Reader, token: str) -> TokenRecord:
    """The record of ``token`` when it is accepted now.

    Raises:
        IdentityError: the token is malformed, unknown, expired or revoked (the message
            says which, never echoing the token).
    """
    if not _TOKEN.fullmatch(token):
        raise IdentityError("the token is malformed: a pipetrail token starts with 'ptk_'")
    row = find_token(reader, _token_digest(token))
    if row is None:
        raise IdentityError("the token is not known to this project")
    record = TokenRecord.from_row(row)
    status = record.status()
    if status != "active":
        raise IdentityError(
            f"token {record.token_id} of {record.user} is {status}; ask for a new one "
            "(`pipetrail token create`)"
        )
    return record
