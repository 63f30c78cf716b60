"""The page size of SQLite ledgers: new ones take the larger size, old ones keep theirs."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import SQLITE_PAGE_SIZE, Ledger

if TYPE_CHECKING:
    from pathlib import Path


def _pragma(path: Path, name: str) -> object:
    connection = sqlite3.connect(str(path))
    try:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        connection.close()


def _note(i: int) -> EventDraft:
    return EventDraft(EventKind.ALERT_SENT, {"rule": f"r{i}"})


def test_a_new_ledger_has_the_larger_pages_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(f"sqlite:///{path}", actor="tester") as ledger:
        ledger.append([_note(1)])
    assert SQLITE_PAGE_SIZE > 4096
    assert _pragma(path, "page_size") == SQLITE_PAGE_SIZE
    assert _pragma(path, "journal_mode") == "wal"


def test_a_ledger_made_with_other_pages_keeps_them_and_works(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    connection = sqlite3.connect(str(path), isolation_level=None)
    connection.execute("PRAGMA page_size=4096")
    connection.execute("PRAGMA journal_mode=WAL")  # fixes the page size, as older versions did
    connection.close()
    with Ledger.open(f"sqlite:///{path}", actor="tester") as ledger:
        ledger.append([_note(1), _note(2)])
    with Ledger.open(f"sqlite:///{path}", actor="tester") as ledger:
        ledger.append([_note(3)])
        assert [e.seq for e in ledger.iter_events()] == [1, 2, 3]
        assert ledger.verify().ok
    assert _pragma(path, "page_size") == 4096
