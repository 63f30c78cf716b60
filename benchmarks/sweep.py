"""A sweep of 1,000 step runs of trivial steps on a 2-worker Dask LocalCluster.

Whole process, as a user types it: ``pipetrail sweep pipeline.py -p x=0,...,199
--max-parallel 4`` in a fresh project whose ``pipetrail.toml`` chooses the dask
executor with a 2-worker local cluster (``executor = "dask"``, ``[executor] workers =
2``). The pipeline has five trivial steps: one upstream step that does not depend on the
swept parameter (executed by the first runs, those started before one of them recorded
it, and a cache hit in the others) and four that do (executed on the cluster's
workers). 200 points x 5 steps = 1,000 step runs, each recorded in the ledger. The time
includes the interpreter start, making the cluster, every run's record (environment,
git state, events) and the closing summary; the project is new each repetition.

Target: <= 60 s (median). Run: ``.venv/bin/python benchmarks/sweep.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
import textwrap
from pathlib import Path

from _common import PYTHON, Result, bench_env, log, main, not_measured, run_timed, summarize

POINTS = 200
STEPS_PER_RUN = 5
PARALLEL = 4
TARGET_S = 60.0

PIPELINE = """
from pipetrail import pipeline, step


@step
def prepare(size: int) -> list[int]:
    return list(range(size))


@step
def shift(data: list[int], x: int, k: int) -> int:
    return sum(data) + x * k


@pipeline
def grid(x: int = 0, size: int = 10):
    data = prepare(size)
    return [shift(data, x, k) for k in range(4)]
"""


def _project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="pipetrail-bench-sweep-"))
    (root / "pipetrail.toml").write_text(
        '[pipetrail]\nexecutor = "dask"\n\n[executor]\nworkers = 2\n'
    )
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    return root


def _sweep(points: int) -> float:
    root = _project()
    try:
        values = ",".join(str(i) for i in range(points))
        argv = [PYTHON, "-m", "pipetrail.cli.main", "sweep", "pipeline.py", "-p", f"x={values}"]
        argv += ["--max-parallel", str(PARALLEL), "--json"]
        seconds, out = run_timed(argv, cwd=root, env=bench_env())
        sweep = json.loads(out)
        if sweep["completed"] != points:
            raise RuntimeError(f"the sweep did not complete every run: {sweep['failed']} failed")
        with contextlib.closing(sqlite3.connect(root / ".pipetrail" / "ledger.db")) as db:
            counts = dict(db.execute("SELECT status, COUNT(*) FROM step_runs GROUP BY status"))
        # Every swept step executes; the upstream step executes in the first runs only
        # (those started before one of them recorded it: at most PARALLEL).
        total = counts.get("completed", 0) + counts.get("cached", 0)
        if total != points * STEPS_PER_RUN or counts.get("cached", 0) < points - PARALLEL:
            raise RuntimeError(f"unexpected step runs: {counts}")
        return seconds
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(quick: bool) -> list[Result]:
    try:
        import distributed  # noqa: F401 - only whether it is installed
    except ImportError:
        return [
            not_measured(
                "sweep.dask_1000_step_runs",
                "pipetrail sweep, 1,000 step runs",
                "s",
                "dask.distributed is not installed (pip install 'pipetrail[dask]')",
                target=f"<= {TARGET_S:.0f} s",
            )
        ]
    reps = 1 if quick else 3
    log(
        f"sweep: {POINTS} points x {STEPS_PER_RUN} steps on a 2-worker LocalCluster, "
        f"--max-parallel {PARALLEL}, {reps} rep(s)"
    )
    samples = []
    for i in range(reps):
        seconds = _sweep(POINTS)
        log(f"  rep {i + 1}: {seconds:.1f} s")
        samples.append(seconds)
    return [
        summarize(
            "sweep.dask_1000_step_runs",
            f"pipetrail sweep, {POINTS} runs x {STEPS_PER_RUN} steps, dask (2 workers)",
            samples,
            "s",
            at_most=TARGET_S,
        )
    ]


if __name__ == "__main__":
    raise SystemExit(main(run, __doc__.splitlines()[0]))
