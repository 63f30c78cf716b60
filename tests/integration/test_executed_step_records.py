"""An executed step's record is the same whether it is encoded in full or from what was checked.

The end event of an executed step (``step.completed``, ``step.failed``) is encoded when it
is queued, without walking again the key components its cache key just checked; its
``step.started`` is built member by member. Neither may change a byte of the record: the
stored text is the canonical text of its payload, by orjson and by the reference encoder,
and ``audit verify`` finds nothing. The run's end compares the resources of the steps it
executed, kept as they completed, with their history: cache hits and failed steps are
not compared, the others are listed in the order they started.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import StepFailedError
from pipetrail.execution.integrity import verify_ledger
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.hashing.canonical import checked_canonical_json, reference_json
from tests.integration.conftest import statuses
from tests.support.ledger_rows import stored_events
from tests.support.pipelines import RECORDS

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

KINDS = ("step.started", "step.completed", "step.failed")


def test_executed_step_events_hold_the_canonical_text_of_their_payloads(
    project: Project, project_root: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    pipe = files.load(unique("pipe"), RECORDS)
    first = run_pipeline(pipe, {}, project, RunOptions())
    assert set(statuses(first).values()) == {"completed"}
    # Floats orjson writes unlike the reference (an exponent) in the key's parameters.
    run_pipeline(pipe, {"scale": 1e-9, "offset": 2e16}, project, RunOptions())
    with pytest.raises(StepFailedError, match="negative offset"):
        run_pipeline(pipe, {"offset": -1.5}, project, RunOptions())
    found: dict[str, int] = {}
    for _, kind, text in stored_events(project_root, *KINDS):
        found[kind] = found.get(kind, 0) + 1
        payload: dict[str, Any] = json.loads(text)
        # What the full encoding of the payload writes, by orjson and by the reference.
        assert text == checked_canonical_json(payload)[0] == reference_json(payload)
    assert found == {"step.started": 7, "step.completed": 6, "step.failed": 1}
    failed = next(json.loads(t) for *_, t in stored_events(project_root, "step.failed"))
    assert failed["node_id"] == "total"
    assert [a["attempt"] for a in failed["attempts"]] == [1]
    report = verify_ledger(project)
    assert report["ok"] is True, report


def test_the_run_end_compares_the_steps_it_executed_in_start_order(
    project: Project, project_root: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    pipe = files.load(unique("pipe"), RECORDS)
    first = run_pipeline(pipe, {}, project, RunOptions())
    ends = [json.loads(t) for *_, t in stored_events(project_root, "run.completed")]
    flagged = ends[-1]["resource_deviations"]
    # Both steps that ask for 1 MiB use more; `label` asks for nothing.
    assert [(d["kind"], d["node_id"]) for d in flagged] == [
        ("memory-over-request", "make"),
        ("memory-over-request", "total"),
    ]
    assert all(d["peak_rss_bytes"] > d["requested_bytes"] == 1024**2 for d in flagged)
    # `make` is a cache hit now: it used nothing, so only `total` is compared.
    second = run_pipeline(pipe, {"offset": 1.5}, project, RunOptions())
    assert statuses(second) == {"make": "cached", "total": "completed", "label": "completed"}
    ends = [json.loads(t) for *_, t in stored_events(project_root, "run.completed")]
    assert [d["node_id"] for d in ends[-1]["resource_deviations"]] == ["total"]
    assert first.id != second.id
