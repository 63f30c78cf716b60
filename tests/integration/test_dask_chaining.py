"""Steps chained on their upstream tasks on a real Dask LocalCluster (two workers).

A step whose cache is off is submitted while its upstream steps still run, with their
Dask futures as its inputs, so the cluster starts it without a round trip through the
coordinator. The record must be the one inline gives; a failed upstream never lets it
run; a step that did not run in its chained task runs once, sent the usual way.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import StepFailedError
from pipetrail.execution.executors.dask_cluster import DaskExecutor
from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future
    from pathlib import Path

    from pipetrail.execution.project import Project
    from pipetrail.execution.task import StepTask, TaskResult
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

CHAIN = """
from pathlib import Path

from pipetrail import pipeline, step


def _mark(folder: str, name: str) -> int:
    path = Path(folder) / name
    before = len(path.read_text()) if path.exists() else 0
    path.write_text("x" * (before + 1))
    return before


@step(cache=False)
def first(n: int, folder: str) -> list[int]:
    _mark(folder, "first")
    return list(range(n))


@step(cache=False, retries=1)
def middle(xs: list[int], folder: str, fail_times: int) -> dict:
    tries = _mark(folder, "middle")
    if tries < fail_times:
        raise ValueError(f"middle attempt {tries + 1} failed")
    return {"total": sum(xs), "count": len(xs)}


@step(cache=False)
def last(d: dict, folder: str) -> int:
    _mark(folder, "last")
    return d["total"] * 2


@pipeline
def chained(folder: str, n: int = 5, fail_times: int = 0):
    return last(middle(first(n, folder), folder, fail_times), folder)
"""

STOPPING = """
import time
from pathlib import Path

from pipetrail import pipeline, step


@step(cache=False)
def boom(n: int) -> int:
    raise ValueError(f"boom {n}")


@step(cache=False)
def slow(n: int, folder: str) -> int:
    time.sleep(1.5)
    return n


@step(cache=False)
def after(x: int, folder: str) -> int:
    (Path(folder) / "after").write_text("ran")
    return x + 1


@pipeline
def stopping(folder: str, n: int = 3):
    return boom(n), after(slow(n, folder), folder)
