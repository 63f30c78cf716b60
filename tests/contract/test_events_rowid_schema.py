"""Migration 0009 on both backends: a store at 0008 holding runs is upgraded on open.

On SQLite ``events.seq`` becomes the rowid (``INTEGER PRIMARY KEY``); on both backends the
unique index on ``events.hash`` goes and the step runs' pipeline index leads with the step.
Every event is kept as it was, the chain and every derived row verify, and a cache lookup
(the query that reads an event by its seq) still finds and trusts its step run.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa

from pipetrail.errors import TamperedLedgerError
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION, current_revision
from tests.support.ledger_schema import downgrade, step_event

pytestmark = pytest.mark.postgres

_KEY = "blake3:" + "k" * 64
_CLOSING = {
    "inputs": {},
    "outputs": {"out": "blake3:" + "a" * 64},
    "output_formats": {"out": {"format": "json", "type": "builtins.int"}},
    "resources": {"wall_ns": 5},
    "cache_key": _KEY,
}


def _step(kind: EventKind, step_run_id: str, run_id: str, **extra: Any) -> EventDraft:
    return step_event(kind, step_run_id, run_id=run_id, node_id="train", closing=_CLOSING, **extra)


def _fill(ledger: Ledger) -> None:
    for n in range(1, 4):
        run_id, step_run_id = f"R{n}", f"S{n}"
        ledger.append([_step(EventKind.STEP_STARTED, step_run_id, run_id)])
        ledger.append([_step(EventKind.STEP_COMPLETED, step_run_id, run_id, decision="miss")])


def _events(ledger: Ledger) -> list[tuple[Any, ...]]:
    return ledger.db.rows("SELECT * FROM events ORDER BY seq")


def _shape(ledger: Ledger) -> tuple[bool, set[str]]:
    """Whether ``events.hash`` is unique, and the names of the step runs' indexes."""
    inspector = sa.inspect(ledger.engine)
    unique = any(c["column_names"] == ["hash"] for c in inspector.get_unique_constraints("events"))
    unique = unique or any(
        ix["unique"] and ix["column_names"] == ["hash"] for ix in inspector.get_indexes("events")
    )
    return unique, {str(ix["name"]) for ix in inspector.get_indexes("step_runs")}


def _sqlite_path(url: str) -> str | None:
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None


def _seq_is_rowid(path: str) -> bool:
    with sqlite3.connect(path) as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT ts FROM events WHERE seq = 2").fetchall()
    return "INTEGER PRIMARY KEY" in " ".join(str(row[-1]) for row in plan)


def test_a_store_at_0008_is_upgraded_keeping_every_event(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    _fill(ledger)
    downgrade(ledger, "0008")
    assert current_revision(ledger.engine) == "0008"
    before = _events(ledger)
    unique, indexes = _shape(ledger)
    assert unique
    assert "ix_step_runs_pipeline_node" in indexes
    path = _sqlite_path(metadata_url)
    if path is not None:
        assert not _seq_is_rowid(path)
    ledger.close()

    ledger = Ledger.open(metadata_url, actor="tester")  # upgrades on open
    try:
        assert current_revision(ledger.engine) == HEAD_REVISION
        assert _events(ledger) == before
        unique, indexes = _shape(ledger)
        assert not unique
        assert "ix_step_runs_pipeline_step" in indexes
        assert "ix_step_runs_pipeline_node" not in indexes
        index_names = {ix["name"] for ix in sa.inspect(ledger.engine).get_indexes("events")}
        assert {"ix_events_run_id", "ix_events_kind"} <= index_names
        if path is not None:
            assert _seq_is_rowid(path)
        report = ledger.verify()
        assert report.ok, report
        assert report.checked == len(before)
        # The newest step run with the key, its closing event read by seq and trusted.
        found = ledger.reader().cache_lookup(_KEY)
        assert found is not None
        assert found["step_run_id"] == "S3"
        assert found["output_formats"] == {"out": {"format": "json", "type": "builtins.int"}}
        # Appending goes on from the head; the chain still links.
        _fill(ledger)
        assert ledger.verify().ok
    finally:
        ledger.close()


def test_an_edited_event_is_still_caught_by_the_lookup_after_the_upgrade(
    metadata_url: str,
) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    _fill(ledger)
    downgrade(ledger, "0008")
    ledger.close()
    ledger = Ledger.open(metadata_url, actor="tester")
    try:
        seq = ledger.db.rows("SELECT last_seq FROM step_runs WHERE step_run_id = 'S3'")[0][0]
        with ledger.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE events SET ts = :t WHERE seq = :s"),
                {"t": "2030-01-01T00:00:00.000000Z", "s": seq},
            )
        with pytest.raises(TamperedLedgerError, match="was edited"):
            ledger.reader().cache_lookup(_KEY)
    finally:
        ledger.close()


def test_a_store_at_0009_goes_back_to_0008(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    _fill(ledger)
    before = _events(ledger)
    downgrade(ledger, "0008")
    assert _events(ledger) == before
    unique, indexes = _shape(ledger)
    assert unique
    assert "ix_step_runs_pipeline_node" in indexes
    assert ledger.verify().ok
    ledger.close()


def test_a_lookup_takes_a_row_whose_json_reads_the_same_and_refuses_an_edited_one(
    metadata_url: str,
) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    try:
        _fill(ledger)
        with ledger.engine.begin() as conn:  # the same value in another encoding
            conn.execute(
                sa.text("UPDATE step_runs SET resources = :r WHERE step_run_id = 'S3'"),
                {"r": '{ "wall_ns" : 5 }'},
            )
        found = ledger.reader().cache_lookup(_KEY)
        assert found is not None
        assert (found["step_run_id"], found["resources"]) == ("S3", {"wall_ns": 5})
        with ledger.engine.begin() as conn:
            conn.execute(sa.text("UPDATE step_runs SET seed = 8 WHERE step_run_id = 'S3'"))
        with pytest.raises(TamperedLedgerError, match=r"step_runs\[S3\]: seed is 8"):
            ledger.reader().cache_lookup(_KEY)
    finally:
        ledger.close()
