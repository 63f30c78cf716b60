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
direct submission on the fan-out. The chain is shown for information: direct
submission never returns to the client between steps, while the coordinator sees every
result (to record it) before it starts the next step.

Run: ``.venv/bin/python benchmarks/dask_overhead.py [--quick]``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import _fanout
from _common import Result, log, main, not_measured, summarize, time_call

STEPS = 200
TARGET_RATIO = 2.0


def _pipetrail_seconds(client: Any, definition: Any, project: Path, n: int) -> float:
    from pipetrail.execution.executors.dask_cluster import DaskExecutor

    runner = definition.with_options(
        project=project, cache=False, executor=DaskExecutor(client=client)
    )
    try:
        holder: list[Any] = []
        seconds = time_call(lambda: holder.append(runner.run(n=n)))
        statuses = [s["status"] for s in holder[0].steps()]
        if statuses.count("completed") != n:
            raise RuntimeError(f"not every step executed: {set(statuses)}")
    finally:
        if runner.project is not None:
            runner.project.close()
    return seconds


def _direct_fanout(client: Any, n: int) -> float:
    func = _fanout.inc.func

    def work() -> None:
        futures = [client.submit(func, i, pure=False) for i in range(n)]
        values = client.gather(futures)
        if values != [i + 1 for i in range(n)]:
            raise RuntimeError("direct fan-out computed something else")

    return time_call(work)


def _direct_chain(client: Any, n: int) -> float:
    func = _fanout.inc.func

    def work() -> None:
        x = client.submit(func, 0, pure=False)
        for _ in range(n - 1):
            x = client.submit(func, x, pure=False)
        if x.result() != n:
            raise RuntimeError("direct chain computed something else")

    return time_call(work)


def run(quick: bool) -> list[Result]:
    try:
        import distributed
    except ImportError:
        reason = "dask.distributed is not installed (pip install 'pipetrail[dask]')"
        return [
            not_measured(
                "dask_overhead.fanout_ratio",
                "pipetrail / direct",
                "x",
                reason,
                target=f"<= {TARGET_RATIO} x",
            ),
        ]
    from pipetrail.execution.executors.dask_cluster import _local_cluster

    reps = 3 if quick else 7
    n = STEPS
    log(f"dask_overhead: 2-worker LocalCluster, {reps} x {n} trivial steps, each side")
    cluster, client = _local_cluster(distributed, 2)
    ours: dict[str, list[float]] = {"fanout": [], "chain": []}
    direct: dict[str, list[float]] = {"fanout": [], "chain": []}
    ratios: dict[str, list[float]] = {"fanout": [], "chain": []}
    # One project for the whole benchmark: its stores are created by the warm-up run, so
    # the timed runs pay what every run pays, not the first run's schema creation.
    project = Path(tempfile.mkdtemp(prefix="pipetrail-bench-dask-"))
    try:
        # Warm-up: workers import pipetrail and the steps' module once.
        _pipetrail_seconds(client, _fanout.fanout, project, 10)
        _direct_fanout(client, 10)
        for i in range(reps):
            for shape, definition, plain in (
                ("fanout", _fanout.fanout, _direct_fanout),
                ("chain", _fanout.chain, _direct_chain),
            ):
                # Alternate which side goes first, so drift in load hits both alike.
                if i % 2:
                    d = plain(client, n)
                    p = _pipetrail_seconds(client, definition, project, n)
                else:
                    p = _pipetrail_seconds(client, definition, project, n)
                    d = plain(client, n)
                ours[shape].append(p / n * 1e3)
                direct[shape].append(d / n * 1e3)
                ratios[shape].append(p / d)
                log(f"  rep {i + 1} {shape}: pipetrail {p:.2f} s, direct {d:.2f} s")
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(project, ignore_errors=True)
    results = []
    for shape in ("fanout", "chain"):
        results += [
            summarize(
                f"dask_overhead.{shape}_pipetrail",
                f"per step, {n} steps, {shape}",
                ours[shape],
                "ms",
            ),
            summarize(
                f"dask_overhead.{shape}_direct",
                f"per step, client.submit, {shape}",
                direct[shape],
                "ms",
            ),
        ]
    results.append(
        summarize(
            "dask_overhead.fanout_ratio",
            "pipetrail / direct, fan-out",
            ratios["fanout"],
            "x",
            at_most=TARGET_RATIO,
        )
    )
    results.append(
        summarize("dask_overhead.chain_ratio", "pipetrail / direct, chain", ratios["chain"], "x")
    )
    return results


if __name__ == "__main__":
    raise SystemExit(main(run, __doc__.splitlines()[0]))
