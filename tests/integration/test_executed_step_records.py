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
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import StepFailedError
from pipetrail.execution.integrity import verify_ledger
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.hashing.canonical import checked_canonical_json, reference_json
from tests.integration.conftest import statuses

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPE = """
from pipetrail import pipeline, step, log_metric

@step(resources={"memory": "1MiB"})
def make(n: int, scale: float = 1e20) -> dict:
    return {"n": n, "scale": scale, "tiny": 1e-7, "values": list(range(n))}

@step(retries=1, resources={"memory": "1MiB"})
def total(data: dict, offset: float = 0.5) -> float:
    log_metric("total", sum(data["values"]) + offset)
    if offset < 0:
        raise ValueError(f"negative offset {offset!r}")
    return sum(data["values"]) + offset

@step
def label(value: float, tag: str = "\\u00e9t\\u00e9 \\u2028") -> str:
    print("labelling", value)
    return f"{tag}:{value}"

@pipeline
def pipe(n: int = 4, offset: float = 0.5, scale: float = 1e20):
    return label(total(make(n, scale=scale), offset=offset))
"""

KINDS = ("step.started", "step.completed", "step.failed")


def _events(root: Path) -> list[tuple[str, str]]:
    connection = sqlite3.connect(root / ".pipetrail" / "ledger.db")
    try:
        query = "SELECT kind, payload FROM events ORDER BY seq"
        return list(connection.execute(query))
    finally:
        connection.close()


def test_executed_step_events_hold_the_canonical_text_of_their_payloads(
    project: Project, project_root: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    pipe = files.load(unique("pipe"), PIPE)
    first = run_pipeline(pipe, {}, project, RunOptions())
    assert set(statuses(first).values()) == {"completed"}
    # Floats orjson writes unlike the reference (an exponent) in the key's parameters.
    run_pipeline(pipe, {"scale": 1e-9, "offset": 2e16}, project, RunOptions())
    with pytest.raises(StepFailedError, match="negative offset"):
        run_pipeline(pipe, {"offset": -1.5}, project, RunOptions())
    found: dict[str, int] = {}
    for kind, text in _events(project_root):
        if kind not in KINDS:
            continue
        found[kind] = found.get(kind, 0) + 1
        payload: dict[str, Any] = json.loads(text)
        # What the full encoding of the payload writes, by orjson and by the reference.
        assert text == checked_canonical_json(payload)[0] == reference_json(payload)
    assert found == {"step.started": 7, "step.completed": 6, "step.failed": 1}
    failed = next(json.loads(t) for k, t in _events(project_root) if k == "step.failed")
    assert failed["node_id"] == "total"
    assert [a["attempt"] for a in failed["attempts"]] == [1]
    report = verify_ledger(project)
    assert report["ok"] is True, report


def test_the_run_end_compares_the_steps_it_executed_in_start_order(
    project: Project, project_root: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    pipe = files.load(unique("pipe"), PIPE)
    first = run_pipeline(pipe, {}, project, RunOptions())
    ends = [json.loads(t) for k, t in _events(project_root) if k == "run.completed"]
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
    ends = [json.loads(t) for k, t in _events(project_root) if k == "run.completed"]
    assert [d["node_id"] for d in ends[-1]["resource_deviations"]] == ["total"]
    assert first.id != second.id
