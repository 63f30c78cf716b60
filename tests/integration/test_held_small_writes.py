"""During a run small outputs wait in memory, yet no record ever names one not committed.

Each step looks, from connections of its own (a new ledger connection, a new store
object), at every output the ledger already records and counts those the store does not
hold: the runner commits the held objects before every append, from the main thread and
from the flush timer's thread (a fast step that runs long: docs/adr/0017).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.execution.flushing import MAX_DELAY_S
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.store import LocalStore

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

PROBE = """
import json
import time
from pipetrail import pipeline, step
from pipetrail.ledger.ledger import Ledger
from pipetrail.store import LocalStore

@step
def work(x: int, pause: float, url: str, objects: str, look: bool) -> list:
    if not look:  # fast: the calls after the first start with the events still queued
        return [x + 1, 0, 0]
    time.sleep(pause)
    store = LocalStore(objects)
    recorded = missing = 0
    with Ledger.open(url, actor="probe") as ledger:
        for event in ledger.iter_events():
            if event.kind == "step.completed":
                for digest in json.loads(event.payload_text)["outputs"].values():
                    recorded += 1
                    missing += not store.exists(digest)
    return [x + 1, recorded, missing]

@pipeline
def probe(url: str, objects: str, pause: float = 0.0, n: int = 6):
    x = work(0, pause=0.0, url=url, objects=objects, look=False)
    for i in range(1, n - 1):
        x = work(i, pause=0.0, url=url, objects=objects, look=False)
    return work(n, pause=pause, url=url, objects=objects, look=True)
"""


@pytest.mark.integration
@pytest.mark.parametrize("pause", [0.0, MAX_DELAY_S * 6])
def test_every_output_a_record_names_is_committed_when_the_record_is(
    project_root: Path, files: PipelineFiles, pause: float
) -> None:
    definition = files.load("probe", PROBE)
    project = Project.at(project_root)
    try:
        url, objects = project.config.metadata_url, str(project.config.artifacts)
        run = run_pipeline(
            definition, {"url": url, "objects": objects, "pause": pause}, project, RunOptions()
        )
        _, recorded, missing = run.outputs
        assert missing == 0
        # With a pause, the flush timer appended the queued steps, outputs first; without
        # one the last step may start before they are appended.
        assert recorded == 5 if pause else recorded <= 5
        # After the run nothing is held: a new store object finds every output.
        fresh = LocalStore(objects)
        outputs = [s["outputs"] for s in run.steps() if s["status"] == "completed"]
        assert len(outputs) == 6
        assert all(fresh.exists(d) for o in outputs for d in o.values())
        again = run_pipeline(
            definition, {"url": url, "objects": objects, "pause": pause}, project, RunOptions()
        )
        assert {s["status"] for s in again.steps()} == {"cached"}
    finally:
        project.close()
