"""The typed event records and the validation of names, tags and notes."""

from __future__ import annotations

import pytest

from pipetrail.errors import ParamError
from pipetrail.ledger import EventKind
from pipetrail.ledger.annotations import (
    name_draft,
    note_draft,
    parse_tag_assignments,
    tag_draft,
    untag_draft,
    validate_tags,
)
from pipetrail.ledger.event_records import (
    EventRecord,
    KeyringKept,
    KeysRotated,
    RunStarted,
    SourceObserved,
    StepEvent,
    parse_payload,
)

D = "blake3:" + "a" * 64


def test_every_event_kind_has_a_typed_record() -> None:
    from pipetrail.ledger import event_records

    assert set(event_records._BY_KIND) == set(EventKind)
    for record_type in set(event_records._BY_KIND.values()):
        assert issubclass(record_type, EventRecord)
        assert record_type.VERSION == 1


def test_run_started_reads_old_and_new_payloads() -> None:
    base = {
        "run_id": "R", "pipeline": "p", "pipeline_fingerprint": D, "params": {"a": 1},
        "seed": 3, "started_at": "2026-01-01T00:00:00.000000Z",
    }  # fmt: skip
    old = parse_payload("run.started", base)
    assert isinstance(old, RunStarted)
    assert (old.purpose, old.name, old.tags, old.params) == ("run", None, {}, {"a": 1})
    reproduced = parse_payload("run.started", {**base, "reproduces": "Q"})
    assert isinstance(reproduced, RunStarted)
    assert reproduced.purpose == "reproduce"
    new = parse_payload(
        "run.started", {**base, "purpose": "check", "name": "n", "tags": {"k": "v"}}
    )
    assert isinstance(new, RunStarted)
    assert (new.purpose, new.name, new.tags) == ("check", "n", {"k": "v"})


def test_step_and_source_events_parse_from_text() -> None:
    text = (
        '{"step_run_id":"S","run_id":"R","node_id":"n","step":"s","metrics":'
        '{"f1":{"digest":"' + D + '","last":1}},"data_ops":[{"op":"split"}]}'
    )
    event = parse_payload("step.failed", text, seq=4, ts="t")
    assert isinstance(event, StepEvent)
    assert (event.seq, event.kind, event.metrics["f1"]["last"]) == (4, "step.failed", 1)
    assert event.outputs == {}
    assert event.data_ops == [{"op": "split"}]
    source = parse_payload(
        "source.observed",
        {"run_id": "R", "path": "d", "digest": D, "size": 1, "mtime_ns": 2, "kind": "folder"},
    )
    assert isinstance(source, SourceObserved)
    assert (source.source_kind, source.by_reference) == ("folder", False)


def test_unknown_kinds_and_missing_fields_are_named() -> None:
    with pytest.raises(ValueError, match=r"event kind 'run\.exploded' is unknown"):
        parse_payload("run.exploded", {})
    with pytest.raises(ValueError, match=r"a run\.noted event lacks its 'text' field"):
        parse_payload("run.noted", {"run_id": "R"})


def test_tags_are_validated_and_values_become_text() -> None:
    assert validate_tags({"stage": "a", "epochs": 3, "ok": False, "team/x.y-z:w": ""}) == {
        "stage": "a",
        "epochs": "3",
        "ok": "false",
        "team/x.y-z:w": "",
    }
    assert parse_tag_assignments(["a=b=c", "k="]) == {"a": "b=c", "k": ""}
    for bad in ("", "1a", "a b", "x" * 65, "é"):
        with pytest.raises(ParamError, match="is not valid: a tag key starts with a letter"):
            validate_tags({bad: "v"})
    with pytest.raises(ParamError, match="must be KEY=VALUE"):
        parse_tag_assignments(["stage"])
    with pytest.raises(ParamError, match="its value must be text"):
        validate_tags({"k": [1]})
    with pytest.raises(ParamError, match="one line of at most 500"):
        validate_tags({"k": "x" * 501})


