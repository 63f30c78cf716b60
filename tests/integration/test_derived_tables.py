"""Edited derived rows cannot steer a run: loads and cache hits follow the verified events.

An insider with write access to the database edits the derived tables (not the events);
the next run must refuse to trust the edited row (never unpickle attacker bytes, never
serve a false hit), ``audit verify`` names the row, and ``audit rebuild`` repairs it.
Each test runs on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from pipetrail.errors import TamperedLedgerError
from pipetrail.execution.integrity import rebuild_ledger, verify_ledger
from pipetrail.execution.project import Project
from pipetrail.execution.run import Run
from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.core.pipeline import PipelineDefinition
    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PIPE = """
from pipetrail import pipeline, step

@step
def make(n: int) -> dict:
    return {"n": n, "values": list(range(n))}

@step
def total(data: dict, offset: int = 0) -> int:
    return sum(data["values"]) + offset

@pipeline
def pipe(n: int = 4, offset: int = 0):
    return total(make(n), offset=offset)
"""


@pytest.fixture
def backend_project(metadata_url: str, project_root: Path) -> Path:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    return project_root


@dataclass
class _Done:
    id: str
    outputs: Any
    steps: dict[str, dict[str, Any]]


def _run(definition: PipelineDefinition, root: Path, **params: Any) -> _Done:
    project = Project.at(root)
    try:
        run = run_pipeline(definition, params, project, RunOptions())
        return _Done(run.id, run.outputs, {s["node_id"]: s for s in run.steps()})
    finally:
        project.close()


def _tamper(root: Path, statement: str, **params: Any) -> None:
    project = Project.at(root)
    try:
        with project.ledger.engine.begin() as conn:
            assert conn.execute(sa.text(statement), params).rowcount == 1
    finally:
        project.close()


def _audit(root: Path) -> dict[str, Any]:
    project = Project.at(root)
    try:
        return verify_ledger(project)
    finally:
        project.close()


def _rebuild(root: Path) -> dict[str, Any]:
    project = Project.at(root)
    try:
        return rebuild_ledger(project)
    finally:
        project.close()


def test_an_artifact_row_pointed_at_a_pickle_is_never_unpickled(
    backend_project: Path, files: PipelineFiles, unique: Callable[[str], str], tmp_path: Path
) -> None:
    root = backend_project
    pipe = files.load(unique("pipe"), PIPE)
    first = _run(pipe, root)
    assert first.outputs == 6
    made = first.steps["make"]["outputs"]["output"]

    # Bytes that create a file when unpickled, stored honestly under their own digest;
    # then the artifacts row of make's output is edited to say "pickle, trusted, there".
    marker = tmp_path / "unpickled-attacker-bytes"
    evil = b"cbuiltins\nopen\n(V" + str(marker).encode() + b"\nVw\ntR."
    project = Project.at(root)
    evil_blob = project.store.put_bytes(evil)
    project.close()
    _tamper(
        root,
        "UPDATE artifacts SET serializer = 'pickle', blob = :b, meta = :m WHERE digest = :d",
        b=evil_blob,
        m='{"protocol":5,"trusted":true}',
        d=made,
    )

    # A new offset: make is a hit, total executes and loads make's output, read as make's
    # step event records (docs/adr/0013-how-an-output-is-read.md): the edited row does
    # not decide how it is read, so nothing is unpickled and the run gives the right sum.
    assert _run(pipe, root, offset=1).outputs == 7
    assert not marker.exists()
    project = Project.at(root)
    try:
        run = Run(first.id, project, pipeline="pipe", status="completed", result=made)
        assert run.outputs == {"n": 4, "values": [0, 1, 2, 3]}
        # What still reads the artifact's own record refuses the edited row.
        with pytest.raises(
            TamperedLedgerError,
            match=rf"artifacts\[{made}\]: .*serializer is 'pickle'.*pipetrail audit rebuild",
        ):
            project.reader().artifact(made)
    finally:
        project.close()
    assert not marker.exists()

    report = _audit(root)
    assert not report["ok"]
    assert report["first_bad_seq"] is None
    assert [(p["table"], p["key"]) for p in report["derived"]] == [("artifacts", made)]
    assert {c["column"] for c in report["derived"][0]["columns"]} == {"serializer", "blob", "meta"}

    rebuilt = _rebuild(root)
    assert [(c["table"], c["key"]) for c in rebuilt["changed"]] == [("artifacts", made)]
    assert _audit(root)["ok"]
    assert _run(pipe, root, offset=1).outputs == 7
    assert not marker.exists()


def test_a_step_row_given_other_outputs_is_not_a_hit(
    backend_project: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    root = backend_project
    pipe = files.load(unique("pipe"), PIPE)
    first = _run(pipe, root)
    other = _run(pipe, root, offset=1)
    assert (first.outputs, other.outputs) == (6, 7)
    total = first.steps["total"]
    _tamper(
        root,
        "UPDATE step_runs SET outputs = :o WHERE step_run_id = :s",
        o=json.dumps(other.steps["total"]["outputs"], separators=(",", ":")),
        s=total["step_run_id"],
    )
    # Unchecked, this is a false hit: the same key served 7 instead of 6.
    with pytest.raises(TamperedLedgerError, match=rf"step_runs\[{total['step_run_id']}\]: outputs"):
        _run(pipe, root)
    assert [p["table"] for p in _audit(root)["derived"]] == ["step_runs"]
    assert len(_rebuild(root)["changed"]) == 1
    again = _run(pipe, root)
    assert again.outputs == 6
    assert again.steps["total"]["status"] == "cached"


CHAIN = """
from pipetrail import pipeline, step

