"""One append's events are projected statement by statement, as one by one would leave them.

:mod:`pipetrail.ledger.projection_batch` groups the rows of a batch by statement; the
tables must end as event-by-event projection (what ``audit verify`` replays) leaves them,
on SQLite and PostgreSQL, and batches it cannot reorder safely fall back to one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.postgres

RUN = "R1"
TS = "2026-01-01T00:00:00.000000Z"


def _started(run_id: str = RUN) -> EventDraft:
    payload = {
        "run_id": run_id,
        "pipeline": "p",
        "pipeline_fingerprint": "blake3:" + "1" * 64,
        "owner": "me",
        "host": "h",
        "process": "1:1",
        "params": {"a": 1, "b": 2.5, "c": "x"},
        "seed": 0,
        "git": None,
        "environment": None,
        "started_at": TS,
        "steps_total": 4,
        "tags": {"stage": "t"},
    }
    return EventDraft(EventKind.RUN_STARTED, payload, run_id=run_id)


def _step(kind: EventKind, sid: str, **extra: Any) -> EventDraft:
    payload = {
        "run_id": RUN,
        "step_run_id": sid,
        "node_id": f"n{sid}",
        "step": "s",
        "pipeline": "p",
        "started_at": TS,
        **extra,
    }
    return EventDraft(kind, payload, run_id=RUN)


def _closed(sid: str, kind: EventKind = EventKind.STEP_COMPLETED, **extra: Any) -> EventDraft:
    fields: dict[str, Any] = {
        "cache_key": "blake3:" + sid * 64,
        "decision": "miss",
        "components": {"code": "c", "nested": {"x": [1, 2.5, None]}},
        "inputs": {"data": "blake3:" + "a" * 64},
        "outputs": {"output": "blake3:" + "b" * 64},
        "resources": {"wall_ns": 5},
        "ended_at": TS,
    }
    fields.update(extra)
    return _step(kind, sid, **fields)


def _artifact(i: int) -> EventDraft:
    payload = {
        "digest": "blake3:" + f"{i:064x}",
        "blob": "blake3:" + f"{i:064x}",
        "serializer": "json",
        "type_name": "builtins.int",
        "size": i,
        "meta": {"i": i},
        "role": "output",
        "run_id": RUN,
        "step_run_id": None,
    }
    return EventDraft(EventKind.ARTIFACT_RECORDED, payload, run_id=RUN)


def _run_batch() -> list[EventDraft]:
    """A run's events: a completed step with metrics, hits, a failure, and a failed end."""
    return [
        _started(),
        _artifact(1),
        _artifact(1),  # recorded twice in one batch: the first one wins
        _step(EventKind.STEP_STARTED, "1"),
        _closed("1", output_metrics={"acc": 0.5, "loss": 2}, metrics={"lr": {"last": 0.1}}),
        # A hit reusing step run 1, logging one name of its own.
        _closed(
            "2",
            EventKind.STEP_CACHED,
            decision="hit",
            reused_step_run_id="1",
            metrics={"acc": {"last": 0.9}},
        ),
        _closed("3", EventKind.STEP_CACHED, decision="hit", reused_step_run_id="1"),
        _step(EventKind.STEP_STARTED, "4"),
        _closed("4", EventKind.STEP_FAILED, error="boom", outputs={}),
        _step(EventKind.STEP_STARTED, "5"),
        EventDraft(
            EventKind.RUN_FAILED,
            {"run_id": RUN, "ended_at": TS, "error": "boom", "closed_steps": {"5": "failed"}},
            run_id=RUN,
        ),
    ]


_TABLES = ("runs", "run_params", "run_tags", "step_runs", "step_run_io", "run_metrics")
# Every column but created_at, the time of the append (one append per event differs).
_ARTIFACTS = (
    "SELECT digest, blob, serializer, type_name, size, meta, role, first_seq FROM artifacts"
)


def _tables(ledger: Ledger) -> dict[str, list[tuple[Any, ...]]]:
    found = {t: sorted(ledger.db.rows(f"SELECT * FROM {t}"), key=repr) for t in _TABLES}  # noqa: S608
    found["artifacts"] = sorted(ledger.db.rows(_ARTIFACTS), key=repr)
    return found


