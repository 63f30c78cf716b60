"""Runs never consume corrupt stored bytes: a corrupt input is quarantined and recomputed.

Each test runs a real pipeline in a SQLite project, damages a stored object behind the
store's back (one flipped byte in a loose file, a pack row or a segment slice; a pickle
replaced by one that would run code), runs again with a changed downstream step, and
checks what the downstream step received and what the record says.
"""

from __future__ import annotations

import json
import os
import pickle  # noqa: TID251 - builds the tampered payload the run must refuse
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture.statcache import RACY_WINDOW_NS
from pipetrail.cli.exits import EXIT_CANNOT_REPRODUCE, EXIT_INTEGRITY, exit_code
from pipetrail.errors import IntegrityError
from pipetrail.execution.run import Run
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.store import LocalStore, verify_store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

KIB = 1024

FLOW = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def produce(data: Path, size: int) -> bytes:
    if size:
        return bytes((i * 7 + 3) % 251 for i in range(size))
    return (data / "f3.bin").read_bytes()  # the bytes of a file copied into a segment

@step
def consume(data: bytes, tag: int = 0) -> int:
    return sum(data) * 1000 + tag

@pipeline
def flow(size: int = 100, tag: int = 0):
    return consume(produce(source("data"), size), tag=tag)
"""

PICKLED = """
from pipetrail import pipeline, step

@step(allow_pickle=True)
def produce() -> set[int]:
    return {1, 2, 3}

@step
def consume(values: set[int], tag: int = 0) -> int:
    return sum(values) + tag

@pipeline
def pickled(tag: int = 0):
    return consume(produce(), tag=tag)
