"""Large inputs go to workers as digests; the workers load and verify them from the store.

Real worker processes (the processes executor, a Dask LocalCluster made by the run): the
task a worker receives holds a :class:`StoredInput` for a large input and the value
itself for a small one; the step computes the same outputs as inline; a corrupt object
found by the worker fails the step naming it, and the next run recomputes it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import StepFailedError
from pipetrail.execution.executors.dask_cluster import DaskExecutor
from pipetrail.execution.executors.processes import ProcessExecutor
from pipetrail.execution.executors.shipping import SHIP_BY_DIGEST_BYTES, StoredInput
from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from pipetrail.execution.project import Project
    from pipetrail.execution.task import StepTask, TaskResult
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPELINE = """
from pipetrail import pipeline, step


@step
def big(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


@step
def small(n: int) -> list[int]:
    return list(range(n % 10))


@step(cache=False)
def use(data: bytes, items: list[int]) -> dict:
    return {"size": len(data), "checksum": sum(data[::997]), "items": sum(items)}


@pipeline
def shipped(n: int = SIZE):
    return use(big(n), small(n))
""".replace("SIZE", str(2 * SHIP_BY_DIGEST_BYTES))


class _Recording:
    """Keeps the kwargs of every task submitted (mixed into a real executor)."""

    seen: dict[str, dict[str, Any]]

    def submit(self, task: StepTask) -> Future[TaskResult]:
        self.seen[task.step_name] = dict(task.kwargs)
        return super().submit(task)  # type: ignore[misc, no-any-return]


class RecordingPool(_Recording, ProcessExecutor):
    def __init__(self) -> None:
        super().__init__(workers=2)
        self.seen = {}


class RecordingDask(_Recording, DaskExecutor):
    def __init__(self) -> None:
        super().__init__(workers=2)
        self.seen = {}


def _completed(project: Project, run_id: str) -> dict[str, dict[str, Any]]:
    return {
        p["node_id"]: p
        for p in (json.loads(e.payload_text) for e in project.ledger.iter_events())
        if p.get("run_id") == run_id and "outputs" in p and "node_id" in p
    }


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_large_inputs_travel_as_digests_and_give_the_same_outputs(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], kind: str
) -> None:
    definition = files.load(unique("shipped"), PIPELINE)
    inline = run_pipeline(definition, {}, project, RunOptions(cache=False))
    executor = RecordingPool() if kind == "processes" else RecordingDask()
    # On Dask a step whose cache is off is chained on its upstream tasks while they run
    # (test_dask_chaining.py); with them cache hits, `use` is sent once they are done.
    remote = run_pipeline(
        definition, {}, project, RunOptions(cache=kind == "dask", executor=executor)
    )
    assert (
        remote.outputs
        == inline.outputs
        == {
            "size": 2 * SHIP_BY_DIGEST_BYTES,
            "checksum": inline.outputs["checksum"],
            "items": sum(range((2 * SHIP_BY_DIGEST_BYTES) % 10)),
        }
    )
    sent = executor.seen["use"]
    assert isinstance(sent["data"], StoredInput)  # large: its record, not its bytes
    big_digest = _completed(project, remote.id)["big"]["outputs"]["output"]
    assert sent["data"].record.digest == big_digest
    assert sent["items"] == list(range((2 * SHIP_BY_DIGEST_BYTES) % 10))  # small: the value
    ends = [_completed(project, run.id) for run in (inline, remote)]
    for node in ("big", "small", "use"):
        assert ends[0][node]["outputs"] == ends[1][node]["outputs"], node


def test_a_corrupt_input_found_by_a_worker_fails_the_step_then_is_recomputed(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("shipped"), PIPELINE)
    first = run_pipeline(definition, {}, project, RunOptions(executor=ProcessExecutor(workers=1)))
    digest = _completed(project, first.id)["big"]["outputs"]["output"]
    blob = project.reader().artifact(digest)["blob"]
    path = project.store.local_path(blob)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StepFailedError) as caught:
        run_pipeline(definition, {}, project, RunOptions(executor=ProcessExecutor(workers=1)))
    message = str(caught.value)
    assert "IntegrityError" in message
    assert f"step 'use': its input {digest}" in message
    assert "could not be loaded on the worker" in message
    # The worker's store quarantined it: the next run executes `big` again.
    again = run_pipeline(definition, {}, project, RunOptions(executor=ProcessExecutor(workers=1)))
    ends = _completed(project, again.id)
    assert ends["big"]["outputs"]["output"] == digest
    assert "reused_step_run_id" not in ends["big"]
    assert again.outputs == first.outputs
