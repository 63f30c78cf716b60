"""Choosing a reader for a metadata URL without paying for what a command does not need."""

from __future__ import annotations

from pathlib import Path

from pipetrail.ledger.queries import DriverReader, Reader, SqliteReader

__all__ = ["open_reader"]


def open_reader(url: str) -> Reader:
    """Return the cheapest reader for a metadata URL.

    SQLite files are read through the stdlib ``sqlite3`` module (no SQLAlchemy import);
    other backends open a :class:`~pipetrail.ledger.ledger.Ledger`, which the returned
    reader closes with itself.
    """
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return SqliteReader(Path(url[len("sqlite:///") :]))
    from pipetrail.ledger.ledger import Ledger

    ledger = Ledger.open(url, actor="reader")
    return DriverReader(ledger.db, url, owner=ledger)
