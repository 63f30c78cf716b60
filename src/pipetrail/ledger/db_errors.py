"""Database errors, translated at the ledger's boundary into one-line LedgerErrors.

Every exception a DB-API driver (stdlib ``sqlite3``, psycopg) or SQLAlchemy raises while
the ledger or a reader talks to the database becomes a :class:`~pipetrail.errors.LedgerError`
whose message fits on one line and says what is wrong with which store and how to fix it:
a damaged file, a lock held by another process, a server that cannot be reached, a
missing or damaged schema. The CLI maps LedgerError to exit code 4.

SQLAlchemy and psycopg are recognised without importing them (that costs start-up).
"""

from __future__ import annotations

import sqlite3
import sys
from typing import TYPE_CHECKING, NoReturn

from pipetrail.config import redact_url
from pipetrail.errors import LedgerError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["is_database_error", "ledger_error", "mapped_errors", "raise_ledger_error"]

_CHECK_URL = "check the URL in pipetrail.toml (or PIPETRAIL_METADATA)"

# (words in the driver's message, what happened, how to fix it); the first match wins.
_KNOWN: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("file is not a database", "malformed", "file is encrypted", "disk i/o error"),
        "is damaged or is not a SQLite database",
        "restore the file from a backup, or move it away to start an empty ledger",
    ),
    (
        ("database is locked", "database table is locked", "lock timeout"),
        "is locked by another process",
        "wait for the other pipetrail command to finish, or stop the process holding the "
        "lock, then try again",
    ),
    (
        ("password authentication failed", "permission denied", "no pg_hba.conf entry"),
        "refused access",
        f"check the user and password in the URL and the database's grants; {_CHECK_URL}",
    ),
    (
        ("connection refused", "could not connect", "connection failed", "timeout expired",
         "could not translate host name", "name or service not known", "server closed",
         "connection is closed", "connection timed out"),
        "cannot be reached",
        f"check that the database server is running and {_CHECK_URL}",
    ),
    (
        ("no such table", "no such column", "does not exist", "has no column"),
        "has a missing or damaged schema",
        "restore the database from a backup, or point pipetrail at the right one "
        f"({_CHECK_URL})",
    ),
    (
        ("unable to open database file",),
        "cannot be opened",
        "check that its folder exists and that you may read and write it",
    ),
    (
        ("readonly database", "read-only"),
        "is read-only",
        "check the permissions of the database file and its folder",
    ),
)  # fmt: skip


def is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the database driver or SQLAlchemy."""
    if isinstance(exc, sqlite3.Error):
        return True
    # SQLAlchemy and psycopg are checked only if loaded: importing them costs start-up.
    if type(exc).__module__.startswith("psycopg"):
        return True
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip()
    for line in message.splitlines():
        if line.strip():
            return line.strip().rstrip(".")
    return type(exc).__name__


def ledger_error(url: str, exc: BaseException) -> LedgerError:
    """Return the one-line LedgerError for a database exception raised on ``url``."""
    detail = _first_line(exc)
    where = redact_url(url)
    lowered = detail.lower()
    for words, what, fix in _KNOWN:
        if any(word in lowered for word in words):
            return LedgerError(f"metadata store {where} {what} ({detail}); {fix}")
    return LedgerError(
        f"metadata store {where} failed: {detail}; check that the database is reachable "
        f"and undamaged, and {_CHECK_URL}"
    )


def raise_ledger_error(url: str, exc: BaseException) -> NoReturn:
    """Raise :func:`ledger_error` for ``exc``, chained to it."""
    raise ledger_error(url, exc) from exc


class mapped_errors:
    """Translate database exceptions raised inside into LedgerError (others pass).

    A class rather than a generator: every append enters it.
    """

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        self._url = url

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, Exception) and is_database_error(exc):
            raise_ledger_error(self._url, exc)
