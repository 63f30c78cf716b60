"""Tracked in-process overhead per step, on a chain of 1,000 trivial steps.

Each repetition makes a fresh project in a new temporary folder (no ``pipetrail.toml``:
the stores are created under ``.pipetrail/`` on first write) and, in this process:

1. runs the 1,000-step chain once: every step executes (the first, uncached run);
2. runs it again in the same project: every step is a cache hit (the cached re-run).

Per-step overhead = (wall time of the tracked run - wall time of calling the plain
function 1,000 times) / 1,000. The fixed cost of a run (opening the ledger, capturing
the environment, ...) is included, amortized over the 1,000 steps; the
``fixed_per_run`` row shows it on its own (a 1-step chain in a fresh project). The
``cached_cpu`` row is the cached re-run's overhead in CPU time of this process (the plain
functions' wall time taken off the same way): it moves much less than wall time while
other processes keep the machine busy, and it holds the target of a cached step.

A warm-up run in a throw-away project comes first, so imports and process-wide caches
are not charged to the first repetition. ``--profile`` adds a cProfile of one uncached
run (top functions by cumulative time; the raw profile is kept in benchmarks/.work/).

Run: ``.venv/bin/python benchmarks/step_overhead.py [--quick] [--profile]``.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import _chain
from _common import WORK_DIR, Result, log, main, summarize, time_call

if TYPE_CHECKING:
    import argparse

STEPS = 1000
TARGET_MS = 2.0
TARGET_CACHED_CPU_MS = 0.15  # a cached step, everything recorded


def _plain_seconds(n: int) -> float:
    """Median wall time of the untracked computation (it is tiny: tens of µs)."""
    return statistics.median(time_call(lambda: _chain.plain_chain(n)) for _ in range(7))


def _fresh_project() -> Path:
    return Path(tempfile.mkdtemp(prefix="pipetrail-bench-steps-"))


def _timed_run(project: Path, n: int) -> tuple[float, list[str], int]:
    """Run the chain in ``project``; return (seconds, step statuses, result value)."""
    seconds, _, statuses, value = _timed_run_cpu(project, n)
    return seconds, statuses, value


def _timed_run_cpu(project: Path, n: int) -> tuple[float, float, list[str], int]:
    """Run the chain in ``project``; return (seconds, CPU seconds, statuses, value).

    The CPU time is this process's (``time.process_time``): on a machine other
    processes keep busy it moves much less than the wall time.
    """
    runner = _chain.chain.with_options(project=project)
    try:
        holder: list[object] = []
        cpu = time.process_time()
        seconds = time_call(lambda: holder.append(runner.run(n=n)))
        cpu = time.process_time() - cpu
        run = holder[0]
        statuses = [s["status"] for s in run.steps()]  # type: ignore[attr-defined]
        value = run.outputs  # type: ignore[attr-defined]
    finally:
        if runner.project is not None:
            runner.project.close()
    return seconds, cpu, statuses, value


def _one_repetition(n: int) -> tuple[float, float, float]:
    """Return (uncached seconds, cached seconds, cached CPU seconds) for a fresh project."""
    project = _fresh_project()
    try:
        first, statuses, value = _timed_run(project, n)
        if value != n or statuses.count("completed") != n:
            raise RuntimeError(f"uncached run is wrong: value={value}, statuses={set(statuses)}")
        again, cpu, statuses, value = _timed_run_cpu(project, n)
        if value != n or statuses.count("cached") != n:
            raise RuntimeError(f"cached run is not fully cached: {set(statuses)}")
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return first, again, cpu


def _fixed_cost() -> float:
    project = _fresh_project()
    try:
        seconds, _, _ = _timed_run(project, 1)
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return seconds


def profile_uncached(n: int = STEPS, top: int = 15) -> str:
    """cProfile one uncached run in a fresh project; return the top-``top`` report."""
    project = _fresh_project()
    profiler = cProfile.Profile()
    runner = _chain.chain.with_options(project=project)
    try:
        profiler.enable()
        runner.run(n=n)
        profiler.disable()
    finally:
        if runner.project is not None:
            runner.project.close()
        shutil.rmtree(project, ignore_errors=True)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    dump = WORK_DIR / "step_overhead.prof"
    profiler.dump_stats(str(dump))
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return f"cProfile of one uncached {n}-step run (raw profile: {dump})\n{out.getvalue()}"


def run(quick: bool, profile: bool = False) -> list[Result]:
    reps = 1 if quick else 7
    n = STEPS
    log(f"step_overhead: warm-up, then {reps} x (uncached + cached) runs of a {n}-step chain")
    warm = _fresh_project()
    try:
        _timed_run(warm, 20)
        _timed_run(warm, 20)
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    fixed = [_fixed_cost() for _ in range(3 if quick else 5)]
    plain = _plain_seconds(n)
    uncached: list[float] = []
    cached: list[float] = []
    cached_cpu: list[float] = []
    for i in range(reps):
        first, again, cpu = _one_repetition(n)
        log(
            f"  rep {i + 1}: uncached {first:.2f} s, cached {again:.2f} s "
            f"(plain functions: {plain * 1e6:.0f} µs)"
        )
        uncached.append((first - plain) / n * 1e3)
        cached.append((again - plain) / n * 1e3)
        cached_cpu.append((cpu - plain) / n * 1e3)
    results = [
        summarize(
            "step_overhead.uncached",
            f"per-step overhead, first run, {n}-step chain",
            uncached,
            "ms",
            at_most=TARGET_MS,
        ),
        summarize(
            "step_overhead.cached",
            f"per-step overhead, fully cached re-run, {n} steps",
            cached,
            "ms",
        ),
        summarize(
            "step_overhead.cached_cpu",
            f"the same in CPU time of this process, {n} steps",
            cached_cpu,
            "ms",
            at_most=TARGET_CACHED_CPU_MS,
        ),
        summarize(
            "step_overhead.fixed_per_run",
            "uncached 1-step run in a fresh project",
            [s * 1e3 for s in fixed],
            "ms",
        ),
    ]
    if profile:
        print(profile_uncached(n))
    return results


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile one uncached run and print the top 15 functions",
    )


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0], _options))
