"""The ledger contract, run against every metadata backend (SQLite and real PostgreSQL)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from typing import Any

import pytest
import sqlalchemy as sa

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.events import GENESIS_HASH, event_hash
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION, current_revision

pytestmark = pytest.mark.postgres


def _source(i: int, run_id: str = "R1") -> EventDraft:
    return EventDraft(
        EventKind.SOURCE_OBSERVED,
        {
            "run_id": run_id,
            "path": f"data/{i}.csv",
            "digest": "blake3:" + f"{i:064x}",
            "size": i,
            "mtime_ns": i,
            "observed_at": "2026-01-01T00:00:00.000000Z",
        },
        run_id=run_id,
    )


def _filled(url: str, n: int = 10) -> Ledger:
    ledger = Ledger.open(url, actor="tester")
    for i in range(n):
        ledger.append([_source(i)])
    return ledger


def _exec(ledger: Ledger, sql: str, **params: Any) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_append_chains_and_verifies(metadata_url: str) -> None:
    ledger = _filled(metadata_url, 5)
    events = list(ledger.iter_events())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    report = ledger.verify()
    assert report.ok
    assert report.checked == 5
    ledger.close()


def test_batch_append_is_atomic_and_projects(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    ledger.append([_source(1), _source(2), _source(3)])
    assert len(ledger.reader().sources("R1")) == 3
    bad = EventDraft(EventKind.SOURCE_OBSERVED, {"run_id": "R1"}, run_id="R1")  # missing keys
    with pytest.raises(KeyError):
        ledger.append([_source(4), bad])
    # Nothing of the failed batch is left: no event, no projection row.
    assert [e.seq for e in ledger.iter_events()] == [1, 2, 3]
    assert len(ledger.reader().sources("R1")) == 3
    assert ledger.verify().ok
    ledger.close()


def test_schema_is_at_head_revision(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    assert current_revision(ledger.engine) == HEAD_REVISION
    ledger.close()


def test_head_revision_matches_migration_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from pipetrail.ledger.migrate import SCRIPT_LOCATION

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_edited_payload_is_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url)
    payload = json.loads(next(e for e in ledger.iter_events() if e.seq == 4).payload_text)
    payload["size"] = 999
    _exec(
        ledger,
        "UPDATE events SET payload = :p WHERE seq = 4",
        p=json.dumps(payload, sort_keys=True, separators=(",", ":")),
    )
    report = ledger.verify()
    assert not report.ok
    assert report.first_bad_seq == 4
    assert "edited" in report.reason
    ledger.close()


def test_edited_row_with_recomputed_hash_is_detected(metadata_url: str) -> None:
    """An attacker who recomputes the edited row's own hash still breaks the next link."""
    ledger = _filled(metadata_url)
    ev = next(e for e in ledger.iter_events() if e.seq == 6)
    forged = ev.payload_text.replace('"size":5', '"size":50')
    assert forged != ev.payload_text
    new_hash = event_hash(
        seq=6,
        ts=ev.ts,
        actor=ev.actor,
        kind=ev.kind,
        run_id=ev.run_id,
        payload_text=forged,
        prev_hash=ev.prev_hash,
    )
    _exec(ledger, "UPDATE events SET payload = :p, hash = :h WHERE seq = 6", p=forged, h=new_hash)
    report = ledger.verify()
    assert report.first_bad_seq == 7
    ledger.close()


def test_deleted_row_is_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url)
    _exec(ledger, "DELETE FROM events WHERE seq = 5")
    report = ledger.verify()
    assert report.first_bad_seq == 5
    assert "missing" in report.reason
    ledger.close()


def test_deleted_tail_is_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url)
    _exec(ledger, "DELETE FROM events WHERE seq >= 9")
    report = ledger.verify()
    assert not report.ok
    assert report.first_bad_seq == 9
    ledger.close()


def test_inserted_row_is_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url, 6)
    # Shift events 4.. up by one and insert a forged event 4 in the gap.
    _exec(ledger, "UPDATE events SET seq = seq + 100 WHERE seq >= 4")
    _exec(ledger, "UPDATE events SET seq = seq - 99 WHERE seq >= 100")
    ev3 = next(e for e in ledger.iter_events() if e.seq == 3)
    forged_hash = event_hash(
        seq=4,
        ts=ev3.ts,
        actor="mallory",
        kind="source.observed",
        run_id="R1",
        payload_text="{}",
        prev_hash=ev3.hash,
    )
    _exec(
        ledger,
        "INSERT INTO events (seq, ts, actor, kind, run_id, payload, prev_hash, hash) "
        "VALUES (4, :ts, 'mallory', 'source.observed', 'R1', '{}', :prev, :h)",
        ts=ev3.ts,
        prev=ev3.hash,
        h=forged_hash,
    )
    report = ledger.verify()
    assert report.first_bad_seq == 5  # the original event 4, now at 5, no longer links
    ledger.close()


def test_reordered_rows_are_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url)
    _exec(ledger, "UPDATE events SET seq = 1000 WHERE seq = 3")
    _exec(ledger, "UPDATE events SET seq = 3 WHERE seq = 7")
    _exec(ledger, "UPDATE events SET seq = 7 WHERE seq = 1000")
    report = ledger.verify()
    assert report.first_bad_seq == 3
    ledger.close()


def test_rebuild_projections_gives_the_same_rows(metadata_url: str) -> None:
    ledger = _filled(metadata_url, 7)
    before = ledger.reader().sources("R1")
    report = ledger.rebuild_projections()
    assert (report.events, report.rows, report.changed) == (7, 7, ())
    assert ledger.reader().sources("R1") == before
    assert ledger.verify().ok
    ledger.close()


def _append_many(url: str, worker: int, count: int) -> None:
    ledger = Ledger.open(url, actor=f"worker-{worker}")
    for i in range(count):
        ledger.append([_source(worker * 1000 + i, run_id=f"W{worker}")])
    ledger.close()


def test_concurrent_appends_from_processes_keep_the_chain(metadata_url: str) -> None:
    Ledger.open(metadata_url, actor="setup").close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(metadata_url, w, 40)) for w in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    ledger = Ledger.open(metadata_url, actor="checker")
    report = ledger.verify()
    assert report.ok, report
    assert report.checked == 120
    for w in range(3):
        assert len(ledger.reader().sources(f"W{w}")) == 40
    ledger.close()


def test_migrations_create_exactly_the_schema_module(metadata_url: str) -> None:
    """A change to pipetrail.ledger.schema without a migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from pipetrail.ledger.schema import metadata

    ledger = Ledger.open(metadata_url, actor="tester")
    with ledger.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    ledger.close()
    assert diffs == []
