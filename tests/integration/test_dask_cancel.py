"""Ctrl-C on the Dask executor when the cluster does not answer: bounded, and recorded.

A real LocalCluster (two workers). Its client's event loop is held busy when the signal
arrives, so a cancellation sent through the client cannot be taken: the interrupt must
still end the run, as interrupted, within the executor's bound, and the run's end must
name the step it could not cancel. When the scheduler of the LocalCluster the run made
has closed before the signal, closing that cluster is bounded the same way, and its
worker processes are gone.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from pipetrail.errors import RunInterruptedError
from pipetrail.execution.executors import dask_cluster
from pipetrail.execution.executors.dask_cluster import DaskExecutor
from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

GATED = """
import time
from pathlib import Path

from pipetrail import pipeline, step


@step(cache=False)
def head(gate: str) -> int:
    (Path(gate) / "ready").write_text("1")
    while not (Path(gate) / "release").exists():
        time.sleep(0.01)
    return 1


@step(cache=False)
def tail(x: int) -> int:
    return x * 2


@pipeline
def gated(gate: str):
    return tail(head(gate))
"""

# How long the client's loop is held at most (the test releases it once it has checked).
_HELD_S = 90.0


def test_ctrl_c_with_an_unresponsive_client_ends_the_run_within_the_bound(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    tmp_path: Path,
    dask_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dask_client.wait_for_workers(2, timeout=60)
    monkeypatch.setattr(dask_cluster, "CANCEL_TIMEOUT_S", 1.0)
    definition = files.load(unique("gated"), GATED)
    executor = DaskExecutor(client=dask_client)
    gate = tmp_path / "gate"
    gate.mkdir()
    free = threading.Event()

    def hold_the_loop_then_interrupt() -> None:
        deadline = time.monotonic() + 60
        while not (gate / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        dask_client.loop.add_callback(free.wait, _HELD_S)  # the client answers nothing now
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=hold_the_loop_then_interrupt, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        with pytest.raises(RunInterruptedError) as caught:
            run_pipeline(
                definition, {"gate": str(gate)}, project, RunOptions(cache=False, executor=executor)
            )
        took = time.monotonic() - started
    finally:
        free.set()
        (gate / "release").write_text("1")
        watcher.join(timeout=60)
    # The grace for results on their way (2 s) and the bound (1 s here), far below the
    # time the client's loop was held.
    assert took < _HELD_S / 3, took
    run_id = caught.value.run_id
    assert run_id is not None
    [end] = [
        json.loads(e.payload_text)
        for e in project.ledger.iter_events()
        if e.run_id == run_id and e.kind.startswith("run.") and e.kind != "run.started"
    ]
    assert end["signal"] == "SIGINT"
    assert end["error"].startswith("interrupted by SIGINT; the executor could not cancel")
    assert "step(s) 'tail' in time" in end["error"]
    [row] = project.reader().runs_by_id([run_id])
    assert row["status"] == "interrupted"


def test_ctrl_c_then_the_scheduler_closing_closes_the_cluster_within_the_bound(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], tmp_path: Path
) -> None:
    definition = files.load(unique("gated"), GATED)
    executor = DaskExecutor(workers=2)  # its own LocalCluster, closed with the run
    gate = tmp_path / "gate"
    gate.mkdir()
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    workers: list[psutil.Process] = []
    interrupted: list[float] = []

    def interrupt_then_close_the_scheduler() -> None:
        deadline = time.monotonic() + 60
        while not (gate / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        workers.extend(
            p
            for p in me.children(recursive=True)
            if p.pid not in before and "spawn_main" in " ".join(p.cmdline())
        )
        interrupted.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)
        # While the run waits for results on their way (2 s), the scheduler goes: the
        # client loses it, and the cancellation after the wait finds it closed.
        time.sleep(0.2)
        cluster = executor._cluster
        cluster.sync(cluster.scheduler.close)

    watcher = threading.Thread(target=interrupt_then_close_the_scheduler, daemon=True)
    watcher.start()
    try:
        with pytest.raises(RunInterruptedError) as caught:
            run_pipeline(
                definition, {"gate": str(gate)}, project, RunOptions(cache=False, executor=executor)
            )
        took = time.monotonic() - interrupted[0]
    finally:
        (gate / "release").write_text("1")
        watcher.join(timeout=60)
    # The grace for results on their way (2 s), then the closes, bounded by the
    # executor's bound (5 s), with a wide margin for a loaded machine. Unbounded, closing
    # the cluster waits out Dask's 30 s connect timeout on the closed scheduler.
    assert took < 3 * dask_cluster.CANCEL_TIMEOUT_S, took
    # The cluster's worker processes are gone (the step was still running on one).
    assert len(workers) == 2, workers
    _, alive = psutil.wait_procs(workers, timeout=1)
    assert not alive, alive
    run_id = caught.value.run_id
    assert run_id is not None
    [end] = [
        json.loads(e.payload_text)
        for e in project.ledger.iter_events()
        if e.run_id == run_id and e.kind.startswith("run.") and e.kind != "run.started"
    ]
    assert end["signal"] == "SIGINT"
    # 'tail' never ran; if its task was still in flight, the end says it was not cancelled.
    assert end["error"] in (
        "interrupted by SIGINT",
        "interrupted by SIGINT; the executor could not cancel step(s) 'tail' in time: they "
        "may still run on the cluster, and nothing they store is recorded",
    ), end["error"]
    [row] = project.reader().runs_by_id([run_id])
    assert row["status"] == "interrupted"
