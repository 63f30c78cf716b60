"""Fast steps append their events in batches; nothing waits longer than the bound.

A step whose code ran fast the last time may start with the events before it still
queued (docs/adr/0017-batched-ledger-writes.md); should it run long, the run's flush timer
appends them from its own connection. The step here looks into the ledger from a
connection of its own while it runs, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.flushing import (
    FAST_STEP_S,
    MAX_DELAY_S,
    MAX_PENDING,
    StepTimes,
    must_flush_before,
)
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventKind
from pipetrail.ledger.ledger import Ledger

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

PROBE = """
import time
from pipetrail import pipeline, step
from pipetrail.ledger.ledger import Ledger

@step
def work(x: int, pause: float, url: str) -> list:
    if pause:
        time.sleep(pause)
    with Ledger.open(url, actor="probe") as ledger:
        kinds = [e.kind for e in ledger.iter_events()]
    return [x + 1, kinds.count("step.completed"), kinds.count("step.started")]

@pipeline
def probe(url: str, pause: float = 0.0, n: int = 6):
    x = work(0, pause=0.0, url=url)
    for i in range(1, n - 1):
        x = work(i, pause=0.0, url=url)
    return work(n, pause=pause, url=url)
"""


@pytest.mark.integration
@pytest.mark.postgres
def test_a_fast_step_that_runs_long_finds_the_steps_before_it_recorded(
    metadata_url: str, project_root: Path, files: PipelineFiles
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    definition = files.load("probe", PROBE)
    project = Project.at(project_root)
    try:
        run = run_pipeline(
            definition,
            {"url": metadata_url, "pause": MAX_DELAY_S * 6, "n": 6},
            project,
            RunOptions(),
        )
        _, completed, started = run.outputs
        # The last call of `work` started with the events of the calls before it queued
        # (they ran fast); the timer appended them while it slept.
        assert completed == 5
        assert started == 6
        assert project.ledger.verify().ok
        kinds = [e.kind for e in project.ledger.iter_events() if e.run_id == run.id]
        assert kinds.count(EventKind.STEP_COMPLETED) == 6
    finally:
        project.close()


@pytest.mark.integration
def test_fast_steps_share_transactions(project_root: Path, files: PipelineFiles) -> None:
    definition = files.load("probe", PROBE)
    project = Project.at(project_root)
    url = project.ledger.url
    appended: list[int] = []
    original = Ledger.append

    def counting(self: Ledger, drafts: list, **options: Any) -> list:  # type: ignore[type-arg]
        appended.append(len(drafts))
        return original(self, drafts, **options)

    try:
        Ledger.append = counting  # type: ignore[method-assign]
        run_pipeline(definition, {"url": url, "pause": 0.0, "n": 6}, project, RunOptions())
    finally:
        Ledger.append = original  # type: ignore[method-assign]
        project.close()
    # run.started, the first call's own flush, then (at most) a few batches: not one per step.
    assert len(appended) < 6
    assert sum(appended) >= 6 * 2


def test_a_step_with_no_fast_call_yet_starts_after_a_flush() -> None:
    times = StepTimes()
    now = time.monotonic()
    assert must_flush_before(times, 1, 3, now)
    times.record(1, FAST_STEP_S / 10)
    assert not must_flush_before(times, 1, 3, now)
    assert must_flush_before(times, 2, 3, now)  # another step: no history
    times.record(1, FAST_STEP_S * 2)  # ran slow the last time
    assert must_flush_before(times, 1, 3, now)


def test_queued_events_wait_no_longer_than_the_bound() -> None:
    times = StepTimes()
    times.record(1, 0.0)
    assert not must_flush_before(times, 1, 0, None)
    assert must_flush_before(times, 1, 3, time.monotonic() - MAX_DELAY_S)
    assert must_flush_before(times, 1, MAX_PENDING, time.monotonic())