"""


class CountingDask(DaskExecutor):
    """The Dask executor on the shared cluster, counting the tasks it chained."""

    def __init__(self, client: Any) -> None:
        super().__init__(client=client)
        self.chained: list[str] = []

    def submit_chained(
        self, task: StepTask, upstream: list[Future[TaskResult]]
    ) -> Future[TaskResult] | None:
        found = super().submit_chained(task, upstream)
        if found is not None:
            self.chained.append(task.node_id)
        return found


@pytest.fixture
def dask(dask_client: Any) -> CountingDask:
    dask_client.wait_for_workers(2, timeout=60)
    return CountingDask(dask_client)


def _events(project: Project, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (event.kind, json.loads(event.payload_text))
        for event in project.ledger.iter_events()
        if event.run_id == run_id
    ]


def _marks(folder: Path) -> dict[str, int]:
    return {path.name: len(path.read_text()) for path in folder.iterdir()}


# What a step event records that is the same on every executor (ids, times, resources
# and the worker differ).
_SAME = (
    "node_id",
    "step",
    "identity",
    "cache_key",
    "components",
    "inputs",
    "seed",
    "decision",
    "reason",
    "outputs",
    "output_formats",
    "logs",
    "error",
)


def _comparable(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (kind, {k: payload[k] for k in _SAME if k in payload})
        for kind, payload in events
        if kind.startswith("step.")
    ]


def test_a_chained_run_records_what_inline_records(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    tmp_path: Path,
    dask: CountingDask,
) -> None:
    definition = files.load(unique("chained"), CHAIN)
    marks = tmp_path / "marks"
    marks.mkdir()
    params = {"folder": str(marks)}
    inline = run_pipeline(definition, params, project, RunOptions(cache=False))
    remote = run_pipeline(definition, params, project, RunOptions(cache=False, executor=dask))
    assert dask.chained == ["middle", "last"]
    assert remote.outputs == inline.outputs == 20
    mine, theirs = (_comparable(_events(project, run.id)) for run in (remote, inline))
    assert mine == theirs
    assert len(mine) == 6
    assert _marks(marks) == {"first": 2, "middle": 2, "last": 2}  # once in each run
    workers = [
        p.get("worker") for kind, p in _events(project, remote.id) if kind == "step.completed"
    ]
    assert all(w and w.get("address") for w in workers)


def test_a_failed_upstream_never_lets_its_chained_step_run(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    tmp_path: Path,
    dask: CountingDask,
) -> None:
    definition = files.load(unique("chained"), CHAIN)
    marks = tmp_path / "marks"
    marks.mkdir()
    params = {"folder": str(marks), "fail_times": 2}  # both attempts of `middle` fail
    with pytest.raises(StepFailedError, match="middle attempt 2 failed"):
        run_pipeline(definition, params, project, RunOptions(cache=False, executor=dask))
    assert "last" in dask.chained
    run_id = project.reader().resolve_run("latest")
    events = _events(project, run_id)
    assert [(kind, p["node_id"]) for kind, p in events if kind.startswith("step.")] == [
        ("step.started", "first"),
        ("step.completed", "first"),
        ("step.started", "middle"),
        ("step.failed", "middle"),
    ]
    [failed] = [p for kind, p in events if kind == "step.failed"]
    assert [a["error"] for a in failed["attempts"]] == ["ValueError: middle attempt 1 failed"]
    time.sleep(0.5)  # a chained task that ran anyway would have marked by now
    assert _marks(marks) == {"first": 1, "middle": 2}


def test_a_step_chained_on_a_retried_upstream_runs_once_after_it(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    tmp_path: Path,
    dask: CountingDask,
) -> None:
    definition = files.load(unique("chained"), CHAIN)
    marks = tmp_path / "marks"
    marks.mkdir()
    params = {"folder": str(marks), "fail_times": 1}  # the retry of `middle` succeeds
    run = run_pipeline(definition, params, project, RunOptions(cache=False, executor=dask))
    assert run.outputs == 20
    assert "last" in dask.chained
    assert _marks(marks) == {"first": 1, "middle": 2, "last": 1}
    events = _events(project, run.id)
    assert [(kind, p["node_id"]) for kind, p in events if kind.startswith("step.")] == [
        ("step.started", "first"),
        ("step.completed", "first"),
        ("step.started", "middle"),
        ("step.completed", "middle"),
        ("step.started", "last"),
        ("step.completed", "last"),
    ]
    completed = {p["node_id"]: p for kind, p in events if kind == "step.completed"}
    assert [a["attempt"] for a in completed["middle"]["attempts"]] == [1]
    assert "attempts" not in completed["last"]


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_failure_elsewhere_sees_chained_steps_through_and_records_them(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    tmp_path: Path,
    dask: CountingDask,
    keep_going: bool,
) -> None:
    definition = files.load(unique("stopping"), STOPPING)
    options = RunOptions(cache=False, executor=dask, keep_going=keep_going)
    with pytest.raises(StepFailedError, match="boom 3"):
        run_pipeline(definition, {"folder": str(tmp_path)}, project, options)
    assert dask.chained == ["after"]
    run_id = project.reader().resolve_run("latest")
    ends = {
        p["node_id"]: kind
        for kind, p in _events(project, run_id)
        if kind in ("step.completed", "step.failed")
    }
    time.sleep(0.5)  # a cancelled task that ran anyway would have marked by now
    # `after` does not depend on the failure. Without --keep-going too, it was handed to
    # the cluster chained on `slow`, which may start it before the coordinator hears of
    # `slow`'s end: it is seen through and recorded, never left to run unrecorded.
    assert ends == {"boom": "step.failed", "slow": "step.completed", "after": "step.completed"}
    assert (tmp_path / "after").exists()
    started = [p["node_id"] for kind, p in _events(project, run_id) if kind == "step.started"]
    assert sorted(started) == ["after", "boom", "slow"]


SEALED = """
from pathlib import Path

from pipetrail import pipeline, source, step


@step
def read(path: Path) -> str:
    return path.read_text()


@step
def count(text: str) -> int:
    return len(text.split())


@pipeline
def sealed():
    return count(read(source("patients.txt", classification="pii")))
