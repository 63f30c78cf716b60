"""The processes and dask executors on real worker processes and a real Dask LocalCluster.

One LocalCluster (two worker processes), shared by the integration tests, serves the
module; runs reach it through ``DaskExecutor(client=...)`` or, from the CLI, through its
scheduler address.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture.log_lines import render_text
from pipetrail.errors import StepFailedError
from pipetrail.execution.executors.dask_cluster import DaskExecutor
from pipetrail.execution.runner import RunOptions, run_pipeline
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.executors import Executor
    from pipetrail.execution.project import Project

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]


def _events(project: Project, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (event.kind, json.loads(event.payload_text))
        for event in project.ledger.iter_events()
        if event.run_id == run_id
    ]


def _step_events(project: Project, run_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """node id -> (kind, payload) of each step's closing event."""
    return {
        payload["node_id"]: (kind, payload)
        for kind, payload in _events(project, run_id)
        if kind in ("step.completed", "step.failed", "step.cached")
    }


RECORDING = """
import logging
import sys

import pandas as pd

from pipetrail import attach_report, data, log_metric, pipeline, step


@step
def make(n: int) -> list[int]:
    print("making", n)
    logging.getLogger("recording").warning("about to make %d", n)
    return list(range(n))


@step
def measure(xs: list[int]) -> dict:
    for i, x in enumerate(xs):
        log_metric("value", float(x), step=i)
    print("measured", file=sys.stderr)
    attach_report("summary", {"count": len(xs)})
    return {"total": float(sum(xs))}


@step
def pick(xs: list[int]) -> list[int]:
    frame = pd.DataFrame({"x": xs})
    return data.sample(frame, 3)["x"].tolist()


@pipeline
def recording(n: int = 8):
    xs = make(n)
    return measure(xs), pick(xs)
"""

# What differs between two runs whatever executes them: ids, times, resources, workers.
_VOLATILE = {
    "step_run_id",
    "run_id",
    "started_at",
    "ended_at",
    "resources",
    "worker",
    "traceback",
    "reused_step_run_id",
}


_LOG_TIME = re.compile(r"^\[log\] \S+ \S+ ", re.MULTILINE)


def _log_text(project: Project, digest: str | None) -> str | None:
    """A step's captured log as text, without the times of its logging records.

    The stored lines also carry the run's and step run's ids (which differ between the
    two runs): the rendered text leaves them out.
    """
    if digest is None:
        return None
    return _LOG_TIME.sub("[log] ", render_text(project.store.get_bytes(digest)))


def _comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _comparable(v)
            for k, v in value.items()
            if k not in _VOLATILE and k not in ("timestamps", "reason", "logs")
        }
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def test_events_recorded_on_workers_equal_inline(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    executor: Executor,
) -> None:
    definition = files.load(unique("recording"), RECORDING)
    inline = run_pipeline(definition, {}, project, RunOptions(cache=False))
    remote = run_pipeline(definition, {}, project, RunOptions(cache=False, executor=executor))
    first, second = _step_events(project, inline.id), _step_events(project, remote.id)
    assert set(first) == {"make", "measure", "pick"}
    for node in first:
        assert first[node][0] == second[node][0] == "step.completed"
        assert _comparable(first[node][1]) == _comparable(second[node][1]), node
        logs = [_log_text(project, events[node][1]["logs"]) for events in (first, second)]
        assert logs[0] == logs[1], node
    # What the steps printed, logged, measured and sampled was recorded, not left empty.
    logs = _log_text(project, second["make"][1]["logs"]) or ""
    assert "[stdout] making 8" in logs
    assert "[log] WARNING recording: about to make 8" in logs
    assert set(second["measure"][1]["metrics"]) == {"value"}
    assert set(second["measure"][1]["reports"]) == {"summary"}
    assert second["pick"][1]["data_ops"]
    assert second["make"][1]["worker"]["pid"] > 0
    started = next(p for k, p in _events(project, remote.id) if k == "run.started")
    assert started["executor"] == executor.name
    assert started["executor_settings"]


