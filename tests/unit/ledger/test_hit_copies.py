"""A flush of hits builds the metric copies of only the hits whose step run returned any."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pipetrail.ledger.projection_batch as projection_batch
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

RUN = "R1"
TS = "2026-01-01T00:00:00.000000Z"


def _started() -> EventDraft:
    payload = {
        "run_id": RUN,
        "pipeline": "p",
        "pipeline_fingerprint": "blake3:" + "1" * 64,
        "owner": "me",
        "host": "h",
        "process": "1:1",
        "params": {},
        "seed": 0,
        "git": None,
        "environment": None,
        "started_at": TS,
    }
    return EventDraft(EventKind.RUN_STARTED, payload, run_id=RUN)


def _step(kind: EventKind, sid: str, **extra: Any) -> EventDraft:
    payload = {
        "run_id": RUN,
        "step_run_id": sid,
        "node_id": f"n{sid}",
        "step": "s",
        "pipeline": "p",
        "started_at": TS,
        "cache_key": "blake3:" + "c" * 64,
        "inputs": {},
        "outputs": {"output": "blake3:" + "b" * 64},
        "ended_at": TS,
        **extra,
    }
    return EventDraft(kind, payload, run_id=RUN)


def _hit(sid: str, reused: str, **extra: Any) -> EventDraft:
    return _step(EventKind.STEP_CACHED, sid, decision="hit", reused_step_run_id=reused, **extra)


def test_only_the_hits_of_step_runs_with_returned_numbers_build_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    ledger.append(
        [
            _started(),
            _step(EventKind.STEP_STARTED, "7"),
            _step(EventKind.STEP_COMPLETED, "7", decision="miss", output_metrics={"acc": 0.5}),
            _step(EventKind.STEP_STARTED, "8"),
            _step(EventKind.STEP_COMPLETED, "8", decision="miss"),
        ]
    )
    built: list[str] = []
    reused_metrics = projection_batch.reused_metrics

    def spy(p: dict[str, Any], status: str, own: list[dict[str, Any]]) -> Any:
        built.append(p["step_run_id"])
        return reused_metrics(p, status, own)

    monkeypatch.setattr(projection_batch, "reused_metrics", spy)
    # h1's copy (of 8, which returned nothing) would come first, with the statement h3's
    # copy uses; h2 logged a name of its own, so its copy is another statement.
    ledger.append(
        [
            _hit("h1", "8"),
            _hit("h2", "7", metrics={"loss": {"last": 0.25}}),
            _hit("h3", "7"),
        ]
    )
    monkeypatch.undo()
    assert built == ["h2", "h3"]
    copied = ledger.db.rows(
        "SELECT step_run_id, key FROM run_metrics WHERE step_run_id LIKE 'h%' ORDER BY rowid"
    )
    # The hits' own names first, then the copies, by statement in the order of the first
    # hit of each: h1's statement (kept by h3) before h2's.
    assert copied == [("h2", "loss"), ("h3", "acc"), ("h2", "acc")]
    report = ledger.verify()
    assert report.derived_checked
    assert report.ok, [p.message for p in report.derived]
    ledger.close()
