"""The comparability verdict, metric extraction and evaluation inputs on synthetic facts."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from pipetrail.ledger import Reader
from pipetrail.lineage.compare import (
    Metric,
    RunFacts,
    StepFacts,
    json_number,
    judge,
    metric_delta,
    step_metrics,
)
from pipetrail.lineage.diff import Change, MappingDiff
from pipetrail.lineage.run_facts import _evaluation_inputs


def _step(node: str, *, upstream: tuple[str, ...] = (), **fields: Any) -> StepFacts:
    values: dict[str, Any] = {
        "node_id": node,
        "step": node,
        "status": "completed",
        "code_digest": f"blake3:code-{node}",
        "components": {},
        "inputs": {},
        "outputs": {},
        "seed": 1,
        "upstream": upstream,
    }
    values.update(fields)
    return StepFacts(**values)


def _run(run_id: str = "A", **fields: Any) -> RunFacts:
    steps = {
        "split": _step("split", outputs={"train": "d:train", "test": "d:test"}),
        "fit": _step(
            "fit", upstream=("split",), inputs={"train": "d:train"}, outputs={"output": "d:model"}
        ),
        "evaluate": _step(
            "evaluate",
            upstream=("fit", "split"),
            inputs={"model": "d:model", "test": "d:test"},
        ),
    }
    values: dict[str, Any] = {
        "run_id": run_id,
        "pipeline": "toy",
        "pipeline_fingerprint": "blake3:fp",
        "status": "completed",
        "started_at": "2026-01-01T00:00:00Z",
        "params": {"C": 1.0},
        "seed": 0,
        "environment": None,
        "git_commit": None,
        "sources": {},
        "steps": steps,
        "metrics": {"evaluate.acc": Metric("evaluate.acc", "evaluate", 0.9, "output")},
        "evaluation_inputs": {"evaluate": ("test",)},
    }
    values.update(fields)
    return RunFacts(**values)


def _with_step(run: RunFacts, node: str, **fields: Any) -> RunFacts:
    steps = dict(run.steps)
    steps[node] = dataclasses.replace(steps[node], **fields)
    return dataclasses.replace(run, steps=steps)


def test_param_and_model_differences_are_comparable() -> None:
    b = _with_step(
        _run("B", params={"C": 2.0}),
        "evaluate",
        inputs={"model": "d:other-model", "test": "d:test"},
    )
    verdict = judge(_run(), b)
    assert verdict.comparable
    assert verdict.to_dict()["verdict"] == "comparable"
    assert verdict.evaluation_inputs == {"evaluate": ["test"]}


def test_different_evaluation_data() -> None:
    b = _with_step(_run("B"), "evaluate", inputs={"model": "d:model", "test": "d:other"})
    verdict = judge(_run(), b)
    assert not verdict.comparable
    (reason,) = verdict.reasons
    assert reason.code == "different_evaluation_data"
    assert reason.step == "evaluate"
    assert "test" in reason.message


def test_different_metric_definition() -> None:
    b = _with_step(_run("B"), "evaluate", code_digest="blake3:changed")
    verdict = judge(_run(), b)
    assert [r.code for r in verdict.reasons] == ["different_metric_definition"]
    assert "evaluate.acc" in verdict.reasons[0].message


def test_code_changes_outside_metric_steps_are_comparable() -> None:
    assert judge(_run(), _with_step(_run("B"), "fit", code_digest="blake3:new")).comparable


def test_different_contracts() -> None:
    b = _with_step(_run("B"), "split", components={"contracts": "blake3:c2"})
    verdict = judge(_run(), b)
    assert [(r.code, r.step) for r in verdict.reasons] == [("different_contracts", "split")]


def test_different_pipeline() -> None:
    verdict = judge(_run(), _run("B", pipeline="other"))
    assert [r.code for r in verdict.reasons] == ["different_pipeline"]
    assert verdict.to_dict()["verdict"] == "not comparable"


def test_notes_when_there_are_no_metrics_or_a_metric_step_is_missing() -> None:
    bare = judge(_run(metrics={}), _run("B", metrics={}))
    assert bare.comparable
    assert "neither run recorded metrics" in bare.notes[0]
    steps = {k: v for k, v in _run().steps.items() if k != "evaluate"}
    partial = judge(_run(), _run("B", steps=steps, metrics={}))
    assert partial.comparable
    assert partial.notes == ("metric step 'evaluate' ran only in run A",)


class _Artifacts(Reader):
    """A reader whose only rows are artifact records by digest."""

    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records

    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return []

    def artifact(self, digest: str) -> dict[str, Any] | None:
        record = self.records.get(digest)
        return {"digest": digest, "meta": {}, **record} if record else None


def test_evaluation_inputs_by_descent() -> None:
    run = _run()
    found = _evaluation_inputs(run.steps["evaluate"], run.steps, set(), _Artifacts({}))
    assert found == ("test",)


def test_evaluation_inputs_by_format_when_no_input_descends_from_another() -> None:
    steps = {
        "model": _step("model", outputs={"output": "d:model"}),
        "holdout": _step("holdout", outputs={"output": "d:table"}),
        "score": _step(
            "score",
            upstream=("model", "holdout"),
            inputs={"m": "d:model", "t": "d:table", "raw": "d:src"},
        ),
    }
    reader = _Artifacts(
        {
            "d:model": {"serializer": "skops", "type_name": "sklearn.Model"},
            "d:table": {"serializer": "parquet", "type_name": "pandas.DataFrame"},
        }
    )
    found = _evaluation_inputs(steps["score"], steps, {"d:src"}, reader)
    assert found == ("raw", "t")


def test_step_metrics_reads_logged_metrics_last_values() -> None:
    facts = _step(
        "train",
        outputs={"metric:train/loss": "d:series"},
        logged_metrics={
            "train/loss": {"digest": "d:series", "last": 0.25, "min": 0.2, "max": 1.0},
            "broken": {"digest": "d:x"},
        },
    )
    found, notes = step_metrics(cast("Any", None), facts)  # no returned outputs to read
    assert found == {"train.train/loss": Metric("train.train/loss", "train", 0.25, "logged")}
    assert notes == []


def test_mapping_diff_and_numbers() -> None:
    assert MappingDiff.between({"a": 1, "b": 2}, {"b": 3, "c": 4}) == MappingDiff(
        added={"c": 4}, removed={"a": 1}, changed={"b": Change(2, 3)}
    )
    assert MappingDiff.between({"a": 1}, {"a": 1}).empty
    assert metric_delta(0.5, 0.75) == pytest.approx(0.25)
    assert metric_delta(None, 1.0) is None
    assert metric_delta(float("nan"), 1.0) is None
    assert json_number(float("inf")) == "inf"
    assert json_number(2.5) == 2.5
