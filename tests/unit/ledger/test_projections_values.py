"""The projections' value builders give the values of their row builders, in column order."""

from __future__ import annotations

from typing import Any

import pytest

from pipetrail.hashing.canonical import member_json
from pipetrail.ledger.events import Event
from pipetrail.ledger.projection_rows import (
    ARTIFACT_ROW_COLUMNS,
    IO_ROW_COLUMNS,
    METRIC_ROW_COLUMNS,
    PARAM_ROW_COLUMNS,
    RUN_ROW_COLUMNS,
    STEP_ROW_COLUMNS,
    artifact_row,
    artifact_values,
    io_rows,
    io_values,
    metric_rows,
    metric_values,
    param_text,
    run_param_rows,
    run_param_values,
    run_row,
    run_values,
    step_row,
    step_values,
    step_values_at,
)

TS = "2026-01-01T00:00:00.000000Z"
EVENT = Event(7, TS, "tester", "step.completed", "R1", "{}", "blake3:0", "blake3:1")
STEP: dict[str, Any] = {
    "step_run_id": "S1", "run_id": "R1", "node_id": "train", "step": "train", "pipeline": "p",
    "started_at": TS, "ended_at": TS, "inputs": {"data": "blake3:a"},
    "outputs": {"model": "blake3:b", "score": "blake3:c"}, "components": {"code": "x"},
    "output_metrics": {"auc": 0.9, "rows": 3, "flag": True}, "metrics": {"loss": {"last": 0.5}},
    "seed": 11, "decision": "miss",
}  # fmt: skip


def test_step_values_are_the_step_row_in_column_order() -> None:
    for encode in (None, member_json):
        row = step_row("completed", EVENT, STEP, encode)
        assert list(row) == list(STEP_ROW_COLUMNS)
        assert tuple(row.values()) == step_values("completed", EVENT, STEP, encode)


def test_step_values_at_a_seq_keep_the_first_seq_they_are_given() -> None:
    row = step_values("completed", EVENT, STEP, member_json)
    assert step_values_at("completed", EVENT.seq, STEP, member_json) == row
    first = STEP_ROW_COLUMNS.index("first_seq")
    kept = step_values_at("completed", EVENT.seq, STEP, member_json, 3)
    assert kept == (*row[:first], 3, *row[first + 1 :])
    assert kept[STEP_ROW_COLUMNS.index("last_seq")] == EVENT.seq


def test_a_step_row_leaves_an_absent_json_member_none_without_encoding_it() -> None:
    seen: list[Any] = []

    def encode(value: Any) -> str:
        seen.append(value)
        return "encoded"

    started = {k: STEP[k] for k in ("step_run_id", "run_id", "node_id", "step", "pipeline",
                                    "started_at")}  # fmt: skip
    row = step_row("running", EVENT, started, encode)
    assert seen == []
    assert [row[c] for c in ("components", "inputs", "outputs", "resources")] == [None] * 4
    assert step_row("completed", EVENT, STEP, encode)["inputs"] == "encoded"
    assert seen == [STEP["components"], STEP["inputs"], STEP["outputs"]]


def test_a_step_row_raises_what_it_meets_first_in_column_order() -> None:
    """The replay names an event by what its projection raises: the first problem met."""

    def encode(value: Any) -> str:
        raise ValueError(f"cannot encode {value!r}")

    with pytest.raises(KeyError, match="node_id"):  # read before any JSON member
        step_values_at("completed", 7, {k: v for k, v in STEP.items() if k != "node_id"}, encode)
    with pytest.raises(ValueError, match="x"):  # the components, before the start time
        step_values_at("completed", 7, {k: v for k, v in STEP.items() if k != "started_at"}, encode)
    with pytest.raises(KeyError, match="step_run_id"):
        step_values_at("completed", 7, {k: v for k, v in STEP.items() if k != "step_run_id"})
    with pytest.raises(KeyError, match="started_at"):
        step_values_at("running", 7, {k: v for k, v in STEP.items() if k != "started_at"})


def test_a_step_without_inputs_outputs_or_metrics_has_no_rows_of_them() -> None:
    bare = {"node_id": "train", "inputs": {}, "outputs": None, "metrics": {}}
    assert io_values(bare, outputs=True) == []
    assert metric_values(bare) == []
    # the ids are read for a first row only, as they always were
    for outputs in (True, False):
        with pytest.raises(KeyError, match="step_run_id"):
            io_values({"inputs": {"d": "blake3:a"}}, outputs=outputs)


def test_io_and_metric_values_are_their_rows_in_column_order() -> None:
    for outputs in (True, False):
        rows = io_rows(STEP, outputs=outputs)
        assert [tuple(r.values()) for r in rows] == io_values(STEP, outputs=outputs)
        assert all(list(r) == list(IO_ROW_COLUMNS) for r in rows)
    assert len(io_values(STEP, outputs=True)) == 3
    rows = metric_rows(STEP)
    assert [tuple(r.values()) for r in rows] == metric_values(STEP)
    assert all(list(r) == list(METRIC_ROW_COLUMNS) for r in rows)
    assert [r[1] for r in metric_values(STEP)] == ["auc", "loss", "rows"]  # not the bool


