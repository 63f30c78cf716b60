"""A process running many pipelines stores an unchanged environment once, a changed one anew.

The environment snapshot a run records is stored as an artifact; runs in one process
into one store reuse the record while the snapshot is the same
(:mod:`pipetrail.execution.environment_record`), and store it again when anything in it
changed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventKind

if TYPE_CHECKING:
    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPE = """
from pipetrail import pipeline, step

@step
def add(x: int) -> int:
    return x + 1

@pipeline
def pipe(x: int = 0):
    return add(x)
"""


def _environment_digest(project: Project, run_id: str) -> str:
    for event in project.ledger.iter_events():
        if event.kind == EventKind.RUN_STARTED and event.run_id == run_id:
            return str(event.payload["environment"])
    raise AssertionError(f"no run.started for {run_id}")


def _dumps_of_environments(project: Project, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    dumped: list[Any] = []
    registry = project.registry
    real = registry.dump

    def counting(value: Any, store: Any, **kwargs: Any) -> Any:
        if isinstance(value, dict) and "distributions" in value:
            dumped.append(value)
        return real(value, store, **kwargs)

    monkeypatch.setattr(registry, "dump", counting)
    return dumped


def test_an_unchanged_environment_is_stored_once_a_changed_one_again(
    project: Project, files: PipelineFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = files.load("env_pipe", PIPE, "pipe")
    dumped = _dumps_of_environments(project, monkeypatch)
    first = run_pipeline(pipe, {"x": 1}, project, RunOptions())
    second = run_pipeline(pipe, {"x": 2}, project, RunOptions())
    assert len(dumped) == 1
    digest = _environment_digest(project, first.id)
    assert _environment_digest(project, second.id) == digest

    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # recorded in the snapshot
    third = run_pipeline(pipe, {"x": 3}, project, RunOptions())
    assert len(dumped) == 2
    changed = _environment_digest(project, third.id)
    assert changed != digest
    record = project.ledger.reader().artifact(changed)
    assert record is not None
    snapshot = json.loads(project.store.get_bytes(record["blob"]))
    assert snapshot["env_vars"]["OMP_NUM_THREADS"] == "3"