def test_a_run_batch_projects_as_event_by_event(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    ledger.append(_run_batch())
    report = ledger.verify()  # replays every event one by one and compares every row
    assert report.derived_checked
    assert report.ok, [p.message for p in report.derived]
    tables = _tables(ledger)
    steps = {row[0]: row for row in tables["step_runs"]}
    assert {k: v[5] for k, v in steps.items()} == {
        "1": "completed",
        "2": "cached",
        "3": "cached",
        "4": "failed",
        "5": "failed",
    }
    names = sorted((r[0], r[1]) for r in tables["run_metrics"])
    # Step 1's own; the hits copy the returned numbers, step 2 keeps its own "acc".
    assert names == [
        ("1", "acc"),
        ("1", "loss"),
        ("1", "lr"),
        ("2", "acc"),
        ("2", "loss"),
        ("3", "acc"),
        ("3", "loss"),
    ]
    ledger.close()


def test_the_same_events_one_append_each_give_the_same_tables(metadata_url: str) -> None:
    batched = Ledger.open(metadata_url, actor="tester")
    batched.append(_run_batch())
    expected = _tables(batched)
    with batched.db.write() as db:
        for table in (*_TABLES, "artifacts", "events", "ledger_head", "merkle_nodes"):
            db.execute(f"DELETE FROM {table}")  # noqa: S608
    for draft in _run_batch():
        batched.append([draft])
    assert _tables(batched) == expected
    assert batched.verify().ok
    batched.close()


def test_a_batch_out_of_order_is_projected_event_by_event(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    ledger.append([_started()])
    # The closing event before the start of the same step run: grouping would let the
    # start's insert come first; one by one, the closed row is kept.
    ledger.append(
        [
            _closed("1"),
            _step(EventKind.STEP_STARTED, "1"),
        ]
    )
    report = ledger.verify()
    assert report.ok, [p.message for p in report.derived]
    rows = ledger.db.fetch("SELECT status, first_seq FROM step_runs WHERE step_run_id = '1'")
    assert rows == [{"status": "completed", "first_seq": 2}]
    ledger.close()


def test_a_flush_of_many_cached_steps_runs_a_bounded_number_of_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    ledger.append([_started(), _step(EventKind.STEP_STARTED, "1"), _closed("1")])
    calls: list[str] = []
    db = ledger.db
    for name in ("execute", "executemany", "executemany_values", "fetch"):
        method = getattr(db, name)

        def counted(text: str, *args: Any, _method: Any = method) -> Any:
            calls.append(text)
            return _method(text, *args)

        monkeypatch.setattr(db, name, counted)
    hits = [
        _closed(f"h{i}", EventKind.STEP_CACHED, decision="hit", reused_step_run_id="1")
        for i in range(200)
    ]
    ledger.append(hits)
    monkeypatch.undo()
    assert len(calls) < 20, len(calls)  # one by one: three statements per hit
    assert ledger.verify().ok
    assert len(ledger.db.rows("SELECT * FROM step_runs WHERE step_run_id LIKE 'h%'")) == 200
    ledger.close()


def _mixed_hits() -> list[EventDraft]:
    """Hits of step runs with returned numbers, without, and of a hit in the same batch."""
    return [
        _step(EventKind.STEP_STARTED, "9"),
        _closed("9", output_metrics={"f1": 0.25}),
        _closed("a", EventKind.STEP_CACHED, decision="hit", reused_step_run_id="9"),
        _closed("b", EventKind.STEP_CACHED, decision="hit", reused_step_run_id="8"),
        _closed("c", EventKind.STEP_CACHED, decision="hit", reused_step_run_id="7"),
        _closed(
            "d",
            EventKind.STEP_CACHED,
            decision="hit",
            reused_step_run_id="7",
            metrics={"acc": {"last": 0.75}},
        ),
    ]


def _earlier() -> list[EventDraft]:
    """Step run 7 returned numbers, step run 8 none."""
    return [
        _started(),
        _step(EventKind.STEP_STARTED, "7"),
        _closed("7", output_metrics={"acc": 0.5, "loss": 2}),
        _step(EventKind.STEP_STARTED, "8"),
        _closed("8"),
    ]


def test_hits_copy_only_what_the_step_runs_they_reuse_returned(
    metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    ledger.append(_earlier())
    copied: list[int] = []
    db = ledger.db
    executemany = db.executemany

    def counted(text: str, rows: Any) -> None:
        if "SELECT" in text:
            copied.append(len(rows))
        executemany(text, rows)

    monkeypatch.setattr(db, "executemany", counted)
    ledger.append(_mixed_hits())
    monkeypatch.undo()
    # The hit of step run 8 (which returned nothing) runs no copy; the other three do.
    assert sum(copied) == 3
    batched = _tables(ledger)
    assert sorted((r[0], r[1], r[6]) for r in batched["run_metrics"]) == [
        ("7", "acc", "output"),
        ("7", "loss", "output"),
        ("9", "f1", "output"),
        ("a", "f1", "output"),
        ("c", "acc", "output"),
        ("c", "loss", "output"),
        ("d", "acc", "logged"),
        ("d", "loss", "output"),
    ]
    report = ledger.verify()
    assert report.ok, [p.message for p in report.derived]
    with ledger.db.write() as write:
        for table in (*_TABLES, "artifacts", "events", "ledger_head", "merkle_nodes"):
            write.execute(f"DELETE FROM {table}")  # noqa: S608
    for draft in [*_earlier(), *_mixed_hits()]:
        ledger.append([draft])
    assert _tables(ledger) == batched
    ledger.close()


def test_a_hit_of_a_hit_in_the_same_batch_copies_as_one_by_one(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    ledger.append(_earlier())
    chained = [
        _closed("c", EventKind.STEP_CACHED, decision="hit", reused_step_run_id="7"),
        _closed("e", EventKind.STEP_CACHED, decision="hit", reused_step_run_id="c"),
    ]
    ledger.append(chained)
    batched = _tables(ledger)
    assert ledger.verify().ok
    with ledger.db.write() as write:
        for table in (*_TABLES, "artifacts", "events", "ledger_head", "merkle_nodes"):
            write.execute(f"DELETE FROM {table}")  # noqa: S608
    for draft in [*_earlier(), *chained]:
        ledger.append([draft])
    assert _tables(ledger) == batched
    assert ("e", "acc") in {(r[0], r[1]) for r in batched["run_metrics"]}
    ledger.close()


def test_a_step_run_started_and_closed_in_one_batch_is_written_once(
    metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    ledger.append([_started(), _step(EventKind.STEP_STARTED, "0")])
    batch = [
        _closed("0"),  # started in the earlier append
        _step(EventKind.STEP_STARTED, "1"),
        _closed("1"),
        _closed("2", EventKind.STEP_CACHED, decision="hit", reused_step_run_id="1"),
        _step(EventKind.STEP_STARTED, "3"),
        _closed("3", EventKind.STEP_FAILED, error="boom", outputs={}),
        _step(EventKind.STEP_STARTED, "4"),  # still running
    ]
    written: list[str] = []
    db = ledger.db
    executemany_values = db.executemany_values

    def counted(text: str, columns: Any, rows: Any) -> None:
        if text.startswith("INSERT INTO step_runs"):
            written.extend(row[0] for row in rows)
        executemany_values(text, columns, rows)

    monkeypatch.setattr(db, "executemany_values", counted)
    ledger.append(batch)
    monkeypatch.undo()
    assert sorted(written) == ["0", "1", "2", "3", "4"]  # one row each, none rewritten
    report = ledger.verify()
    assert report.ok, [p.message for p in report.derived]
    batched = _tables(ledger)
    if metadata_url.startswith("sqlite"):
        # New rows take their places in the order of their first events, as one by one.
        placed = ledger.db.rows("SELECT step_run_id FROM step_runs ORDER BY rowid")
        assert [row[0] for row in placed] == ["0", "1", "2", "3", "4"]
    first_seqs = ledger.db.rows("SELECT step_run_id, first_seq FROM step_runs ORDER BY 1")
    assert [row[1] for row in first_seqs] == [2, 4, 6, 7, 9]
    with ledger.db.write() as write:
        for table in (*_TABLES, "artifacts", "events", "ledger_head", "merkle_nodes"):
            write.execute(f"DELETE FROM {table}")  # noqa: S608
    ledger.append([_started(), _step(EventKind.STEP_STARTED, "0")])
    for draft in batch:
        ledger.append([draft])
    assert _tables(ledger) == batched
    ledger.close()
