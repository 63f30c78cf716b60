"""Choosing a reader for a metadata URL without paying for what a command does not need."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from pipetrail.errors import LedgerError
from pipetrail.ledger.queries import DriverReader, Reader, SqliteReader

__all__ = ["DEFAULT_LOCK_TIMEOUT", "open_reader", "sqlite_target"]

DEFAULT_LOCK_TIMEOUT = 60.0
_SQLITE = "sqlite:///"


def sqlite_target(url: str) -> tuple[Path, float] | None:
    """Return ``(database file, lock timeout in seconds)`` for a SQLite file URL, else None.

    The URL may end in ``?timeout=SECONDS``: how long to wait for a lock another process
    holds before giving up (default 60).

    Raises:
        LedgerError: the URL carries an option other than a valid ``timeout``.
    """
    if not url.startswith(_SQLITE) or ":memory:" in url:
        return None
    rest, _, query = url[len(_SQLITE) :].partition("?")
    timeout = DEFAULT_LOCK_TIMEOUT
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name != "timeout":
            raise LedgerError(
                f"metadata URL {url!r}: unknown option {name!r}; a SQLite URL accepts only "
                "?timeout=SECONDS"
            )
        try:
            timeout = float(value)
        except ValueError:
            timeout = -1.0
        if not 0 <= timeout < 86400:
            raise LedgerError(
                f"metadata URL {url!r}: timeout must be a number of seconds (0 to 86400), "
                f"not {value!r}"
            )
    return Path(rest), timeout


def open_reader(url: str) -> Reader:
    """Return the cheapest reader for a metadata URL.

    SQLite files are read through the stdlib ``sqlite3`` module (no SQLAlchemy import);
    other backends open a :class:`~pipetrail.ledger.ledger.Ledger`, which the returned
    reader closes with itself.

    Raises:
        LedgerError: the store cannot be reached (one line: what, where, how to fix).
    """
    target = sqlite_target(url)
    if target is not None:
        return SqliteReader(target[0], timeout=target[1])
    from pipetrail.ledger.ledger import Ledger

    ledger = Ledger.open(url, actor="reader")
    return DriverReader(lambda: ledger.db, url, owner=ledger)
