"""Per-step overhead of the Dask executor against submitting the plain functions directly.

One ``LocalCluster`` of two worker processes (one thread each) serves both sides, in
the same run. For N trivial steps, pipetrail's side is a run of the pipeline on
``DaskExecutor(client=...)`` with the cache off (every step executes on a worker and is
recorded: events, outputs in the store) in one project, created by a warm-up run; the
direct side submits the same plain function N times with ``client.submit`` and gathers
the results. A run's fixed cost (capturing the environment, opening the stores) is
included, spread over its N steps. Two shapes:

* ``fanout``: N independent steps (all ready at once);
* ``chain``: N steps each taking the previous one's output (direct: each future is
  passed to the next submit, so Dask resolves the dependency without the client).

Per-step overhead = wall time / N, on each side; the target is pipetrail within 2x of
direct submission on both shapes. The chain's steps have their cache off (the run's
``cache=False``), so pipetrail submits each one chained on the task before it, as the
direct side does; the coordinator still fetches, checks and records every result. CPU
time (the coordinator's process, which also runs the scheduler, and the workers') is
reported for each side, for information: it is steadier than wall time on a busy machine.
The cluster is the one ``DaskExecutor(workers=2)`` makes for a run (its ``connect``),
the local cluster a user of ``--executor dask`` gets. Without ``dask.distributed``
every row, with its target, says not measured.

Run: ``.venv/bin/python benchmarks/dask_overhead.py [--quick]``.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import _fanout
from _common import Result, log, main, not_measured, summarize, target_text, time_call

STEPS = 200
TARGET_RATIO = 2.0
SHAPES = {"fanout": "fan-out", "chain": "chain"}


def rows(n: int) -> list[tuple[str, str, str, float | None]]:
    """Every row: (its name's end, what it measures, unit, upper target or None)."""
    found: list[tuple[str, str, str, float | None]] = []
    for shape in SHAPES:
        found += [
            (f"{shape}_pipetrail", f"per step, {n} steps, {shape}", "ms", None),
            (f"{shape}_direct", f"per step, client.submit, {shape}", "ms", None),
        ]
    for shape, label in SHAPES.items():
        found += [
            (f"{shape}_ratio", f"pipetrail / direct, {label}", "x", TARGET_RATIO),
            (f"{shape}_cpu_ratio", f"CPU, pipetrail / direct, {label}", "x", None),
        ]
    return found


def not_measured_rows(reason: str, n: int = STEPS) -> list[Result]:
    """Every row, targets included, as not measured (``reason`` says why)."""
    return [
        not_measured(
            f"dask_overhead.{name}", what, unit, reason, target=target_text(unit, at_most=most)
        )
        for name, what, unit, most in rows(n)
    ]


def _cpu(client: Any) -> float:
    """CPU seconds used so far by this process (coordinator and scheduler) and the workers."""
    return time.process_time() + sum(client.run(time.process_time).values())


def _measured(client: Any, work: Any) -> tuple[float, float]:
    """Wall seconds and CPU seconds (see :func:`_cpu`) of one call of ``work``."""
    cpu = _cpu(client)
    seconds = time_call(work)
    return seconds, _cpu(client) - cpu


def _pipetrail(client: Any, definition: Any, project: Path, n: int) -> tuple[float, float]:
    from pipetrail.execution.executors.dask_cluster import DaskExecutor

    runner = definition.with_options(
        project=project, cache=False, executor=DaskExecutor(client=client)
    )
    try:
        holder: list[Any] = []
        measured = _measured(client, lambda: holder.append(runner.run(n=n)))
        statuses = [s["status"] for s in holder[0].steps()]
        if statuses.count("completed") != n:
            raise RuntimeError(f"not every step executed: {set(statuses)}")
    finally:
        if runner.project is not None:
            runner.project.close()
    return measured


def _direct_fanout(client: Any, n: int) -> tuple[float, float]:
    func = _fanout.inc.func

    def work() -> None:
        futures = [client.submit(func, i, pure=False) for i in range(n)]
        values = client.gather(futures)
        if values != [i + 1 for i in range(n)]:
            raise RuntimeError("direct fan-out computed something else")

    return _measured(client, work)


def _direct_chain(client: Any, n: int) -> tuple[float, float]:
    func = _fanout.inc.func

    def work() -> None:
        # As a user chains plain functions: each future is the next submission's argument.
        x = client.submit(func, 0, pure=False)
        for _ in range(n - 1):
            x = client.submit(func, x, pure=False)
        if x.result() != n:
            raise RuntimeError("direct chain computed something else")

    return _measured(client, work)


def run(quick: bool) -> list[Result]:
    if importlib.util.find_spec("distributed") is None:
        return not_measured_rows(
            "dask.distributed is not installed (pip install 'pipetrail[dask]')"
        )
    from pipetrail.execution.executors.dask_cluster import DaskExecutor

    reps = 3 if quick else 7
    n = STEPS
    log(f"dask_overhead: 2-worker LocalCluster, {reps} x {n} trivial steps, each side")
    # The local cluster a run makes (one thread per worker process); closed by shutdown().
    owner = DaskExecutor(workers=2)
    client = owner.connect()
    samples: dict[str, list[float]] = {name: [] for name, *_ in rows(n)}
    # One project for the whole benchmark: its stores are created by the warm-up run, so
    # the timed runs pay what every run pays, not the first run's schema creation.
    project = Path(tempfile.mkdtemp(prefix="pipetrail-bench-dask-"))
    try:
        # Warm-up: workers import pipetrail and the steps' module once.
        _pipetrail(client, _fanout.fanout, project, 10)
        _pipetrail(client, _fanout.chain, project, 10)
        _direct_fanout(client, 10)
        _direct_chain(client, 10)
        for i in range(reps):
            for shape, definition, plain in (
                ("fanout", _fanout.fanout, _direct_fanout),
                ("chain", _fanout.chain, _direct_chain),
            ):
                # Alternate which side goes first, so drift in load hits both alike.
                if i % 2:
                    d, d_cpu = plain(client, n)
                    p, p_cpu = _pipetrail(client, definition, project, n)
                else:
                    p, p_cpu = _pipetrail(client, definition, project, n)
                    d, d_cpu = plain(client, n)
                samples[f"{shape}_pipetrail"].append(p / n * 1e3)
                samples[f"{shape}_direct"].append(d / n * 1e3)
                samples[f"{shape}_ratio"].append(p / d)
                samples[f"{shape}_cpu_ratio"].append(p_cpu / d_cpu)
                log(
                    f"  rep {i + 1} {shape}: pipetrail {p:.2f} s ({p_cpu:.2f} s CPU), "
                    f"direct {d:.2f} s ({d_cpu:.2f} s CPU)"
                )
    finally:
        owner.shutdown()
        shutil.rmtree(project, ignore_errors=True)
    return [
        summarize(f"dask_overhead.{name}", what, samples[name], unit, at_most=most)
        for name, what, unit, most in rows(n)
    ]


if __name__ == "__main__":
    raise SystemExit(main(run, __doc__.splitlines()[0]))