"""


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (type(self.marker).touch, (self.marker,))  # unpickling creates the marker


def _objects(project_root: Path) -> Path:
    return project_root / ".pipetrail" / "objects"


def _write_data(project_root: Path) -> None:
    folder = project_root / "data"
    folder.mkdir()
    for i in range(8):  # 8 files of 20 KiB: observed in one batch, into one segment
        (folder / f"f{i}.bin").write_bytes(bytes((i + j) % 256 for j in range(20 * KIB)))


def _blob(project: Project, run: Any, node: str) -> str:
    digest = run.step(node)["outputs"]["output"]
    return str(project.reader().artifact(digest)["blob"])


def _where(project_root: Path, blob: str) -> str:
    with sqlite3.connect(_objects(project_root) / "pack.db") as conn:
        if conn.execute("SELECT 1 FROM objects WHERE digest = ?", (blob,)).fetchone():
            return "pack"
        if conn.execute("SELECT 1 FROM segment_objects WHERE digest = ?", (blob,)).fetchone():
            return "segment"
    return "loose"


def _damage(project_root: Path, blob: str, replacement: bytes | None = None) -> bytes:
    """Flip one byte of the object (or replace it whole); return the bytes now stored."""
    root = _objects(project_root)
    with sqlite3.connect(root / "pack.db") as conn:
        row = conn.execute("SELECT data FROM objects WHERE digest = ?", (blob,)).fetchone()
        if row is not None:
            data = replacement or bytes([row[0][0] ^ 1]) + bytes(row[0][1:])
            conn.execute("UPDATE objects SET data = ? WHERE digest = ?", (data, blob))
            return data
        found = conn.execute(
            "SELECT segment, start, size FROM segment_objects WHERE digest = ?", (blob,)
        ).fetchone()
    if found is not None:
        path, start, size = root / "segments" / found[0], found[1], found[2]
    else:
        path, start = root / blob[7:9] / blob[9:], 0
        size = path.stat().st_size
    path.chmod(0o644)
    if replacement is not None:
        path.write_bytes(replacement)
        return replacement
    with open(path, "r+b") as f:
        f.seek(start + size // 2)
        byte = f.read(1)
        f.seek(start + size // 2)
        f.write(bytes([byte[0] ^ 1]))
        f.seek(start)
        return f.read(size)


def _quarantined(project_root: Path, blob: str) -> list[bytes]:
    folder = _objects(project_root) / "quarantine"
    if not folder.exists():
        return []
    return [p.read_bytes() for p in folder.iterdir() if p.name.startswith(blob[7:])]


@pytest.mark.parametrize(("size", "place"), [(100, "pack"), (100_000, "loose"), (0, "segment")])
def test_a_corrupt_cached_output_is_recomputed_before_a_step_consumes_it(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
    size: int,
    place: str,
) -> None:
    _write_data(project_root)
    if place == "segment":
        # Files changed less than 2 s before they are observed are hashed (and copied)
        # again on the next run, which would repair the segment before any step reads it
        # (test_put_files_repairs_corrupt_objects_it_reads_again); wait, so that the next
        # observation trusts them and the damage reaches the read path.
        time.sleep(RACY_WINDOW_NS / 1e9 + 0.2)
    flow = files.load(unique("flow"), FLOW)
    first = run_pipeline(flow, {"size": size}, project, RunOptions())
    blob = _blob(project, first, "produce")
    assert _where(project_root, blob) == place
    intact = project.store.get_bytes(blob)
    expected = sum(intact) * 1000 + 1
    damaged = _damage(project_root, blob)
    assert damaged != intact

    second = run_pipeline(flow, {"size": size, "tag": 1}, project, RunOptions())

    assert second.outputs == expected  # the downstream step got the right bytes
    steps = [(s["node_id"], s["status"], s["cache_decision"]) for s in second.steps()]
    assert steps == [  # in the order they started: produce ran again while consume loaded
        ("produce", "cached", "hit"),
        ("consume", "completed", "miss"),
        ("produce", "completed", "miss"),
    ]
    reason = second.steps()[2]["cache_reason"]
    assert "'output'" in reason
    assert "corrupt in the store (quarantined) when step 'consume' read it" in reason
    consume = second.step("consume")
    assert consume["inputs"] == {"data": first.step("produce")["outputs"]["output"]}
    assert _quarantined(project_root, blob) == [damaged]
    store = LocalStore(_objects(project_root))  # a fresh process's view
    assert store.get_bytes(blob) == intact  # repaired
    assert verify_store(store).ok
    third = run_pipeline(flow, {"size": size, "tag": 1}, project, RunOptions())
    assert {s["status"] for s in third.steps()} == {"cached"}  # and the cache holds again


def test_a_tampered_pickle_never_runs_and_is_recomputed(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    pickled = files.load(unique("pickled"), PICKLED)
    first = run_pipeline(pickled, {}, project, RunOptions())
    blob = _blob(project, first, "produce")
    marker = tmp_path / "payload-ran"
    _damage(project_root, blob, pickle.dumps(_Payload(marker)))
    second = run_pipeline(pickled, {"tag": 10}, project, RunOptions())
    assert not marker.exists()
    assert second.outputs == 16
    assert [(s["node_id"], s["status"]) for s in second.steps()] == [
        ("produce", "cached"),
        ("consume", "completed"),
        ("produce", "completed"),
    ]


def test_loading_a_corrupt_output_of_a_finished_run_names_the_artifact(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
) -> None:
    _write_data(project_root)
    flow = files.load(unique("flow"), FLOW)
    first = run_pipeline(flow, {"size": 100}, project, RunOptions())
    digest = first.step("consume")["outputs"]["output"]
    _damage(project_root, _blob(project, first, "consume"))
    again = Run(first.id, project, pipeline=first.pipeline, status="completed", result=digest)
    with pytest.raises(IntegrityError) as caught:
        _ = again.outputs
    message = str(caught.value)
    assert f"artifact {digest} of run {first.id} cannot be loaded" in message
    assert "is corrupt" in message
    assert "Run the pipeline again" in message
    assert exit_code(caught.value) == EXIT_INTEGRITY


REPRODUCIBLE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def total(path: Path) -> int:
    return sum(int(x) for x in path.read_text().split())

@pipeline
def reproducible():
    return total(source("numbers.txt"))
"""


