"""Artifacts a run queues without asking the ledger are recorded once, as before."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest

from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventKind

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

CHAIN = """
from pipetrail import pipeline, step

@step
def inc(x: int) -> int:
    print("ran", x)  # logs: one more artifact per step
    return x + 1

@pipeline
def chain(n: int = 8) -> int:
    x = inc(0)
    for _ in range(n - 1):
        x = inc(x)
    return x
"""


@pytest.mark.integration
def test_a_run_without_cache_records_no_artifact_a_run_before_recorded(
    project_root: Path, files: PipelineFiles
) -> None:
    definition = files.load("chain", CHAIN)
    project = Project.at(project_root)
    try:
        first = run_pipeline(definition, {}, project, RunOptions())
        again = run_pipeline(definition, {}, project, RunOptions(cache=False))
        assert again.outputs == first.outputs == 8
        recorded = [
            e for e in project.ledger.iter_events() if e.kind == EventKind.ARTIFACT_RECORDED
        ]
        per_digest = Counter(e.payload["digest"] for e in recorded)
        assert per_digest, "the first run records its outputs, logs and code"
        assert max(per_digest.values()) == 1
        # The second run stored no new bytes but its steps' logs: each step run's log is
        # its own (its lines carry the step run's ids and times).
        stored_again = {e.run_id for e in recorded if e.payload["role"] != "logs"}
        assert stored_again == {first.id}
        again_logs = [e for e in recorded if e.run_id == again.id]
        assert again_logs
        assert {e.payload["role"] for e in again_logs} == {"logs"}
        assert [s["status"] for s in again.steps()] == ["completed"] * 8
        assert project.ledger.verify().ok
    finally:
        project.close()
