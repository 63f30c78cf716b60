"""``check --baseline``: the params that differ from the baseline are listed, in every form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.runner import run_pipeline
from pipetrail.verify.check import param_changes, run_check
from pipetrail.verify.markdown import check_markdown

if TYPE_CHECKING:
    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPE = """
from pipetrail import pipeline, step

@step
def make(n: int, label: str) -> list[int]:
    return list(range(n))

@step
def score(xs: list[int]) -> float:
    return float(len(xs))

@pipeline
def gated(n: int = 3, label: str = "a", opts: dict = {"depth": 2, "fast": True}):
    return score(make(n, label))
"""


@pytest.fixture
def definition(files: PipelineFiles) -> Any:
    return files.load("gated_params_mod", PIPE)


def test_check_lists_the_params_that_differ_from_the_baseline(
    project: Project, definition: Any
) -> None:
    base = run_pipeline(definition, {}, project).id
    report = run_check(
        project, definition, {"label": "b", "opts": {"depth": 5, "fast": True}}, baseline=base
    )
    baseline = report.to_dict()["baseline"]
    assert baseline["params"] == [
        {"name": "label", "baseline": "a", "current": "b", "change": "changed"},
        {"name": "opts.depth", "baseline": 2, "current": 5, "change": "changed"},
    ]
    # The label does not change the result: the gate passes and still says what differs.
    assert report.passed
    assert "2 param(s) differ: label, opts.depth" in baseline["why"]
    text = check_markdown(report.to_dict())
    assert f"### Params that differ from baseline `{base}`" in text
    assert '| label | "a" | "b" |' in text
    assert "| opts.depth | 2 | 5 |" in text


def test_a_param_that_changes_results_is_named_in_the_failure(
    project: Project, definition: Any
) -> None:
    base = run_pipeline(definition, {}, project).id
    report = run_check(project, definition, {"n": 4}, baseline=base)
    assert not report.passed
    failure = next(f for f in report.failures if "baseline" in f)
    assert "1 param(s) differ: n" in failure
    assert report.to_dict()["baseline"]["params"] == [
        {"name": "n", "baseline": 3, "current": 4, "change": "changed"}
    ]


def test_same_params_list_nothing(project: Project, definition: Any) -> None:
    base = run_pipeline(definition, {}, project).id
    report = run_check(project, definition, {}, baseline=base)
    assert report.to_dict()["baseline"]["params"] == []
    assert "Params that differ" not in check_markdown(report.to_dict())


def test_param_changes_added_removed_and_type() -> None:
    changes = param_changes(
        {"a": 1, "b": {"c": 1}, "gone": "x"}, {"a": 1.0, "b": {"c": 1}, "new": 2}
    )
    assert changes == [
        {"name": "a", "baseline": 1, "current": 1.0, "change": "changed"},
        {"name": "gone", "baseline": "x", "current": None, "change": "removed"},
        {"name": "new", "baseline": None, "current": 2, "change": "added"},
    ]
    data: dict[str, Any] = {
        "passed": True, "pipeline": "p", "run_id": "r", "seed": 0, "run_status": "completed",
        "failures": [], "contracts": {},
        "baseline": {"baseline_run_id": "b", "verdict": "reproduced", "why": "-", "ok": True,
                     "params": changes},
    }  # fmt: skip
    text = check_markdown(data)
    assert '| gone | "x" | (not set) |' in text
    assert "| new | (not set) | 2 |" in text
