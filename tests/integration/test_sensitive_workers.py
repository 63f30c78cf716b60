"""Sensitive steps on process and Dask workers: the same sealed record as inline, no plaintext."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.executors import Executor
    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

NAMES = ["Wilhelmina-Strudwick", "Fenwick-Oyelaran"]

SENSITIVE = """
from pathlib import Path

from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    return path.read_text()

@step
def shout(text: str) -> str:
    print("shouting", len(text), "characters")
    return text.upper()

@pipeline
def p():
    return shout(read(source("patients.txt", classification="pii")))
"""


def _completed(project: Project, run_id: str) -> dict[str, dict[str, Any]]:
    found = {}
    for event in project.ledger.iter_events():
        if event.run_id == run_id and event.kind == "step.completed":
            payload = json.loads(event.payload_text)
            found[payload["node_id"]] = payload
    return found


def _bytes_under(folder: Path) -> bytes:
    return b"\n".join(
        (Path(root) / name).read_bytes() for root, _, names in os.walk(folder) for name in names
    )


def test_a_sensitive_step_on_workers_records_what_inline_records(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
    executor: Executor,
) -> None:
    (project_root / "patients.txt").write_text("\n".join(NAMES) + "\n")
    definition = files.load(unique("sensitive"), SENSITIVE)
    inline = run_pipeline(definition, {}, project, RunOptions(cache=False))
    remote = run_pipeline(definition, {}, project, RunOptions(cache=False, executor=executor))
    first, second = _completed(project, inline.id), _completed(project, remote.id)
    assert set(first) == set(second) == {"read", "shout"}
    for node in first:
        # Sealing is deterministic and digests are keyed: equal content, equal records.
        assert first[node]["outputs"] == second[node]["outputs"], node
        assert first[node]["classification"] == second[node]["classification"] == {"output": "pii"}
    assert remote.load(second["shout"]["outputs"]["output"]) == "\n".join(NAMES).upper() + "\n"
    # The workers wrote nothing readable: no name, upper or lower case, under .pipetrail.
    on_disk = _bytes_under(project_root / ".pipetrail")
    for name in NAMES:
        assert name.encode() not in on_disk
        assert name.upper().encode() not in on_disk
