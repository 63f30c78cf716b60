"""The server's API tokens: rows keyed by the token's digest, never the token itself.

The ``api_tokens`` table (migration 0007, docs/adr/0024) is not derived from the events:
it is the list of credentials the server accepts, in the ledger's database so that every
server worker sees a new or revoked token at once. Only digests are stored; a token is
shown once, when it is issued (:mod:`pipetrail.governance.tokens`). Imports only the
ledger's own modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetrail.ledger.driver import Driver
    from pipetrail.ledger.queries import Reader

__all__ = ["find_token", "insert_token", "list_tokens", "mark_revoked", "token_by_id"]

_COLUMNS = (
    "token_id, digest, user_name, label, created_at, created_by, expires_at, revoked_at, revoked_by"
)
_VALUES = ":token_id, :digest, :user_name, :label, :created_at, :created_by, :expires_at"
_INSERT = f"INSERT INTO api_tokens ({_COLUMNS}) VALUES ({_VALUES}, NULL, NULL)"  # noqa: S608
_BY_DIGEST = f"SELECT {_COLUMNS} FROM api_tokens WHERE digest = :d"  # noqa: S608 - constants
_BY_ID = f"SELECT {_COLUMNS} FROM api_tokens WHERE token_id = :t"  # noqa: S608 - constants
_ALL = f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at, token_id"  # noqa: S608
_OF_USER = (
    f"SELECT {_COLUMNS} FROM api_tokens WHERE user_name = :u "  # noqa: S608 - constants
    "ORDER BY created_at, token_id"
)
_REVOKE = (
    "UPDATE api_tokens SET revoked_at = :at, revoked_by = :by "
    "WHERE token_id = :t AND revoked_at IS NULL"
)


def insert_token(db: Driver, row: dict[str, Any]) -> None:
    """Record a new token (its digest and owner) in one write transaction."""
    with db.write():
        db.execute(_INSERT, row)


def find_token(reader: Reader, digest: str) -> dict[str, Any] | None:
    """The row of the token whose digest is ``digest``, or None."""
    rows = reader.fetch(_BY_DIGEST, {"d": digest})
    return dict(rows[0]) if rows else None


def token_by_id(reader: Reader, token_id: str) -> dict[str, Any] | None:
    """The row of the token ``token_id``, or None."""
    rows = reader.fetch(_BY_ID, {"t": token_id})
    return dict(rows[0]) if rows else None


def list_tokens(reader: Reader, user: str | None = None) -> list[dict[str, Any]]:
    """Every token's row (never a token), oldest first; only ``user``'s when given."""
    rows = reader.fetch(_ALL) if user is None else reader.fetch(_OF_USER, {"u": user})
    return [dict(row) for row in rows]


def mark_revoked(db: Driver, token_id: str, *, by: str, at: str) -> dict[str, Any] | None:
    """Revoke a token (once: a revoked token keeps its first revocation).

    Returns:
        The token's row after the change, or None when there is no such token.
    """
    with db.write():
        rows = db.fetch(_BY_ID, {"t": token_id})
        if not rows:
            return None
        db.execute(_REVOKE, {"t": token_id, "by": by, "at": at})
        return dict(db.fetch(_BY_ID, {"t": token_id})[0])