def test_reproduce_refuses_a_corrupt_snapshot_and_records_nothing(project_root: Path) -> None:
    (project_root / "numbers.txt").write_text("1 2 3 4\n")
    (project_root / "reproducible.py").write_text(REPRODUCIBLE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipetrail.cli.main", *args],
            cwd=project_root,
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )

    ran = cli("run", "reproducible.py", "-q", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    with sqlite3.connect(project_root / ".pipetrail" / "ledger.db") as conn:
        (payload,) = conn.execute(
            "SELECT payload FROM events WHERE kind = 'source.observed'"
        ).fetchone()
        events_before = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    snapshot = json.loads(payload)["digest"]
    _damage(project_root, snapshot)

    result = cli("reproduce", run_id)

    assert result.returncode == EXIT_CANNOT_REPRODUCE, result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert "'numbers.txt'" in result.stderr
    assert f"Object {snapshot} is corrupt" in result.stderr
    with sqlite3.connect(project_root / ".pipetrail" / "ledger.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == events_before
    assert _quarantined(project_root, snapshot)


def test_an_input_still_corrupt_after_its_producer_ran_again_fails_naming_it(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
) -> None:
    """The guard against looping: each producer runs again once per load, then the step fails."""
    from pipetrail.execution.recompute import load_inputs
    from pipetrail.execution.run_state import NodeOutput, RunState
    from pipetrail.store import StoredArtifact

    _write_data(project_root)
    flow = files.load(unique("flow"), FLOW)
    first = run_pipeline(flow, {"size": 100}, project, RunOptions())
    digest = first.step("produce")["outputs"]["output"]
    graph = flow.build({"size": 100, "tag": 0})
    state = RunState(run_id="R", graph=graph, project=project, run_seed=0)
    state.outputs["produce"] = [NodeOutput(digest)]
    record = StoredArtifact.from_dict(project.reader().artifact(digest))

    def load(value: Any) -> Any:
        if value.__class__.__name__ == "OutputRef":
            return project.registry.load(record, project.store)
        return value

    reruns: list[tuple[str, str]] = []

    intact = project.store.get_bytes(record.blob)

    def rerun(node: Any, reason: str) -> None:  # the producer runs, its output is damaged again
        reruns.append((node.id, reason))
        assert project.store.put_bytes(intact) == record.blob
        _damage(project_root, record.blob)

    kwargs, rerun_happened = load_inputs(state, graph.nodes["consume"], load, rerun)
    assert kwargs["data"] == intact
    assert not rerun_happened
    _damage(project_root, record.blob)
    with pytest.raises(IntegrityError) as caught:
        load_inputs(state, graph.nodes["consume"], load, rerun)
    assert [node for node, _ in reruns] == ["produce"]  # once, not forever
    message = str(caught.value)
    assert "step 'consume' of run R cannot read its inputs" in message
    assert f"'output' of step 'produce' (artifact {digest})" in message
    assert "still corrupt after that step executed again" in message
    assert exit_code(caught.value) == EXIT_INTEGRITY


SERIES = """
from array import array

from pipetrail import log_metric, pipeline, step
from pipetrail.execution.metrics import encode_series

@step
def archive() -> bytes:  # the bytes of train's series: their first record has no summary
    return encode_series(array("q", [0, 1]), array("d", [0.5, 0.25]))

@step
def train(epochs: int = 2) -> int:
    for epoch in range(epochs):
        log_metric("loss", 0.5 / (epoch + 1))
    return epochs

@step
def score(epochs: int, tag: int = 0) -> int:
    return epochs * 10 + tag

@pipeline
def series(tag: int = 0):
    return archive(), score(train(), tag=tag)
"""


def test_a_corrupt_metric_series_of_a_hit_makes_the_step_execute_again(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
) -> None:
    """A hit whose series has no summary in its record reads the series; corrupt, it is a miss.

    The series' artifact was recorded first as the output of another step (same bytes), so
    its record carries no summary and the hit's event needs the series itself.
    """
    definition = files.load(unique("series"), SERIES)
    first = run_pipeline(definition, {}, project, RunOptions())
    digest = first.step("train")["outputs"]["metric:loss"]
    assert digest == first.step("archive")["outputs"]["output"]
    assert "summary" not in project.reader().artifact(digest)["meta"]
    blob = str(project.reader().artifact(digest)["blob"])
    intact = project.store.get_bytes(blob)
    damaged = _damage(project_root, blob)
    assert damaged != intact

    second = run_pipeline(definition, {"tag": 1}, project, RunOptions())

    assert second.outputs == [intact, 21]
    steps = [(s["node_id"], s["status"], s["cache_decision"]) for s in second.steps()]
    assert steps == [
        ("archive", "cached", "hit"),
        ("train", "completed", "miss"),
        ("score", "completed", "miss"),
    ]
    reason = second.step("train")["cache_reason"]
    assert reason == (
        f"the cached metric series 'loss' ({digest}) was corrupt in the store (quarantined) "
        "when the hit was read; executing again"
    )
    assert second.metrics("train") == {"loss": [(0, 0.5), (1, 0.25)]}
    assert _quarantined(project_root, blob) == [damaged]
    assert LocalStore(_objects(project_root)).get_bytes(blob) == intact  # repaired
    third = run_pipeline(definition, {"tag": 1}, project, RunOptions())
    assert {s["status"] for s in third.steps()} == {"cached"}