"""


def test_a_sealed_input_is_loaded_by_the_coordinator_not_the_chained_task(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
    dask: CountingDask,
) -> None:
    (project_root / "patients.txt").write_text("Ada Quill\nBo Rennet\n")
    definition = files.load(unique("sealed"), SEALED)
    inline = run_pipeline(definition, {}, project, RunOptions(cache=False))
    remote = run_pipeline(definition, {}, project, RunOptions(cache=False, executor=dask))
    # `count` was chained; its task found its input sealed and did not run the step,
    # which then ran once with the input the coordinator unsealed (and recorded reading).
    assert dask.chained == ["count"]
    assert remote.outputs == inline.outputs == 4
    mine, theirs = (_comparable(_events(project, run.id)) for run in (remote, inline))
    assert mine == theirs
    assert [kind for kind, _ in mine].count("step.completed") == 2


class RecomputingDask(CountingDask):
    """Reports the chained tasks' inputs as other bytes than recorded.

    As if their upstream task had been computed again on the cluster (its worker lost
    with the result in memory) and given another output.
    """

    def submit_chained(
        self, task: StepTask, upstream: list[Future[TaskResult]]
    ) -> Future[TaskResult] | None:
        from concurrent.futures import Future

        found = super().submit_chained(task, upstream)
        if found is None:
            return None
        altered: Future[TaskResult] = Future()
        altered.set_running_or_notify_cancel()

        def alter(done: Future[TaskResult]) -> None:
            result = done.result()
            result.chained_inputs = {k: "blake3:" + "0" * 64 for k in result.chained_inputs}
            altered.set_result(result)

        found.add_done_callback(alter)
        return altered


def test_a_chained_step_that_read_other_bytes_than_recorded_runs_again(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    tmp_path: Path,
    dask_client: Any,
) -> None:
    definition = files.load(unique("chained"), CHAIN)
    marks = tmp_path / "marks"
    marks.mkdir()
    params = {"folder": str(marks)}
    inline = run_pipeline(definition, params, project, RunOptions(cache=False))
    dask_client.wait_for_workers(2, timeout=60)  # the cluster is shared: a worker may restart
    dask = RecomputingDask(dask_client)
    remote = run_pipeline(definition, params, project, RunOptions(cache=False, executor=dask))
    # `last` is not chained: the future `middle` was submitted with is not Dask's.
    assert dask.chained == ["middle"]
    assert remote.outputs == inline.outputs == 20
    # The chained step's result was set aside and the step sent again, unchained: it ran
    # twice on the cluster, and is recorded once, as inline records it.
    assert _marks(marks) == {"first": 2, "middle": 3, "last": 2}
    mine, theirs = (_comparable(_events(project, run.id)) for run in (remote, inline))
    assert mine == theirs


GATED = """
import time
from pathlib import Path

from pipetrail import pipeline, step


@step(cache=False)
def head(n: int) -> list[int]:
    return list(range(n))


@step(cache=False)
def held(xs: list[int], gate: str) -> int:
    (Path(gate) / "ready").write_text("1")
    while not (Path(gate) / "release").exists():
        time.sleep(0.01)
    return sum(xs)


@step(cache=False)
def tail(x: int) -> int:
    return x * 2


@pipeline
def gated(gate: str, n: int = 10):
    return tail(held(head(n), gate))
"""


class LateResults(CountingDask):
    """Results reach the coordinator a second late: the cluster goes on meanwhile."""

    def submit(self, task: StepTask) -> Future[TaskResult]:
        import threading

        real = super().submit(task)
        told = real.add_done_callback

        def late(callback: Callable[[Future[TaskResult]], object]) -> None:
            told(lambda done: threading.Timer(1.0, callback, args=(done,)).start())

        real.add_done_callback = late  # type: ignore[method-assign]
        return real


def test_ctrl_c_records_what_the_cluster_already_ran(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    tmp_path: Path,
    dask_client: Any,
) -> None:
    import os
    import signal
    import threading

    from pipetrail.errors import RunInterruptedError

    definition = files.load(unique("gated"), GATED)
    dask_client.wait_for_workers(2, timeout=60)  # the cluster is shared: a worker may restart
    executor = LateResults(dask_client)
    gate = tmp_path / "gate"
    gate.mkdir()

    def interrupt_when_held() -> None:
        deadline = time.monotonic() + 60
        while not (gate / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_when_held, daemon=True)
    watcher.start()
    try:
        with pytest.raises(RunInterruptedError):
            run_pipeline(
                definition, {"gate": str(gate)}, project, RunOptions(cache=False, executor=executor)
            )
    finally:
        (gate / "release").write_text("1")  # the worker holding `held` may finish now
        watcher.join(timeout=60)
    assert executor.chained == ["held", "tail"]
    run_id = project.reader().resolve_run("latest")
    status = {
        p["node_id"]: kind
        for kind, p in _events(project, run_id)
        if kind.startswith("step.") and kind != "step.started"
    }
    started = {p["node_id"] for kind, p in _events(project, run_id) if kind == "step.started"}
    # `held` ran on the cluster before `head`'s result reached the coordinator: `head` is
    # recorded completed and `held` started (the run's end closes it as interrupted);
    # `tail` never ran its step.
    assert status.get("head") == "step.completed"
    assert started == {"head", "held"}
