"""Every event kind's payload parsing, pinned: valid payloads, missing and wrong-typed fields.

For each kind, a full valid payload is parsed, then the same payload with each key removed
and with each key's value replaced by each of :data:`ODD_VALUES` (for one kind of each
record type); a few payloads that are
not JSON objects too. What each parse gives (the record's fields that differ from the valid
payload's record, or the exception's type, message and cause) is compared with
``event_record_outcomes.json``, written from the field-by-field builders the generic one
replaced. Audit verify and reads show these messages, so a change here is a change users see.

To write the file again after a deliberate change, run this module as a script with
``--write`` (and review the diff).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from pipetrail.ledger import EventKind
from pipetrail.ledger.event_records import EventRecord, parse_payload

PINNED = Path(__file__).with_name("event_record_outcomes.json")
D = "blake3:" + "a" * 64
TS = "2026-01-01T00:00:00.000000Z"
GOVERNANCE = {"run_id": None, "by": "ann", "key_id": "k1", "signature": "c2ln", "model": "m"}
ALERT = {
    "run_id": "R", "rule": "ops", "event": "run.failed", "target": "webhook",
    "destination": "https://h", "attempts": 2, "status": 200, "error": None, "summary": "s",
}  # fmt: skip
ACCESS = {
    "run_id": "R", "user": "ann", "label": "pii", "digest": D, "action": "get",
    "purpose": "audit", "basis": "role:admin", "reason": "",
}  # fmt: skip
RUN_ENDED = {
    "run_id": "R", "ended_at": TS, "error": "boom", "closed_steps": {"S": "failed"},
    "resource_deviations": [{"step": "s"}],
}  # fmt: skip
STEP = {
    "run_id": "R", "step_run_id": "S", "node_id": "n", "step": "s", "pipeline": "p",
    "started_at": TS, "ended_at": TS, "cache_key": D, "decision": "miss", "reason": "new",
    "reused_step_run_id": None, "code_digest": D, "inputs": {"x": D}, "outputs": {"y": D},
    "output_formats": {"y": "pickle"}, "resources": {"cpu": 1.0},
    "metrics": {"loss": {"digest": D, "last": 1.0}}, "output_metrics": {"acc": 0.9},
    "reports": {"r": D}, "data_ops": [{"op": "split"}], "contracts": [{"ok": True}],
    "code_source": D, "error": None, "classification": {"y": "pii"},
    "declassified": {"y": {"from": "pii", "to": "public", "by": []}},
}  # fmt: skip
VALID: dict[str, dict[str, Any]] = {
    "run.started": {
        "run_id": "R",
        "pipeline": "p",
        "pipeline_fingerprint": D,
        "params": {"a": 1},
        "seed": 3,
        "started_at": TS,
        "owner": "ann",
        "host": "h",
        "git": {"commit": "c"},
        "environment": D,
        "steps_total": 4,
        "name": "n",
        "tags": {"k": "v"},
        "purpose": "check",
        "reproduces": "Q",
        "trace_id": "t",
        "sweep": {"id": "w"},
    },
    **{k: RUN_ENDED for k in ("run.completed", "run.failed", "run.crashed", "run.interrupted")},
    "step.started": {
        "run_id": "R",
        "step_run_id": "S",
        "node_id": "n",
        "step": "s",
        "pipeline": "p",
        "started_at": TS,
        "code_source": D,
    },
    **{k: STEP for k in ("step.completed", "step.cached", "step.failed")},
    "artifact.recorded": {
        "run_id": "R",
        "digest": D,
        "blob": D,
        "serializer": "pickle",
        "type_name": "int",
        "size": 5,
        "role": "output",
        "meta": {"rows": 1},
        "step_run_id": "S",
    },
    "source.observed": {
        "run_id": "R",
        "path": "d",
        "digest": D,
        "size": 1,
        "mtime_ns": 2,
        "kind": "folder",
        "by_reference": True,
        "classification": "pii",
    },
    "reproduction.checked": {
        "run_id": "N",
        "report": D,
        "original_run_id": "R",
        "verdict": "reproduced",
        "ok": True,
    },
    "gate.checked": {
        "run_id": "R",
        "report": D,
        "passed": False,
        "failures": ["a", 2],
        "baseline_run_id": "B",
        "drift": {"drifted": True},
        "original_run_id": "O",
        "verdict": "v",
        "ok": True,
    },
    "run.named": {"run_id": "R", "name": "n"},
    "run.tagged": {"run_id": "R", "tags": {"k": "v"}},
    "run.untagged": {"run_id": "R", "keys": ["k"]},
    "run.noted": {"run_id": "R", "text": "a note"},
    "run.deleted": {"run_id": "R", "reason": "why"},
    "store.collected": {
        "run_id": None,
        "objects": 3,
        "bytes": 10,
        "removed_list": D,
        "grace_seconds": 60,
    },
    **{
        k: GOVERNANCE
        for k in (
            "user.added",
            "user.granted",
            "user.revoked",
            "user.key_rotated",
            "model.registered",
            "promotion.requested",
            "promotion.approved",
            "promotion.rejected",
            "alias.moved",
            "decision.recorded",
            "access.granted",
            "access.revoked",
        )
    },
    "keys.rotated": {
        "old_keks": ["file:a"],
        "new_kek": "file:b",
        "data_keys": ["d"],
        "provider": "file",
        "reencrypted": True,
        "objects": 7,
        "retired_data_keys": ["e"],
    },
    "keys.keyring": {"keyring": {"kind": "pipetrail.keyring"}},
    "alert.sent": ALERT,
    "alert.failed": ALERT,
    "access.read": ACCESS,
    "access.refused": ACCESS,
}
ODD_VALUES: tuple[Any, ...] = (
    None, "", "x", "12", 0, 1.5, -2, True, False, [], ["a"], [["a", 1]], {}, {"a": 1},
)  # fmt: skip
NOT_OBJECTS = ("[]", "[1]", "5", '"s"', "null")


def _fields(record: EventRecord) -> dict[str, str]:
    """Each field's repr, marked when it is the payload's own dict or list (not a copy)."""
    payload_values = {id(v) for v in record.payload.values() if isinstance(v, dict | list)}
    result = {}
    for f in fields(record):
        if f.name != "payload":
            value = getattr(record, f.name)
            result[f.name] = repr(value) + (" (shared)" if id(value) in payload_values else "")
    return result


def _outcome(kind: str, payload: Any, valid: dict[str, str] | None) -> Any:
    """What parsing gives: the fields that differ from ``valid``, or the error."""
    try:
        record = parse_payload(kind, payload, seq=2, ts="t")
    except Exception as exc:  # noqa: BLE001 - the exception itself is what is pinned
        cause = exc.__cause__
        return ["error", type(exc).__name__, str(exc), type(cause).__name__ if cause else None]
    # Made as its dataclass __init__ makes it: the same attributes, in declaration order.
    assert list(vars(record)) == [f.name for f in fields(record)]
    assert record == type(record)(**vars(record))
    assert not isinstance(payload, dict) or record.payload is payload
    got = {"type": type(record).__name__, **_fields(record)}
    if valid is None:
        return ["record", got]
    return ["record", {k: v for k, v in got.items() if valid.get(k) != v}]


@functools.cache
def outcomes() -> dict[str, Any]:
    """Every case, by name: kind, then what was done to its valid payload."""
    result: dict[str, Any] = {}
    seen: set[int] = set()
    for kind in EventKind:
        base = VALID[kind]
        # Kinds read by the same record type share a payload here: the odd values are
        # tried on the first of them only.
        first = id(base) not in seen
        seen.add(id(base))
        valid = _outcome(kind, dict(base), None)
        result[f"{kind} valid"] = valid
        fields_of_valid = valid[1]
        result[f"{kind} empty"] = _outcome(kind, {}, fields_of_valid)
        result[f"{kind} as text"] = _outcome(kind, json.dumps(base), fields_of_valid)
        for key in base:
            result[f"{kind} without {key}"] = _outcome(
                kind, {k: v for k, v in base.items() if k != key}, fields_of_valid
            )
            for odd in ODD_VALUES if first else ():
                result[f"{kind} {key}={odd!r}"] = _outcome(
                    kind, {**base, key: odd}, fields_of_valid
                )
        for text in NOT_OBJECTS:
            result[f"{kind} payload {text}"] = _outcome(kind, text, fields_of_valid)
    result["unknown kind"] = _outcome("run.exploded", {}, None)
    return result


def test_every_kind_has_a_valid_payload_here() -> None:
    assert set(VALID) == set(EventKind)


@pytest.mark.parametrize("kind", sorted(EventKind))
def test_payload_outcomes_are_those_pinned(kind: str) -> None:
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    now = json.loads(json.dumps(outcomes()))  # tuples as lists, as in the file
    mine = {name: v for name, v in now.items() if name.startswith(f"{kind} ")}
    assert mine == {name: v for name, v in pinned.items() if name.startswith(f"{kind} ")}
    assert now["unknown kind"] == pinned["unknown kind"]
    assert set(now) == set(pinned)


def test_the_pinned_messages_users_see_are_among_the_outcomes() -> None:
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    assert pinned["run.noted without text"] == [
        "error", "ValueError", "a run.noted event lacks its 'text' field", "KeyError",
    ]  # fmt: skip
    assert pinned["alert.sent without rule"][2] == "a alert.sent event lacks its 'rule' field"
    assert pinned["unknown kind"][2] == (
        "event kind 'run.exploded' is unknown to this version of pipetrail"
    )
    assert pinned["run.started seed='x'"][1:3] == [
        "ValueError", "invalid literal for int() with base 10: 'x'",
    ]  # fmt: skip
    assert pinned["gate.checked valid"][1]["failures"] == "('a', '2')"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(outcomes().items())]
    PINNED.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