@step
def make(n: int) -> dict:
    return {"n": n, "values": list(range(n))}

@step
def count(data: dict) -> int:
    return len(data["values"])

@step
def double(k: int) -> int:
    return 2 * k

@pipeline
def chain(n: int = 4):
    return double(count(make(n)))
"""


def test_a_step_row_read_ahead_given_other_outputs_is_not_a_hit(
    backend_project: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    # The re-run's lookup of make reads the step runs of the first run that follow it
    # (pipetrail.ledger.cache_rows); double's row, taken from there, is still checked
    # against its event.
    root = backend_project
    chain = files.load(unique("chain"), CHAIN)
    first = _run(chain, root)
    assert first.outputs == 8
    double = first.steps["double"]
    _tamper(
        root,
        "UPDATE step_runs SET outputs = :o WHERE step_run_id = :s",
        o=json.dumps(first.steps["count"]["outputs"], separators=(",", ":")),
        s=double["step_run_id"],
    )
    with pytest.raises(
        TamperedLedgerError, match=rf"step_runs\[{double['step_run_id']}\]: outputs"
    ):
        _run(chain, root)
    _rebuild(root)
    again = _run(chain, root)
    assert again.outputs == 8
    assert [again.steps[n]["status"] for n in ("make", "count", "double")] == ["cached"] * 3


def test_a_step_row_moved_to_another_cache_key_is_not_a_hit(
    backend_project: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    root = backend_project
    pipe = files.load(unique("pipe"), PIPE)
    first = _run(pipe, root)
    other = _run(pipe, root, offset=1)
    moved = other.steps["total"]
    # The newer step run (offset=1, output 7) now claims the key of offset=0.
    _tamper(
        root,
        "UPDATE step_runs SET cache_key = :k WHERE step_run_id = :s",
        k=first.steps["total"]["cache_key"],
        s=moved["step_run_id"],
    )
    with pytest.raises(
        TamperedLedgerError, match=rf"step_runs\[{moved['step_run_id']}\]: cache_key"
    ):
        _run(pipe, root)
    _rebuild(root)
    assert _run(pipe, root).outputs == 6
