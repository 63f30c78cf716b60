"""Stable node identity through real runs: cache hits and pairing when a list changes.

A fan-out pipeline trains one model per kind and evaluates each; the accuracy depends on
the kind, so a comparison that pairs by call position shows invented deltas. Runs use
the real runner, SQLite ledger and local store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.explain import explain_step
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.lineage.compare import compare_runs
from pipetrail.lineage.diff import diff_runs
from pipetrail.verify.check import run_check
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.execution.project import Project

pytestmark = pytest.mark.integration

FAN_OUT = """
import random
from pipetrail import pipeline, step

SCORES = {"lr": 0.7, "rf": 0.9, "svm": 0.8}

@step
def load() -> list[int]:
    return list(range(10))

@step
def train(rows: list[int], kind: str, C: float = 1.0) -> dict:
    return {"kind": kind, "C": C, "noise": random.random()}

@step
def evaluate(model: dict) -> dict:
    return {"accuracy": SCORES[model["kind"]] + model["C"] / 100}

@pipeline
def models(kinds: list[str] = ["lr", "rf"], named: bool = False, C: float = 1.0,
           repeat: int = 1):
    rows = load()
    out = []
    for kind in kinds:
        for _ in range(repeat):
            if named:
                model = train.named(kind)(rows, kind=kind, C=C)
            else:
                model = train(rows, kind=kind, C=C)
            out.append(evaluate(model))
    return out
