"""Migration 0008 (``step_runs.resource_requests``) on both backends: a store at 0007 is
upgraded on open and each step run's requests are back-filled from its events exactly as
replaying them gives, so ``verify`` finds every derived row in agreement."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION, current_revision
from tests.support.ledger_schema import downgrade, step_event

pytestmark = pytest.mark.postgres


def _step(kind: EventKind, step_run_id: str, **extra: Any) -> EventDraft:
    closing = {"inputs": {}, "outputs": {}, "resources": {"wall_ns": 5}}
    node_id = f"node_{step_run_id}"
    return step_event(kind, step_run_id, run_id="R1", node_id=node_id, closing=closing, **extra)


def _requests(ledger: Ledger) -> dict[str, Any]:
    rows = ledger.db.rows("SELECT step_run_id, resource_requests FROM step_runs")
    return {str(k): None if v is None else json.loads(v) for k, v in rows}


def test_a_store_at_0007_is_back_filled_as_replaying_gives(metadata_url: str) -> None:
    asked = {"cpu": 2, "memory": 2**20}
    ledger = Ledger.open(metadata_url, actor="tester")
    # As runs before 0008 recorded them: requests in the closing events only.
    ledger.append(
        [
            _step(EventKind.STEP_STARTED, "S1"),
            _step(EventKind.STEP_STARTED, "S2"),
            _step(EventKind.STEP_STARTED, "S3"),  # still running: asked nothing known
            _step(EventKind.STEP_CACHED, "S4", decision="hit", resource_requests={"gpu": 1}),
        ]
    )
    ledger.append(
        [
            _step(EventKind.STEP_COMPLETED, "S1", decision="miss", resource_requests=asked),
            _step(EventKind.STEP_FAILED, "S2", decision="miss", error="boom"),
        ]
    )
    expected = {"S1": asked, "S2": None, "S3": None, "S4": {"gpu": 1}}
    assert _requests(ledger) == expected  # what the projection writes at the head
    downgrade(ledger, "0007")
    assert current_revision(ledger.engine) == "0007"
    ledger.close()

    ledger = Ledger.open(metadata_url, actor="tester")  # upgrades on open
    try:
        assert current_revision(ledger.engine) == HEAD_REVISION
        assert _requests(ledger) == expected
        report = ledger.verify()
        assert report.ok, report
        assert report.checked == 6
    finally:
        ledger.close()


def test_a_started_step_shows_what_it_asked_for_until_it_ends(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    try:
        ledger.append([_step(EventKind.STEP_STARTED, "S1", resource_requests={"cpu": 4})])
        assert _requests(ledger) == {"S1": {"cpu": 4}}
        ledger.append(
            [_step(EventKind.STEP_COMPLETED, "S1", decision="miss", resource_requests={"cpu": 4})]
        )
        assert _requests(ledger) == {"S1": {"cpu": 4}}
        step = ledger.reader().step_runs("R1")[0]
        assert step["resource_requests"] == {"cpu": 4}  # decoded, like ``resources``
        assert ledger.verify().ok
    finally:
        ledger.close()
