"""``audit verify`` on a SQLite ledger whose rows were edited into other storage types.

SQLite keeps whatever type a statement stores, whatever the column says: a field can be
rewritten as a BLOB of the very same bytes, or the sequence number as a REAL. pipetrail
never writes such a row, so the walk reports it as edited, at its sequence number, and
never stops with an error.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def _ledger(tmp_path: Path, n: int = 40) -> tuple[Ledger, Path]:
    db = tmp_path / "ledger.db"
    ledger = Ledger.open(f"sqlite:///{db}", actor="tester")
    for i in range(n):
        payload = {"run_id": "R1", "path": f"d/{i}", "digest": f"blake3:{i:064x}", "size": i,
                   "mtime_ns": i, "observed_at": "2026-01-01T00:00:00.000000Z"}  # fmt: skip
        ledger.append([EventDraft(EventKind.SOURCE_OBSERVED, payload, run_id="R1")])
    return ledger, db


@pytest.mark.parametrize(
    ("column", "cast"),
    [("actor", "BLOB"), ("payload", "BLOB"), ("ts", "BLOB"), ("run_id", "BLOB")],
)
def test_a_field_stored_as_another_type_is_an_edited_row(
    tmp_path: Path, column: str, cast: str
) -> None:
    ledger, db = _ledger(tmp_path)
    assert ledger.verify().ok
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE events SET {column} = CAST({column} AS BLOB) WHERE seq = 17")  # noqa: S608
        kind = conn.execute(f"SELECT typeof({column}) FROM events WHERE rowid = 17").fetchone()  # noqa: S608
    assert kind == (cast.lower(),)
    report = ledger.verify()
    assert not report.ok
    assert report.first_bad_seq == 17
    assert "edited" in report.reason or "missing" in report.reason
    assert report.checked == 16
    ledger.close()


def test_a_sequence_number_that_is_not_an_integer_cannot_be_stored(tmp_path: Path) -> None:
    # On SQLite `events.seq` is the rowid (schema 0009): the database itself refuses a
    # sequence number that is not a whole number, so no such row can reach a verifier.
    ledger, db = _ledger(tmp_path)
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.DatabaseError, match="mismatch"):
        conn.execute("UPDATE events SET seq = 17.5 WHERE seq = 17")
    assert ledger.verify().ok
    ledger.close()
