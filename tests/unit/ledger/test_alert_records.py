"""The typed records of alert deliveries and of gate verdicts (old and new payloads)."""

from __future__ import annotations

import pytest

from pipetrail.ledger.event_records import AlertDelivery, GateChecked, parse_payload


def test_alert_deliveries_parse_sent_and_failed() -> None:
    sent = parse_payload(
        "alert.sent",
        {"run_id": "R", "rule": "ops", "event": "run.failed", "target": "webhook",
         "destination": "https://hooks.example.com", "attempts": 2, "status": 200,
         "error": None, "summary": "run R failed"},
        seq=7, ts="t",
    )  # fmt: skip
    assert isinstance(sent, AlertDelivery)
    assert (sent.seq, sent.run_id, sent.rule, sent.attempts, sent.status) == (7, "R", "ops", 2, 200)
    failed = parse_payload(
        "alert.failed",
        {"run_id": None, "rule": "pager", "event": "gate.failed", "target": "command",
         "attempts": 4, "status": None, "error": "page exited with 3"},
    )  # fmt: skip
    assert isinstance(failed, AlertDelivery)
    assert (failed.status, failed.error, failed.destination) == (None, "page exited with 3", "")
    with pytest.raises(ValueError, match=r"a alert\.sent event lacks its 'rule' field"):
        parse_payload("alert.sent", {"event": "run.failed", "target": "webhook", "attempts": 1})


def test_gate_verdicts_read_old_payloads_and_the_drift_of_new_ones() -> None:
    old = parse_payload("gate.checked", {"run_id": "R", "report": "blake3:00"})
    assert isinstance(old, GateChecked)
    assert (old.passed, old.failures, old.baseline_run_id, old.drift) == (None, (), None, None)
    new = parse_payload(
        "gate.checked",
        {"run_id": "R", "report": "blake3:00", "passed": False, "failures": ["drift"],
         "baseline_run_id": "B", "drift": {"drifted": True, "gate": True, "origins": []}},
    )  # fmt: skip
    assert isinstance(new, GateChecked)
    assert (new.passed, new.failures, new.baseline_run_id) == (False, ("drift",), "B")
    assert new.drift == {"drifted": True, "gate": True, "origins": []}