PARALLEL = """
import os
import time
from pathlib import Path

from pipetrail import pipeline, step


def _meet(meet: str, mine: str, other: str) -> str:
    folder = Path(meet)
    (folder / mine).write_text("here")
    deadline = time.monotonic() + 60
    while not (folder / other).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{other} never ran while {mine} was running")
        time.sleep(0.05)
    return mine


@step(cache=False)
def left(meet: str) -> str:
    return _meet(meet, "left", "right")


@step(cache=False)
def right(meet: str) -> str:
    return _meet(meet, "right", "left")


@step(cache=False)
def join(a: str, b: str) -> str:
    return a + "+" + b


@pipeline
def parallel(meet: str):
    return join(left(meet), right(meet))
"""


def test_independent_steps_run_at_the_same_time(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    executor: Executor,
    tmp_path: Path,
) -> None:
    # Each branch waits until the other has started: only concurrent execution completes.
    meet = tmp_path / "meet"
    meet.mkdir()
    definition = files.load(unique("parallel"), PARALLEL)
    run = run_pipeline(definition, {"meet": str(meet)}, project, RunOptions(executor=executor))
    assert run.outputs == "left+right"
    assert set(statuses(run).values()) == {"completed"}


DYING = """
import os
from pathlib import Path

from pipetrail import pipeline, step


@step(cache=False, retries=RETRIES)
def fragile(n: int, marker: str) -> list[int]:
    marker = Path(marker)
    if not marker.exists() or ALWAYS:
        marker.write_text("died once")
        os._exit(3)
    return [n] * 100_000


@step(cache=False)
def steady(n: int) -> int:
    return n + 1


@pipeline
def dying(marker: str, n: int = 2):
    return fragile(n, marker), steady(n)
"""


def test_a_dead_worker_fails_its_step_and_the_run(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    executor: Executor,
    tmp_path: Path,
) -> None:
    marker = {"marker": str(tmp_path / "marker")}
    source = DYING.replace("RETRIES", "0").replace("ALWAYS", "True")
    definition = files.load(unique("dying"), source)
    with pytest.raises(StepFailedError, match=r"WorkerLostError: the .*worker.* 'fragile' died"):
        run_pipeline(definition, marker, project, RunOptions(executor=executor, keep_going=True))
    run_id = project.reader().resolve_run("latest")
    steps = _step_events(project, run_id)
    kind, payload = steps["fragile"]
    assert kind == "step.failed"
    assert "outputs" not in payload
    assert "attempts" not in payload
    # --keep-going: the independent branch finished and was recorded.
    assert steps["steady"][0] == "step.completed"
    run_row = project.reader().get_run(run_id)
    assert run_row["status"] == "failed"
    assert "fragile" in (run_row["error"] or "")
    # Nothing half-written: every object in the store holds the bytes of its digest.
    store = project.store
    assert all(store.verify(digest) for digest in store.iter_digests())


def test_a_dead_worker_is_retried_per_the_steps_policy(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    executor: Executor,
    tmp_path: Path,
) -> None:
    marker = {"marker": str(tmp_path / "marker")}
    source = DYING.replace("RETRIES", "1").replace("ALWAYS", "False")
    definition = files.load(unique("dying"), source)
    run = run_pipeline(definition, marker, project, RunOptions(executor=executor))
    steps = _step_events(project, run.id)
    kind, payload = steps["fragile"]
    assert kind == "step.completed"
    [attempt] = payload["attempts"]
    assert attempt["attempt"] == 1
    assert attempt["worker_lost"] is True
    assert "WorkerLostError" in attempt["error"]
    assert run.outputs[0] == [2] * 100_000


# -- the command line ----------------------------------------------------------------
# The command line with the scheduler connect timeout at one second instead of ten: an
# unreachable address then fails as it would, nine seconds sooner (the wait is Dask's).
PIPETRAIL_QUICK_CONNECT = [
    sys.executable,
    "-c",
    "import sys; import pipetrail.execution.executors.dask_cluster as d;"
    " d.CONNECT_TIMEOUT_S = 1.0; from pipetrail.cli.main import main;"
    " sys.argv[0] = 'pipetrail'; main()",
]


