"""Cache lookups answered ahead (ledger.cache_rows), on every metadata backend.

Each lookup must give what :meth:`Reader.cache_lookup` gives for its key, read ahead or
not, and refuse an edited row the same way.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from pipetrail.errors import TamperedLedgerError
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.cache_rows import RunCacheRows
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.queries import Reader
from pipetrail.ledger.trusted_sql import (
    CACHE_LOOKUP_SQL,
    RUN_CACHE_REST,
    RUN_CACHE_SQL,
    STEP_WITH_EVENT_VALUES,
)

pytestmark = pytest.mark.postgres

TS = "2026-01-01T00:00:00.000000Z"


def _digest(char: str) -> str:
    return "blake3:" + char * 64


def _key(i: int) -> str:
    return "blake3:" + f"{i:064x}"


def _run(run_id: str, keys: list[int], output: str) -> list[EventDraft]:
    """A run whose step ``s{i}`` completed with cache key ``_key(i)`` and one output."""
    drafts = [
        EventDraft(
            EventKind.RUN_STARTED,
            {
                "run_id": run_id, "pipeline": "p", "pipeline_fingerprint": _digest("f"),
                "owner": "me", "host": "h", "process": "1", "params": {}, "seed": 7,
                "git": None, "environment": None, "started_at": TS, "steps_total": len(keys),
            },
            run_id=run_id,
        )
    ]  # fmt: skip
    for i in keys:
        step = {
            "step_run_id": f"{run_id}-S{i}", "run_id": run_id, "node_id": f"s{i}",
            "step": "s", "pipeline": "p", "seed": 7, "started_at": TS,
        }  # fmt: skip
        drafts.append(EventDraft(EventKind.STEP_STARTED, step, run_id=run_id))
        drafts.append(
            EventDraft(
                EventKind.STEP_COMPLETED,
                {
                    **step, "cache_key": _key(i), "decision": "miss", "reason": "new",
                    "code_digest": _digest("c"), "components": {"code": _digest("c")},
                    "inputs": {}, "outputs": {"output": output}, "resources": {"wall_ns": 1},
                    "logs": None, "ended_at": TS,
                },
                run_id=run_id,
            )
        )  # fmt: skip
    drafts.append(EventDraft(EventKind.RUN_COMPLETED, {"run_id": run_id, "ended_at": TS}, run_id))
    return drafts


class _Counting(Reader):
    """A reader that counts the per-key lookups it runs."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.per_key = 0

    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.inner.fetch(sql, params)

    def fetch_tuples(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self.per_key += sql == CACHE_LOOKUP_SQL
        return self.inner.fetch_tuples(sql, params)

    def whole_rows(
        self, columns: str, rest: str, params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        return self.inner.whole_rows(columns, rest, params)


def _exec(ledger: Ledger, sql: str, **params: Any) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


@pytest.fixture
def ledger(metadata_url: str) -> Any:
    ledger = Ledger.open(metadata_url, actor="tester")
    ledger.append(_run("R1", list(range(1, 7)), _digest("a")))
    # R2 finished keys 4 and 5 later: a lookup of them answers R2, not R1.
    ledger.append(_run("R2", [4, 5], _digest("b")))
    yield ledger
    ledger.close()


def _answers(ledger: Ledger, rows: RunCacheRows, reader: Reader, keys: range) -> list[Any]:
    found = [rows.lookup(reader, _key(i)) for i in keys]
    assert found == [ledger.reader().cache_lookup(_key(i)) for i in keys]
    return [None if hit is None else hit["step_run_id"] for hit in found]


def test_lookups_read_ahead_give_what_each_lookup_gives(ledger: Ledger) -> None:
    reader = _Counting(ledger.reader())
    rows = RunCacheRows("R3", budget=100)
    assert _answers(ledger, rows, reader, range(1, 9)) == [
        "R1-S1", "R1-S2", "R1-S3", "R2-S4", "R2-S5", "R1-S6", None, None,
    ]  # fmt: skip
    # Key 1 read R1 ahead (keys 2, 3 and 6 from there); 4 read R2 ahead (5 from there);
    # 7 and 8 have no step run.
    assert reader.per_key == 4
    assert sorted(rows.new_outputs()) == [_digest("a")] * 3 + [_digest("b")]
    assert rows.new_outputs() == []


def test_the_budget_bounds_what_is_read_ahead(ledger: Ledger) -> None:
    reader = _Counting(ledger.reader())
    rows = RunCacheRows("R3", budget=1)
    assert _answers(ledger, rows, reader, range(1, 7))[:3] == ["R1-S1", "R1-S2", "R1-S3"]
    assert reader.per_key == 5  # only key 2 was read ahead


def test_a_run_deleted_after_the_read_is_not_reused(ledger: Ledger) -> None:
    reader = _Counting(ledger.reader())
    rows = RunCacheRows("R3", budget=100)
    assert rows.lookup(reader, _key(1)) is not None
    ledger.append(
        [EventDraft(EventKind.RUN_DELETED, {"run_id": "R1", "reason": "test"}, run_id="R1")]
    )
    assert rows.lookup(reader, _key(2)) is None
    assert rows.lookup(reader, _key(5))["step_run_id"] == "R2-S5"  # type: ignore[index]


def test_an_edited_row_read_ahead_is_refused(ledger: Ledger) -> None:
    reader = ledger.reader()
    rows = RunCacheRows("R3", budget=100)
    assert rows.lookup(reader, _key(1)) is not None
    _exec(
        ledger,
        "UPDATE step_runs SET outputs = :o WHERE step_run_id = 'R1-S3'",
        o='{"output":"' + _digest("b") + '"}',
    )
    # Read ahead before the edit, it is what was read that is verified: still R1's.
    assert rows.lookup(reader, _key(3))["outputs"] == {"output": _digest("a")}  # type: ignore[index]
    # Edited before the read: refused as the lookup refuses it.
    rows = RunCacheRows("R3", budget=100)
    assert rows.lookup(reader, _key(1)) is not None
    with pytest.raises(TamperedLedgerError, match=r"step_runs\[R1-S3\]: outputs is"):
        rows.lookup(reader, _key(3))


def test_an_event_edited_under_a_row_read_ahead_is_refused(ledger: Ledger) -> None:
    reader = ledger.reader()
    seq = ledger.reader().fetch_tuples(
        "SELECT last_seq FROM step_runs WHERE step_run_id = 'R1-S2'"
    )[0][0]
    _exec(
        ledger,
        "UPDATE events SET payload = replace(payload, :a, :b) WHERE seq = :s",
        a=_digest("a"),
        b=_digest("b"),
        s=seq,
    )
    rows = RunCacheRows("R3", budget=100)
    assert rows.lookup(reader, _key(1)) is not None
    with pytest.raises(TamperedLedgerError, match=rf"step_runs\[R1-S2\].*event {seq} was edited"):
        rows.lookup(reader, _key(2))


def test_the_running_run_is_not_read_ahead(ledger: Ledger) -> None:
    reader = _Counting(ledger.reader())
    rows = RunCacheRows("R1", budget=100)
    _answers(ledger, rows, reader, range(1, 4))
    assert reader.per_key == 3


def test_a_run_found_not_deleted_is_asked_again_once_the_window_passed(ledger: Ledger) -> None:
    reader = ledger.reader()
    now = [0.0]
    rows = RunCacheRows("R3", budget=100, recheck_after=0.05, clock=lambda: now[0])
    assert rows.lookup(reader, _key(1)) is not None
    ledger.append(
        [EventDraft(EventKind.RUN_DELETED, {"run_id": "R1", "reason": "test"}, run_id="R1")]
    )
    now[0] = 0.04  # within the window: R1 was found not deleted when read
    assert rows.lookup(reader, _key(2))["step_run_id"] == "R1-S2"  # type: ignore[index]
    now[0] = 0.05
    assert rows.lookup(reader, _key(3)) is None
    assert rows.lookup(reader, _key(6)) is None


def _hits(ledger: Ledger, rows: RunCacheRows, reader: Reader, keys: range) -> list[Any]:
    """What ``rows.hit`` gives for ``keys``, checked against each lookup's whole row."""
    found = [rows.hit(reader, _key(i)) for i in keys]
    looked_up = [ledger.reader().cache_lookup(_key(i)) for i in keys]
    assert found == [
        None
        if row is None
        else (row["reused_step_run_id"] or row["step_run_id"], row["outputs"], None)
        for row in looked_up
    ]
    return found


def test_a_hit_gives_what_the_lookup_gives(ledger: Ledger) -> None:
    # R3 reused R1's step run of key 1 (a step.cached event names it).
    cached = {
        "step_run_id": "R3-S1", "run_id": "R3", "node_id": "s1", "step": "s", "pipeline": "p",
        "seed": 7, "started_at": TS, "cache_key": _key(1), "decision": "hit",
        "reason": "same key", "reused_step_run_id": "R1-S1", "code_digest": _digest("c"),
        "components": {"code": _digest("c")}, "inputs": {},
        "outputs": {"output": _digest("a")}, "ended_at": TS,
    }  # fmt: skip
    ledger.append(
        [
            _run("R3", [], _digest("a"))[0],
            EventDraft(EventKind.STEP_CACHED, cached, run_id="R3"),
        ]
    )
    reader = _Counting(ledger.reader())
    rows = RunCacheRows("R4", budget=100)
    found = _hits(ledger, rows, reader, range(1, 9))
    # Key 1's newest step run is R3's hit: what it reuses is R1's step run.
    assert [None if hit is None else hit[0] for hit in found] == [
        "R1-S1", "R1-S2", "R1-S3", "R2-S4", "R2-S5", "R1-S6", None, None,
    ]  # fmt: skip
    # Keys 1, 2, 4, 7 and 8 were looked up: 2 read R1 ahead (3 and 6), 4 read R2 ahead (5).
    assert reader.per_key == 5


def test_a_hit_refuses_an_edited_row_or_event_read_ahead(ledger: Ledger) -> None:
    reader = ledger.reader()
    _exec(
        ledger,
        "UPDATE step_runs SET outputs = :o WHERE step_run_id = 'R1-S3'",
        o='{"output":"' + _digest("b") + '"}',
    )
    rows = RunCacheRows("R3", budget=100)
    assert rows.hit(reader, _key(1)) is not None
    with pytest.raises(TamperedLedgerError, match=r"step_runs\[R1-S3\]: outputs is"):
        rows.hit(reader, _key(3))
    seq = reader.fetch_tuples("SELECT last_seq FROM step_runs WHERE step_run_id = 'R1-S2'")[0][0]
    _exec(
        ledger,
        "UPDATE events SET payload = replace(payload, :a, :b) WHERE seq = :s",
        a=_digest("a"),
        b=_digest("b"),
        s=seq,
    )
    rows = RunCacheRows("R3", budget=100)
    assert rows.hit(reader, _key(1)) is not None
    with pytest.raises(TamperedLedgerError, match=rf"step_runs\[R1-S2\].*event {seq} was edited"):
        rows.hit(reader, _key(2))


_EDITS: list[tuple[str, Any]] = [
    ("run_id", "R9"),
    ("node_id", "s9"),
    ("step", "t"),
    ("pipeline", "q"),
    ("cache_decision", "hit"),
    ("cache_reason", "other"),
    ("reused_step_run_id", "R1-S2"),
    ("code_digest", "blake3:00"),
    ("components", '{"code":"' + _digest("d") + '"}'),
    ("inputs", '{"x":"' + _digest("d") + '"}'),
    ("outputs", None),
    ("resources", '{"wall_ns":2}'),
    ("resource_requests", "{}"),
    ("logs", "x"),
    ("seed", 8),
    ("started_at", "2026-01-02T00:00:00.000000Z"),
    ("ended_at", None),
    ("error", "boom"),
    ("traceback", "tb"),
]


@pytest.mark.parametrize(("column", "value"), _EDITS)
def test_a_hit_refuses_any_column_edited_as_the_lookup_does(
    ledger: Ledger, column: str, value: Any
) -> None:
    reader = ledger.reader()
    edit = f"UPDATE step_runs SET {column} = :v WHERE step_run_id = 'R1-S3'"  # noqa: S608
    _exec(ledger, edit, v=value)
    with pytest.raises(TamperedLedgerError, match=rf"step_runs\[R1-S3\]: {column} is"):
        reader.cache_lookup(_key(3))
    with pytest.raises(TamperedLedgerError, match=rf"step_runs\[R1-S3\]: {column} is"):
        RunCacheRows("R3", budget=100).hit(reader, _key(3))


def test_a_hit_on_a_payload_orjson_does_not_write_back_gives_what_the_lookup_gives(
    ledger: Ledger,
) -> None:
    # An integer beyond 64 bits in the event (orjson would read a float), and a row
    # whose JSON text is not the canonical text: both checked value by value.
    drafts = _run("R3", [7], _digest("a"))
    drafts[2].payload["resources"] = {"wall_ns": 2**70}
    ledger.append(drafts)
    _exec(
        ledger,
        "UPDATE step_runs SET outputs = :o WHERE step_run_id = 'R1-S1'",
        o='{"output": "' + _digest("a") + '"}',
    )
    reader = ledger.reader()
    found = _hits(ledger, RunCacheRows("R4", budget=0), reader, range(7, 8))
    assert found == [("R3-S7", {"output": _digest("a")}, None)]
    assert _hits(ledger, RunCacheRows("R4", budget=0), reader, range(1, 2))[0] is not None


def test_the_read_ahead_rows_read_whole_are_the_plain_reads(ledger: Ledger) -> None:
    """On SQLite each row comes whole through a function of the query: the same values."""
    reader = ledger.reader()
    params = {"r": "R1", "after": 0, "n": 100}
    whole = reader.whole_rows(STEP_WITH_EVENT_VALUES, RUN_CACHE_REST, params)
    plain = reader.fetch_tuples(RUN_CACHE_SQL, params)
    assert len(whole) == 4  # keys 4 and 5 answer R2
    assert [tuple((v, type(v)) for v in row) for row in whole] == [
        tuple((v, type(v)) for v in row) for row in plain
    ]
