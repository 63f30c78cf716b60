"""Exports of hand-made run snapshots: cases a real run cannot easily produce (a crash)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipetrail.lineage.exports import (
    ExportError,
    RunSnapshot,
    intoto_statement,
    openlineage_events,
    prov_document,
    render_export,
    run_uuid,
)
from pipetrail.lineage.exports.prov import entity_id
from tests.unit.lineage_exports.ol_schema import validate_event

RUN_ID = "01M8DQB5A3WVQQ58H2849A2SYM"
SOURCE = "blake3:" + "a" * 64
TABLE = "blake3:" + "b" * 64
CODE = "blake3:" + "c" * 64
ENV = "blake3:" + "e" * 64


def _step(step_run_id: str, node_id: str, status: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "step_run_id": step_run_id,
        "run_id": RUN_ID,
        "node_id": node_id,
        "step": node_id,
        "pipeline": "demo",
        "status": status,
        "cache_key": "blake3:" + "f" * 64,
        "cache_decision": "miss",
        "cache_reason": "no earlier step run has this cache key",
        "reused_step_run_id": None,
        "code_digest": "blake3:" + "d" * 64,
        "inputs": {},
        "outputs": {},
        "logs": None,
        "seed": 1,
        "started_at": "2026-01-02T03:04:05.000001Z",
        "ended_at": None,
        "error": None,
        "traceback": None,
    }
    row.update(extra)
    return row


def make_snapshot(status: str = "crashed") -> RunSnapshot:
    load = _step(
        "01M8DQB5SE037W426FA2SPN0MW",
        "load",
        "completed",
        inputs={"raw": SOURCE},
        outputs={"output": TABLE},
        ended_at="2026-01-02T03:04:06.000000Z",
    )
    train = _step("01M8DQB5T7S451EHZV2M7QK23A", "train", "running", inputs={"df": TABLE})
    return RunSnapshot(
        run={
            "run_id": RUN_ID,
            "pipeline": "demo",
            "pipeline_fingerprint": "blake3:" + "9" * 64,
            "status": status,
            "owner": "ada@lab",
            "host": "lab1",
            "params": {"k": 1},
            "seed": 0,
            "git": None,
            "environment": ENV,
            "record": {"nodes": {"load": {"upstream": []}, "train": {"upstream": ["load"]}}},
            "started_at": "2026-01-02T03:04:05.000000Z",
            "ended_at": "2026-01-02T03:09:00.000000Z",
            "error": "the process running it ended without recording an outcome",
        },
        steps=[load, train],
        sources=[
            {
                "path": "data/x.csv",
                "digest": SOURCE,
                "by_reference": 0,
                "observed_at": "2026-01-02T03:04:05.000000Z",
            }
        ],
        artifacts={
            TABLE: {
                "digest": TABLE,
                "role": "output",
                "type_name": "pandas.DataFrame",
                "serializer": "parquet",
                "size": 1234,
                "meta": {"rows": 3, "schema": [{"name": "age", "type": "int64"}]},
            },
            CODE: {
                "digest": CODE,
                "role": "code",
                "type_name": "text/x-python",
                "serializer": "bytes",
                "size": 10,
                "meta": {"step": "load"},
            },
        },
        code={"01M8DQB5SE037W426FA2SPN0MW": CODE},
        namespace="pipetrail://lab",
        root=Path("/srv/lab"),
    )


def test_a_crashed_run_aborts_with_its_unfinished_steps() -> None:
    events = openlineage_events(make_snapshot())
    for event in events:
        validate_event(event)
    kinds = [(e["job"]["name"], e["eventType"]) for e in events]
    assert kinds == [
        ("demo", "START"),
        ("demo.load", "START"),
        ("demo.load", "COMPLETE"),
        ("demo.train", "START"),
        ("demo.train", "ABORT"),
        ("demo", "ABORT"),
    ]
    train_end = events[4]
    assert train_end["eventTime"] == "2026-01-02T03:09:00.000000Z"  # the run's end
    assert "ended without" in train_end["run"]["facets"]["errorMessage"]["message"]
    assert train_end["run"]["facets"]["parent"]["run"]["runId"] == run_uuid(RUN_ID)
    assert train_end["outputs"] == []
    assert train_end["inputs"][0]["name"] == "demo.load.output"


def test_sources_are_named_by_absolute_path_on_the_run_host() -> None:
    start = openlineage_events(make_snapshot())[0]
    (source,) = start["inputs"]
    assert (source["namespace"], source["name"]) == ("file://lab1", "/srv/lab/data/x.csv")
    assert source["facets"]["version"]["datasetVersion"] == SOURCE


def test_openlineage_text_is_one_sorted_json_event_per_line() -> None:
    events = openlineage_events(make_snapshot())
    lines = render_export(events, "openlineage").splitlines()
    assert [json.loads(line) for line in lines] == events
    assert lines[0] == json.dumps(events[0], sort_keys=True)


def test_intoto_refuses_a_run_that_did_not_complete() -> None:
    with pytest.raises(ExportError, match=r"crashed; in-toto provenance attests a completed"):
        intoto_statement(make_snapshot())


def test_intoto_refuses_a_completed_run_without_outputs() -> None:
    snap = make_snapshot(status="completed")
    empty = RunSnapshot(**{**snap.__dict__, "steps": []})
    with pytest.raises(ExportError, match="produced no artifact"):
        intoto_statement(empty)


def test_prov_ends_an_unfinished_step_with_its_run_and_generates_nothing_for_it() -> None:
    doc = prov_document(make_snapshot())
    train = doc["activity"]["pipetrail:steprun-01M8DQB5T7S451EHZV2M7QK23A"]
    assert train["prov:endTime"] == "2026-01-02T03:09:00.000000Z"
    generated = {g["prov:entity"] for g in doc["wasGeneratedBy"].values()}
    assert generated == {entity_id(TABLE)}
    plans = [a.get("prov:plan") for a in doc["wasAssociatedWith"].values()]
    assert entity_id(CODE) in plans