"""


@pytest.fixture
def fan_out(files: PipelineFiles, unique: Callable[[str], str]) -> PipelineDefinition:
    return files.load(unique("fan"), FAN_OUT)


def _run(definition: PipelineDefinition, project: Project, **params: Any) -> Any:
    return run_pipeline(definition, params, project, RunOptions())


def test_a_reordered_list_gives_cache_hits_and_pairs_the_same_configurations(
    fan_out: PipelineDefinition, project: Project
) -> None:
    first = _run(fan_out, project, kinds=["lr", "rf"])
    second = _run(fan_out, project, kinds=["rf", "lr"])
    assert set(statuses(second).values()) == {"cached"}
    # Each configuration got its seed back, so its output too.
    assert sorted(
        d["noise"] for d in [second.output_of("train"), second.output_of("train[1]")]
    ) == sorted(d["noise"] for d in [first.output_of("train"), first.output_of("train[1]")])
    result = diff_runs(project, first.id, second.id)
    pairs = {(p.a, p.b) for p in result.nodes.pairs}
    assert ("train", "train[1]") in pairs
    assert ("evaluate", "evaluate[1]") in pairs
    assert result.nodes.added == result.nodes.removed == ()
    assert result.nodes.ambiguous == ()
    assert all(m.delta == 0 for m in result.metrics)
    assert result.steps == []  # nothing differs once paired
    assert result.step_seeds == {}


def test_a_grown_list_pairs_by_params_and_lists_the_new_nodes_as_added(
    fan_out: PipelineDefinition, project: Project
) -> None:
    first = _run(fan_out, project, kinds=["lr", "rf"])
    second = _run(fan_out, project, kinds=["svm", "lr", "rf"])
    assert statuses(second) == {
        "load": "cached",
        "train": "completed",
        "evaluate": "completed",
        "train[1]": "cached",
        "evaluate[1]": "cached",
        "train[2]": "cached",
        "evaluate[2]": "cached",
    }
    result = diff_runs(project, first.id, second.id)
    metrics = {m.name: m for m in result.metrics}
    # evaluate (lr in run A) is evaluate[1] in run B: the same value, no invented delta.
    assert metrics["evaluate.accuracy"].node_id_b == "evaluate[1]"
    assert metrics["evaluate.accuracy"].delta == 0
    assert metrics["evaluate[1].accuracy"].node_id_b == "evaluate[2]"
    assert metrics["evaluate[1].accuracy"].delta == 0
    # The svm branch took the position lr had: marked, never read as run A's node.
    added = metrics["evaluate.accuracy (added in run B)"]
    assert (added.a, added.b) == (None, pytest.approx(0.81))
    assert result.nodes.added == ("train", "evaluate")
    steps = {(s.node_id, s.paired_by) for s in result.steps}
    assert steps == {("train", "added"), ("evaluate", "added")}
    data = result.to_dict()
    assert data["nodes"]["added"] == ["train", "evaluate"]
    assert {"a": "train", "b": "train[1]", "by": "params"} in data["nodes"]["pairs"]


def test_naming_nodes_keeps_cache_hits_and_pairs_by_name_when_params_change(
    fan_out: PipelineDefinition, project: Project
) -> None:
    unnamed = _run(fan_out, project, kinds=["lr", "rf"])
    named = _run(fan_out, project, kinds=["lr", "rf"], named=True)
    assert set(statuses(named).values()) == {"cached"}  # a name is a label, not a key
    assert set(statuses(named)) == {"load", "train[lr]", "evaluate", "train[rf]", "evaluate[1]"}
    paired = {(p.a, p.b, p.by) for p in diff_runs(project, unnamed.id, named.id).nodes.pairs}
    assert ("train", "train[lr]", "params") in paired
    # Every model's C changes, and the list is reordered: only the names pair them.
    changed = _run(fan_out, project, kinds=["rf", "lr"], named=True, C=2.0)
    result = diff_runs(project, named.id, changed.id)
    paired = {(p.a, p.b, p.by) for p in result.nodes.pairs}
    assert ("train[lr]", "train[lr]", "name") in paired
    assert ("evaluate", "evaluate[1]", "params") in paired  # follows its named producer
    metrics = {m.name: m for m in result.metrics}
    assert metrics["evaluate.accuracy"].delta == pytest.approx(0.01)  # lr, C 1 -> 2
    assert metrics["evaluate[1].accuracy"].delta == pytest.approx(0.01)  # rf
    steps = {s.node_id: s for s in result.steps}
    # In a fan-out the params are part of a call's identity, so its seed changes too.
    assert steps["train[lr]"].changed == ["params", "seed"]
    assert steps["train[lr]"].paired_by == "name"


def test_identical_unnamed_calls_are_reported_ambiguous_not_guessed(
    fan_out: PipelineDefinition, project: Project
) -> None:
    first = _run(fan_out, project, kinds=["lr"], repeat=2)
    second = _run(fan_out, project, kinds=["lr"], repeat=2)
    result = diff_runs(project, first.id, second.id)
    groups = {g.step: g for g in result.nodes.ambiguous}
    assert groups["train"].a == groups["train"].b == ("train", "train[1]")
    assert groups["evaluate"].a == ("evaluate", "evaluate[1]")
    assert [p.a for p in result.nodes.pairs] == ["load"]
    assert any("cannot be paired" in note for note in result.verdict.notes)
    data = result.to_dict()
    assert data["nodes"]["ambiguous"][0]["reason"].startswith("same step, params")
    assert {s.paired_by for s in result.steps} <= {"ambiguous"}


def test_compare_names_each_runs_metrics_by_the_baselines_nodes(
    fan_out: PipelineDefinition, project: Project
) -> None:
    base = _run(fan_out, project, kinds=["lr", "rf"])
    reordered = _run(fan_out, project, kinds=["rf", "lr"])
    table = compare_runs(project, [base.id, reordered.id])
    row = table.runs[1]
    assert row.metrics["evaluate.accuracy"] == table.runs[0].metrics["evaluate.accuracy"]
    assert set(row.deltas.values()) == {0.0}  # noise included: same seeds, same values
    assert set(row.deltas) == set(table.runs[0].metrics)
    assert row.pairing is not None
    assert row.pairing.ambiguous == ()
    assert set(table.metric_names) == set(table.runs[0].metrics)


def test_why_compares_with_the_paired_node_not_the_same_position(
    fan_out: PipelineDefinition, project: Project
) -> None:
    _run(fan_out, project, kinds=["lr", "rf"])
    grown = _run(fan_out, project, kinds=["svm", "lr", "rf"])
    reader = project.reader()
    lr = explain_step(reader, grown.id, "train[1]")
    assert lr["previous"]["node_id"] == "train"
    assert lr["pairing"]["by"] == "params"
    assert lr["changed"] == []
    svm = explain_step(reader, grown.id, "train")
    assert svm["previous"] is None
    assert "added since" in svm["pairing"]["note"]


def test_check_against_a_baseline_with_a_reordered_list_matches(
    fan_out: PipelineDefinition, project: Project
) -> None:
    base = _run(fan_out, project, kinds=["lr", "rf"])
    report = run_check(project, fan_out, {"kinds": ["rf", "lr"]}, baseline=base.id)
    assert report.baseline is not None
    assert report.baseline["ok"], report.baseline["why"]
    assert report.baseline["nodes"]["ambiguous"] == []
    assert report.passed, report.failures
