"""Cost of logging metrics: 100,000 points, one ``log_metric`` call each, inside one step.

Each repetition makes a fresh project in a new temporary folder, runs a 1-iteration
``plain`` run there untimed (the first run of a project creates its stores and captures
the environment), then, in this process, times two one-step pipelines with caching off
(``with_options(cache=False)``):

* ``plain``: a loop of N iterations computing ``1.0 / (i + 1)``;
* ``logged``: the same loop, calling ``log_metric("train/loss", value)`` once per
  iteration.

Added time = wall time of the ``logged`` run - wall time of the ``plain`` run: the calls
themselves, and at step end encoding, hashing and storing the series and timestamps
artifacts and recording them in the ledger. The two runs alternate in order from one
repetition to the next so that warm caches favour neither. Each logged run is checked:
its step references one series of N points.

For scale only (not measured here, and no verdict depends on it): MLflow's ``log_metric``
makes one tracking request per call; batching (``log_batch``) is its documented way
around it.

| row | what | target |
|-----|------|--------|
| ``metrics.added_100k`` | added wall time, 100,000 single-call points | <= 1 s |
| ``metrics.added_1m`` | added wall time, 1,000,000 single-call points | context |
| ``metrics.per_point`` | added time per point, from the 1,000,000-point runs | context |

Run: ``.venv/bin/python benchmarks/metrics.py [--quick]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _common import Result, log, main, summarize, time_call

from pipetrail import log_metric, pipeline, step

SMALL = 100_000
LARGE = 1_000_000
TARGET_S = 1.0


@step
def plain_loop(n: int) -> float:
    total = 0.0
    for i in range(n):
        value = 1.0 / (i + 1)
        total += value
    return total


@step
def logged_loop(n: int) -> float:
    total = 0.0
    for i in range(n):
        value = 1.0 / (i + 1)
        log_metric("train/loss", value)
        total += value
    return total


@pipeline
def plain(n: int = SMALL) -> float:
    return plain_loop(n)


@pipeline
def logged(n: int = SMALL) -> float:
    return logged_loop(n)


def _timed(definition: object, project: Path, n: int) -> tuple[float, object]:
    runner = definition.with_options(project=project, cache=False)  # type: ignore[attr-defined]
    holder: list[object] = []
    try:
        seconds = time_call(lambda: holder.append(runner.run(n=n)))
        run = holder[0]
        if n and definition is logged:
            _check(run, n)
    finally:
        runner.project.close()
    return seconds, run


def _check(run: object, n: int) -> None:
    record = run.steps()[0]  # type: ignore[attr-defined]
    digest = record["outputs"]["metric:train/loss"]
    artifact = run.project.reader().artifact(digest)  # type: ignore[attr-defined]
    count = artifact["meta"]["summary"]["count"]
    if count != n:
        raise RuntimeError(f"logged run recorded {count} points, expected {n}")


def _added(n: int, reps: int) -> list[float]:
    """Return the added seconds of ``reps`` (logged - plain) pairs, each in a fresh project."""
    added = []
    for i in range(reps):
        project = Path(tempfile.mkdtemp(prefix="pipetrail-bench-metrics-"))
        try:
            _timed(plain, project, 1)  # creates the stores, captures the environment
            order = [plain, logged] if i % 2 == 0 else [logged, plain]
            times = {id(d): _timed(d, project, n)[0] for d in order}
        finally:
            shutil.rmtree(project, ignore_errors=True)
        extra = times[id(logged)] - times[id(plain)]
        log(
            f"  {n:,} points, rep {i + 1}: plain {times[id(plain)]:.3f} s, "
            f"logged {times[id(logged)]:.3f} s, added {extra:.3f} s"
        )
        added.append(extra)
    return added


def run(quick: bool) -> list[Result]:
    small_reps, large_reps = (2, 1) if quick else (7, 3)
    log(f"metrics: warm-up, then {small_reps} x {SMALL:,} and {large_reps} x {LARGE:,} points")
    _added(1000, 1)
    small = _added(SMALL, small_reps)
    large = _added(LARGE, large_reps)
    return [
        summarize(
            "metrics.added_100k",
            f"added wall time, {SMALL:,} log_metric calls in one step",
            small,
            "s",
            at_most=TARGET_S,
        ),
        summarize(
            "metrics.added_1m",
            f"added wall time, {LARGE:,} log_metric calls in one step",
            large,
            "s",
        ),
        summarize(
            "metrics.per_point",
            f"added time per point ({LARGE:,}-point runs)",
            [s / LARGE * 1e6 for s in large],
            "µs",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, (__doc__ or "").splitlines()[0]))
