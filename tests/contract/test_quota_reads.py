"""The quota reads on both backends: CPU used today read once in full, then only from
the step events appended since, gives what reading the whole day again gives."""

from __future__ import annotations

from typing import Any

import pytest

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.quota_reads import (
    cpu_seconds_after,
    cpu_seconds_queued,
    cpu_seconds_since,
    executing_step_runs,
    newest_seq,
)

pytestmark = pytest.mark.postgres

TODAY = "2026-03-02T00:00:00.000000Z"


def _run(run_id: str, owner: str) -> EventDraft:
    payload = {
        "run_id": run_id,
        "pipeline": "p",
        "pipeline_fingerprint": "blake3:" + "0" * 64,
        "owner": owner,
        "host": "h",
        "process": "1",
        "params": {},
        "seed": 0,
        "started_at": "2026-03-01T23:00:00.000000Z",
    }
    return EventDraft(EventKind.RUN_STARTED, payload, run_id=run_id)


def _step(kind: EventKind, run_id: str, step_run_id: str, **extra: Any) -> EventDraft:
    payload = {
        "step_run_id": step_run_id,
        "run_id": run_id,
        "node_id": step_run_id,
        "step": step_run_id,
        "pipeline": "p",
        "started_at": "2026-03-01T23:30:00.000000Z",
        **extra,
    }
    return EventDraft(kind, payload, run_id=run_id)


def _ended(run_id: str, step_run_id: str, ended_at: str, cpu_s: float) -> list[EventDraft]:
    return [
        _step(EventKind.STEP_STARTED, run_id, step_run_id),
        _step(
            EventKind.STEP_COMPLETED,
            run_id,
            step_run_id,
            decision="miss",
            ended_at=ended_at,
            resources={"cpu_ns": int(cpu_s * 1e9), "wall_ns": 1},
        ),
    ]


def _totals(rows: list[tuple[str, float]]) -> dict[str, float]:
    found: dict[str, float] = {}
    for owner, seconds in rows:
        found[owner] = round(found.get(owner, 0.0) + seconds, 6)
    return found


def test_the_days_cpu_read_once_then_from_new_events_matches_a_full_read(
    metadata_url: str,
) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    try:
        ledger.append([_run("R1", "alice@a"), _run("R2", "bob@b")])
        ledger.append(_ended("R1", "S1", "2026-03-01T23:59:59.000000Z", 5.0))  # yesterday
        ledger.append(_ended("R1", "S2", "2026-03-02T00:00:01.000000Z", 2.0))
        reader = ledger.reader()
        head = newest_seq(reader)
        first = cpu_seconds_since(reader, TODAY)
        assert _totals(first) == {"alice@a": 2.0}

        ledger.append(_ended("R2", "S3", "2026-03-02T01:00:00.000000Z", 3.0))
        ledger.append(_ended("R1", "S4", "2026-03-02T02:00:00.000000Z", 0.5))
        ledger.append([_step(EventKind.STEP_STARTED, "R2", "S5")])  # still executing
        added, new_head = cpu_seconds_after(reader, head, TODAY)
        assert new_head == newest_seq(reader) > head
        assert _totals(first + added) == _totals(cpu_seconds_since(reader, TODAY))
        assert _totals(added) == {"bob@b": 3.0, "alice@a": 0.5}
        assert cpu_seconds_after(reader, new_head, TODAY) == ([], new_head)  # nothing new
        assert executing_step_runs(reader) == [("R2", "bob@b")]
    finally:
        ledger.close()


def test_queued_step_ends_count_as_they_will_once_appended() -> None:
    queued = [
        *_ended("R1", "S1", "2026-03-02T00:00:01.000000Z", 1.5),
        *_ended("R1", "S2", "2026-03-01T22:00:00.000000Z", 9.0),  # before today
        _step(EventKind.STEP_FAILED, "R1", "S3", ended_at=TODAY, resources={"cpu_ns": 10**9}),
        _step(EventKind.STEP_CACHED, "R1", "S4", ended_at=TODAY, resources={"cpu_ns": 10**9}),
    ]
    assert cpu_seconds_queued(queued, TODAY) == pytest.approx(2.5)


def test_a_run_deleted_later_the_same_day_counts_the_same_in_both_reads(
    metadata_url: str,
) -> None:
    """Deleting a run (retention, purge) refunds no CPU: it was used, and stays recorded.

    Whether the run was deleted before the day's first read or after it, the read from
    the new events and a read of the whole day again give the same totals, the deleted
    run's CPU included; so do runs closed by their end (interrupted, crashed) with a step
    still executing, whose closing records no CPU.
    """
    from pipetrail.ledger.deletions import deletion_draft

    ledger = Ledger.open(metadata_url, actor="tester")
    try:
        ledger.append([_run("R1", "alice@a"), _run("R2", "bob@b"), _run("R3", "carol@c")])
        ledger.append(_ended("R1", "S1", "2026-03-02T00:10:00.000000Z", 4.0))
        ledger.append(_ended("R3", "S0", "2026-03-02T00:05:00.000000Z", 1.0))
        ledger.append([deletion_draft("R3", "retention: exploration_runs")])  # before the read
        reader = ledger.reader()
        head = newest_seq(reader)
        first = cpu_seconds_since(reader, TODAY)
        assert _totals(first) == {"alice@a": 4.0, "carol@c": 1.0}

        ledger.append([deletion_draft("R1", "purge: patients.csv")])  # counted already
        ledger.append(_ended("R2", "S2", "2026-03-02T01:00:00.000000Z", 3.0))
        ledger.append([deletion_draft("R2", "retention: exploration_runs")])  # after its end
        ledger.append([_step(EventKind.STEP_STARTED, "R2", "S3")])
        closing = {
            "run_id": "R2",
            "ended_at": "2026-03-02T01:30:00.000000Z",
            "error": "interrupted by SIGINT",
            "signal": "SIGINT",
            "closed_steps": {"S3": "interrupted"},
        }
        ledger.append([EventDraft(EventKind.RUN_INTERRUPTED, closing, run_id="R2")])
        added, _ = cpu_seconds_after(reader, head, TODAY)
        whole_day = _totals(cpu_seconds_since(reader, TODAY))
        assert _totals(first + added) == whole_day
        assert whole_day == {"alice@a": 4.0, "bob@b": 3.0, "carol@c": 1.0}
    finally:
        ledger.close()