def _cli(
    root: Path, *args: str, command: list[str] = PIPETRAIL
) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT / "src")}
    import os

    return subprocess.run(
        [*command, *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def example(example_copy: Callable[[str], Path]) -> Path:
    return example_copy("executors")


def _recorded_by_node(root: Path, run_id: str) -> dict[str, Any]:
    """node id -> its closing event (but ids, times, resources) and its log's text."""
    from pipetrail.execution.project import Project

    project = Project.at(root)
    try:
        return {
            node: (kind, _comparable(payload), _log_text(project, payload["logs"]))
            for node, (kind, payload) in _step_events(project, run_id).items()
        }
    finally:
        project.close()


def test_the_example_has_the_same_digests_on_every_executor(
    example: Path, dask_client: Any
) -> None:
    dask_client.wait_for_workers(2, timeout=60)  # a test before may have killed a worker
    address = dask_client.scheduler.address
    found = {}
    for choice in ("inline", "processes", f"dask={address}"):
        done = _cli(example, "run", "pipeline.py", "--no-cache", "--json", "--executor", choice)
        assert done.returncode == 0, done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        found[choice] = _recorded_by_node(example, run_id)
    inline = found["inline"]
    assert len(inline) == 6
    assert all(kind == "step.completed" for kind, *_ in inline.values())
    # The example checks a contract, prints and returns metrics: all recorded alike.
    assert inline["ingest"][1]["contracts"]
    assert inline["evaluate"][1]["output_metrics"]
    for choice, recorded in found.items():
        for node in inline:
            assert recorded[node] == inline[node], (choice, node)


def test_an_unreachable_scheduler_fails_the_run_with_its_address(example: Path) -> None:
    done = _cli(
        example,
        "run",
        "pipeline.py",
        "--executor",
        "dask=tcp://127.0.0.1:9",
        command=PIPETRAIL_QUICK_CONNECT,
    )
    assert done.returncode == 2
    assert "tcp://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr
    from pipetrail.execution.project import Project

    project = Project.at(example)
    try:
        reader = project.reader()
        latest = reader.get_run(reader.resolve_run("latest"))
    finally:
        project.close()
    assert latest["status"] == "failed"
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in latest["error"]
    assert latest["ended_at"] is not None


BRANCHES = """
from pipetrail import pipeline, step


@step(cache=False)
def broken(n: int) -> int:
    raise ValueError(f"no good: {n}")


@step(cache=False)
def after_broken(x: int) -> int:
    return x


@step(cache=False)
def fine(n: int) -> int:
    return n * 10


@step(cache=False)
def after_fine(x: int) -> int:
    return x + 1


@pipeline
def branches(n: int = 4):
    return after_broken(broken(n)), after_fine(fine(n))
"""


@pytest.mark.parametrize("choice", ["inline", "processes"])
def test_keep_going_finishes_independent_branches(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], choice: str
) -> None:
    definition = files.load(unique("branches"), BRANCHES)
    options = RunOptions(executor=choice, keep_going=True)
    with pytest.raises(StepFailedError, match="ValueError: no good: 4"):
        run_pipeline(definition, {}, project, options)
    run_id = project.reader().resolve_run("latest")
    steps = {node: kind for node, (kind, _) in _step_events(project, run_id).items()}
    assert steps == {
        "broken": "step.failed",
        "fine": "step.completed",
        "after_fine": "step.completed",
    }
    assert project.reader().get_run(run_id)["status"] == "failed"


def test_without_keep_going_the_run_stops_at_the_failure(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("branches"), BRANCHES)
    with pytest.raises(StepFailedError, match="no good"):
        run_pipeline(definition, {}, project, RunOptions())
    run_id = project.reader().resolve_run("latest")
    assert set(_step_events(project, run_id)) == {"broken"}


FLAKY = """
from pathlib import Path

from pipetrail import pipeline, step


@step(cache=False, retries=2)
def flaky(marker: str) -> int:
    path = Path(marker)
    tries = int(path.read_text()) if path.exists() else 0
    path.write_text(str(tries + 1))
    if tries < 2:
        raise ConnectionError(f"attempt {tries + 1} failed")
    return tries


@pipeline
def flaky_run(marker: str):
    return flaky(marker)
"""


@pytest.mark.parametrize("choice", ["inline", "processes"])
def test_a_raising_step_is_retried_and_every_attempt_recorded(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    tmp_path: Path,
    choice: str,
) -> None:
    definition = files.load(unique("flaky"), FLAKY)
    marker = str(tmp_path / "tries")
    run = run_pipeline(definition, {"marker": marker}, project, RunOptions(executor=choice))
    assert run.outputs == 2
    [(kind, payload)] = _step_events(project, run.id).values()
    assert kind == "step.completed"
    assert [(a["attempt"], a["error"], a["worker_lost"]) for a in payload["attempts"]] == [
        (1, "ConnectionError: attempt 1 failed", False),
        (2, "ConnectionError: attempt 2 failed", False),
    ]


def test_a_store_workers_cannot_open_is_refused_with_a_fix(
    files: PipelineFiles, unique: Callable[[str], str], project_root: Path
) -> None:
    from pipetrail.errors import ExecutorError
    from pipetrail.execution.project import Project
    from pipetrail.store.memory import MemoryStore

    definition = files.load(unique("branches"), BRANCHES)
    project = Project.at(project_root)
    memory = Project(project.config, store=MemoryStore())
    try:
        with pytest.raises(ExecutorError, match="use a local folder or an S3 store"):
            run_pipeline(definition, {}, memory, RunOptions(executor="processes"))
        run_id = memory.reader().resolve_run("latest")
        assert memory.reader().get_run(run_id)["status"] == "failed"
    finally:
        memory.close()
        project.close()


def test_keep_going_on_the_command_line_keeps_the_exit_code(tmp_path: Path) -> None:
    root = tmp_path / "cli"
    root.mkdir()
    (root / "pipetrail.toml").write_text('[pipetrail]\nexecutor = "processes"\n')
    (root / "branches.py").write_text(BRANCHES)
    done = _cli(root, "run", "branches.py", "--keep-going", "-q")
    assert done.returncode == 1, done.stderr
    assert "no good: 4" in done.stderr + done.stdout


def test_the_dask_executor_makes_and_closes_a_local_cluster(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("branches"), BRANCHES.replace("raise ValueError", "return n #"))
    executor = DaskExecutor(workers=1)
    # Dask's usual dashboard port is taken (here, or by another cluster): no matter.
    with contextlib.ExitStack() as stack:
        taken = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):
            taken.bind(("0.0.0.0", 8787))  # noqa: S104 - where Dask's dashboard would bind
            taken.listen()
        run = run_pipeline(definition, {}, project, RunOptions(executor=executor))
    assert run.outputs == [4, 41]
    started = next(p for k, p in _events(project, run.id) if k == "run.started")
    assert started["executor"] == "dask"
    assert started["executor_settings"] == {"cluster": "local", "workers": 1}
    workers = {p["worker"]["address"] for _, p in _step_events(project, run.id).values()}
    assert len(workers) == 1
    assert workers.pop().startswith("tcp://127.0.0.1:")
    assert executor._cluster is None  # closed with the run


