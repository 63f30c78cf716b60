"""The end-of-run line's read (``run_outcome``) agrees with the full run summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import NotFoundError, StepFailedError
from pipetrail.execution.explain import run_summary
from pipetrail.execution.outcome import run_outcome
from pipetrail.execution.runner import run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPELINE = """
from pipetrail import pipeline, step

@step
def first(n: int) -> int:
    return n + 1

@step
def second(x: int, fail: bool) -> int:
    if fail:
        raise ValueError("asked to fail")
    return x * 2

@pipeline
def two(n: int = 1, fail: bool = False):
    return second(first(n), fail)
"""


def _same_as_summary(project: Project, run_id: str) -> dict[str, Any]:
    outcome = run_outcome(project.reader(), run_id)
    summary = run_summary(project.reader(), run_id)
    assert outcome == {
        "run_id": summary["run_id"],
        "status": summary["status"],
        "steps_total": summary["steps_total"],
        "steps": [
            {"node_id": s["node_id"], "step": s["step"], "status": s["status"]}
            for s in summary["steps"]
        ],
    }
    return outcome


def test_completed_cached_and_failed_runs_read_as_in_the_summary(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("two"), PIPELINE)
    first = run_pipeline(definition, {}, project)
    outcome = _same_as_summary(project, first.id)
    assert outcome["status"] == "completed"
    assert [s["status"] for s in outcome["steps"]] == ["completed", "completed"]
    again = run_pipeline(definition, {}, project)
    outcome = _same_as_summary(project, again.id)
    assert [s["status"] for s in outcome["steps"]] == ["cached", "cached"]
    assert run_outcome(project.reader(), "latest")["run_id"] == again.id
    with pytest.raises(StepFailedError) as failed:
        run_pipeline(definition, {"fail": True}, project)
    outcome = _same_as_summary(project, str(failed.value.run_id))
    assert outcome["status"] == "failed"
    assert [s["status"] for s in outcome["steps"]] == ["cached", "failed"]


def test_an_unknown_run_is_named(project: Project) -> None:
    with pytest.raises(NotFoundError, match="no-such-run"):
        run_outcome(project.reader(), "no-such-run")