def test_drafts_carry_the_run_and_refuse_bad_input() -> None:
    draft = tag_draft("R", {"k": 1})
    assert (draft.kind, draft.run_id, draft.payload) == (
        EventKind.RUN_TAGGED,
        "R",
        {"run_id": "R", "tags": {"k": "1"}},
    )
    assert untag_draft("R", ["k", "k"], {"k"}).payload == {"run_id": "R", "keys": ["k"]}
    with pytest.raises(ParamError, match="run R has no tag 'j'; its tags are: k"):
        untag_draft("R", ["j"], {"k"})
    assert name_draft("R", " n ").payload == {"run_id": "R", "name": "n"}
    with pytest.raises(ParamError, match="one line"):
        name_draft("R", "a\nb")
    with pytest.raises(ParamError, match="at most 10000"):
        note_draft("R", "x" * 10_001)


def test_gate_and_reproduction_events_read_their_verdicts() -> None:
    from pipetrail.ledger.event_records import GateChecked, ReproductionChecked

    gate = parse_payload(
        "gate.checked", {"run_id": "R", "passed": False, "failures": ["a", 2], "report": D}
    )
    assert isinstance(gate, GateChecked)
    assert (gate.passed, gate.failures, gate.report) == (False, ("a", "2"), D)
    redo = parse_payload(
        "reproduction.checked",
        {"run_id": "N", "original_run_id": "R", "verdict": "reproduced", "ok": True},
    )
    assert isinstance(redo, ReproductionChecked)
    assert (redo.run_id, redo.original_run_id, redo.verdict, redo.ok) == (
        "N", "R", "reproduced", True,
    )  # fmt: skip
    old = parse_payload("reproduction.checked", {"run_id": "N"})
    assert isinstance(old, ReproductionChecked)
    assert (old.original_run_id, old.ok) == (None, False)


def test_labels_are_optional_fields_old_events_still_read() -> None:
    old = parse_payload("step.completed", {"step_run_id": "S", "node_id": "n", "step": "s"})
    assert isinstance(old, StepEvent)
    assert (old.classification, old.declassified) == ({}, {})
    labelled = parse_payload(
        "step.completed",
        {
            "step_run_id": "S",
            "node_id": "n",
            "step": "s",
            "classification": {"output": "public"},
            "declassified": {"output": {"from": "pii", "to": "public", "by": []}},
        },
    )
    assert isinstance(labelled, StepEvent)
    assert labelled.classification == {"output": "public"}
    assert labelled.declassified["output"]["from"] == "pii"
    fields = {"run_id": "R", "path": "d", "digest": D, "size": 1, "mtime_ns": 2}
    plain = parse_payload("source.observed", fields)
    pii = parse_payload("source.observed", {**fields, "classification": "pii"})
    assert isinstance(plain, SourceObserved)
    assert isinstance(pii, SourceObserved)
    assert (plain.classification, pii.classification) == (None, "pii")
    rotated = parse_payload(
        "keys.rotated", {"old_keks": ["file:a"], "new_kek": "file:b", "data_keys": ["d"]}
    )
    assert isinstance(rotated, KeysRotated)
    assert (rotated.old_keks, rotated.new_kek) == (["file:a"], "file:b")
    assert not rotated.reencrypted
    resealed = parse_payload(
        "keys.rotated",
        {
            "old_keks": [],
            "new_kek": "",
            "data_keys": ["n"],
            "reencrypted": True,
            "objects": 7,
            "retired_data_keys": ["d"],
        },
    )
    assert isinstance(resealed, KeysRotated)
    assert (resealed.reencrypted, resealed.objects, resealed.retired_data_keys) == (
        True,
        7,
        ["d"],
    )
    kept = parse_payload("keys.keyring", {"keyring": {"kind": "pipetrail.keyring"}})
    assert isinstance(kept, KeyringKept)
    assert kept.keyring == {"kind": "pipetrail.keyring"}