def test_run_rows_encode_as_canonical_json_with_the_batch_encoder() -> None:
    run = {
        "run_id": "R1", "pipeline": "p", "pipeline_fingerprint": "f", "owner": "o", "host": "h",
        "process": 1, "params": {"lr": 0.1, "n": 2.0, "tag": None}, "seed": 3, "started_at": TS,
        "git": {"sha": "abc", "dirty": False}, "extra": [1, "é"],
    }  # fmt: skip
    assert run_row(EVENT, run, member_json) == run_row(EVENT, run)
    assert run_param_rows(run, member_json) == run_param_rows(run)
    assert param_text(None, member_json) == "null"
    assert param_text(2.0, member_json) == "2"
    assert run_row(EVENT, {**run, "params": None, "git": None}, member_json)["params"] == "null"
    assert run_row(EVENT, {**run, "git": None}, member_json)["git"] is None


RUN: dict[str, Any] = {
    "run_id": "R1", "pipeline": "p", "pipeline_fingerprint": "f", "owner": "o", "host": "h",
    "process": "1:2", "params": {"lr": 0.1, "n": 2.0, "tag": None, "b": True, "s": "x"},
    "seed": 3, "started_at": TS, "git": {"sha": "abc", "dirty": False}, "extra": [1, "é"],
    "environment": "blake3:e", "steps_total": 4, "name": "first", "purpose": "reproduce",
    "tags": {"k": "v"},
}  # fmt: skip
# Payloads the two builders must agree on: members absent, None, empty or of other types.
RUNS = [
    RUN,
    {**RUN, "params": None, "git": None},
    {**RUN, "params": {}, "purpose": "", "reproduces": "R0"},
    {k: v for k, v in RUN.items() if k not in ("environment", "steps_total", "name", "purpose")},
    {**RUN, "params": {"big": 2**70, "nan": float("nan"), "e": 1e16, "nested": {"b": 1, "a": 2}}},
    {**RUN, "seed": None, "git": {"untracked": ["a", "b"]}, "pipeline_file": None},
]


@pytest.mark.parametrize("p", RUNS)
def test_run_values_are_the_run_row_in_column_order(p: dict[str, Any]) -> None:
    for encode in (None, member_json):
        if encode is not None and p is RUNS[4]:
            continue  # not a payload orjson wrote: member_json is never its encoder
        row = run_row(EVENT, p, encode)
        assert tuple(row) == RUN_ROW_COLUMNS
        values = run_values(EVENT.seq, p, encode)
        assert values == tuple(row.values())
        assert list(map(type, values)) == list(map(type, row.values()))
        rows = run_param_rows(p, encode)
        assert all(tuple(r) == PARAM_ROW_COLUMNS for r in rows)
        found = run_param_values(p, encode)
        assert found == [tuple(r.values()) for r in rows]
        assert [list(map(type, r)) for r in found] == [list(map(type, r.values())) for r in rows]


@pytest.mark.parametrize("params", [None, {}, 0, "", [], "text", 5, ["a"]])
def test_run_param_values_fail_where_the_rows_fail(params: Any) -> None:
    """Parameters that are not an object give no rows, or raise, as run_param_rows does."""
    p = {**RUN, "params": params}
    try:
        rows = [tuple(r.values()) for r in run_param_rows(p)]
    except AttributeError:
        with pytest.raises(AttributeError):
            run_param_values(p)
    else:
        assert run_param_values(p) == rows
    with pytest.raises(KeyError):
        run_param_values({k: v for k, v in RUN.items() if k != "params"})
    with pytest.raises(KeyError):
        run_values(1, {k: v for k, v in RUN.items() if k != "owner"})


def test_artifact_values_are_the_artifact_row_in_column_order() -> None:
    from pipetrail.hashing.canonical import canonical_json

    artifact = {
        "digest": "blake3:a", "blob": "blake3:b", "serializer": "json", "type_name": "dict",
        "size": 9, "meta": {"rows": 3, "name": "é"}, "role": "output", "run_id": "R1",
    }  # fmt: skip
    for encode in (member_json, canonical_json):
        row = artifact_row(EVENT, artifact, encode=encode)
        assert list(row) == list(ARTIFACT_ROW_COLUMNS)
        assert tuple(row.values()) == artifact_values(EVENT, artifact, encode)
    values = artifact_values(EVENT, artifact, canonical_json)
    assert values[5] == '{"name":"é","rows":3}'
    assert values[7:] == ("R1", None, TS, 7)  # no step run: NULL