def test_the_dask_executor_closes_its_cluster_after_the_scheduler_closed() -> None:
    # A local cluster whose scheduler has gone (closed by hand, or crashed): shutting
    # down must not ask it to close again, which waits out Dask's connect timeout
    # (30 s) before the worker processes are stopped.
    from distributed.core import Status

    executor = DaskExecutor(workers=1)
    executor.connect()
    cluster = executor._cluster
    nannies = list(cluster.workers.values())
    cluster.sync(cluster.scheduler.close)
    assert cluster.scheduler.status == Status.closed
    executor.shutdown()
    # Each close returned in time: none was left going on on a daemon thread.
    assert not [t for t in threading.enumerate() if t.name == "pipetrail-dask-bounded"]
    assert executor._cluster is None
    assert executor._client is None
    assert nannies
    assert all(nanny.status == Status.closed for nanny in nannies)
    assert all(nanny.process is None or not nanny.process.is_alive() for nanny in nannies)


def test_a_dead_worker_does_not_make_its_step_known_to_be_fast(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], tmp_path: Path
) -> None:
    # Step speed is remembered across the runs of a process (ADR 0031): a step whose
    # worker died measured nothing, and must not let the next run skip the flush before it.
    from pipetrail.execution.executors.processes import ProcessExecutor
    from pipetrail.execution.flushing import PROCESS_STEP_TIMES

    marker = {"marker": str(tmp_path / "marker")}
    source = DYING.replace("RETRIES", "0").replace("ALWAYS", "True")
    definition = files.load(unique("dying"), source)
    executor = ProcessExecutor(workers=2)
    with pytest.raises(StepFailedError, match="WorkerLostError"):
        run_pipeline(definition, marker, project, RunOptions(executor=executor, keep_going=True))
    steps = _step_events(project, project.reader().resolve_run("latest"))
    assert PROCESS_STEP_TIMES.is_fast(steps["steady"][1]["code_digest"])  # measured: fast
    assert not PROCESS_STEP_TIMES.is_fast(steps["fragile"][1]["code_digest"])
