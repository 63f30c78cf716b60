"""Ctrl-C while steps execute on the processes and dask executors.

A child process runs a pipeline whose step blocks on a gate file in a worker process (a
pool worker, or a worker of a Dask ``LocalCluster`` the run made). SIGINT reaches the
coordinator only, as it does from a terminal's Ctrl-C sent to one process. The run must
end recorded as interrupted, with the blocked step closed and the steps after it listed
as not run; the workers (and the Dask nannies and scheduler) must be gone; the store must
hold only complete objects and no temporary files.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.explain import run_summary
from pipetrail.execution.project import Project
from pipetrail.ledger import EventKind

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

GATED = """
import os
import time
from pathlib import Path
from pipetrail import pipeline, step

@step(cache=False)
def first(n: int) -> list[int]:
    return list(range(n))

@step(cache=False)
def block(xs: list[int], gate: str) -> int:
    folder = Path(gate)
    (folder / f"pids-{os.getpid()}").write_text(f"{os.getpid()} {os.getppid()}")
    (folder / "ready").write_text("1")
    while not (folder / "release").exists():
        time.sleep(0.01)
    return sum(xs)

@step(cache=False)
def after(x: int) -> int:
    return x * 2

@pipeline
def gated(gate: str, n: int = 50_000):
    return after(block(first(n), gate=gate))
"""

CHILD = """
import sys
from pathlib import Path
from pipetrail.execution.loader import load_pipeline
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline

if __name__ == "__main__":
    definition, _ = load_pipeline(sys.argv[1])
    project = Project.at(Path(sys.argv[2]))
    print("started", flush=True)
    try:
        run_pipeline(definition, {"gate": sys.argv[3]}, project, RunOptions(executor=sys.argv[4]))
    except KeyboardInterrupt as exc:
        print(f"interrupted {getattr(exc, 'run_id', None)}", flush=True)
        sys.exit(3)
    print("completed", flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not reaped by its parent) is gone too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_recorded(project_root: Path, node_id: str) -> bool:
    """Whether the ledger holds the ``step.started`` event of ``node_id`` (read-only)."""
    uri = (project_root / ".pipetrail" / "ledger.db").as_uri() + "?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True) as db:
            rows = db.execute(
                "SELECT payload FROM events WHERE kind = ?", (str(EventKind.STEP_STARTED),)
            ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return False
    return any(json.loads(payload).get("node_id") == node_id for (payload,) in rows)


def _wait_for(check: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_ctrl_c_ends_the_run_as_interrupted_and_stops_the_workers(
    project_root: Path, tmp_path: Path, executor: str
) -> None:
    pipeline_file = project_root / "gated_run.py"
    pipeline_file.write_text(textwrap.dedent(GATED))
    child = project_root / "child.py"
    child.write_text(textwrap.dedent(CHILD))
    (project_root / "pipetrail.toml").write_text("[pipetrail]\n[executor]\nworkers = 2\n")
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(child), str(pipeline_file), str(project_root), str(gate), executor],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        start_new_session=True,  # its own process group, so nothing else is signalled
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        _wait_for(lambda: (gate / "ready").exists(), "the step never started")
        # On dask the blocking step may start on the cluster before the upstream step's
        # result reaches the coordinator (it is chained); Ctrl-C then awaits that result
        # for a grace only. Signalled once the coordinator has recorded the start, the
        # run's end is the same whatever the machine's load.
        _wait_for(lambda: _start_recorded(project_root, "block"), "its start was not recorded")
        worker_pid, worker_parent = map(int, next(gate.glob("pids-*")).read_text().split())
        assert worker_pid != proc.pid
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 3, err
    run_id = out.split()[-1]

    # The worker that ran the step, and its nanny on dask, are gone with the run.
    _wait_for(lambda: not _alive(worker_pid), f"worker {worker_pid} still runs")
    if executor == "dask":
        _wait_for(lambda: not _alive(worker_parent), f"nanny {worker_parent} still runs")
    # Nothing of the child's process group is left (pool, scheduler, workers).
    _wait_for(lambda: not _group_members(proc.pid), "processes of the run are left")

    project = Project.at(project_root)
    try:
        run = project.reader().get_run(run_id)
        assert run["status"] == "interrupted"
        assert run["error"] == "interrupted by SIGINT"
        summary = run_summary(project.reader(), run_id)
        found = {s["node_id"]: s["status"] for s in summary["steps"]}
        found.update({n["node_id"]: "not run" for n in summary.get("not_run", [])})
        assert found == {"first": "completed", "block": "interrupted", "after": "not run"}
        events = [e for e in project.ledger.iter_events() if e.run_id == run_id]
        assert events[-1].kind == EventKind.RUN_INTERRUPTED
        assert project.ledger.verify().ok
        # Only complete objects: each reads back as its digest; no temporary file left.
        store = project.store
        digests = list(store.iter_digests())
        assert digests
        assert all(store.verify(d) for d in digests)
        tmp = project_root / ".pipetrail" / "objects" / "tmp"
        assert tmp.is_dir()
        assert not [p for p in tmp.rglob("*") if p.is_file()]
        # Every object the run recorded is in the store.
        for event in events:
            payload = json.loads(event.payload_text)
            for digest in (payload.get("outputs") or {}).values():
                blob = project.reader().artifact(digest)["blob"]
                assert store.exists(blob)
    finally:
        project.close()
        (gate / "release").write_text("1")


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) == pgid and _alive(int(entry)):
                found.append(int(entry))
        except OSError:
            continue
    return found
