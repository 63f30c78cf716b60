"""Per-step overhead, whole process, against Kedro: chains of 10, 100 and 1,000 steps.

Three programs, each run as a whole process (``time.perf_counter`` around
``subprocess.run``: interpreter start-up, imports, the run, exit), in the same benchmark
run:

* pipetrail, first run: ``benchmarks/_chain.py``'s pipeline file (a chain of N trivial
  steps, ``inc(inc(...inc(0)))``) run through the Python API in a new project, full
  recording (ledger, store, environment capture);
* pipetrail, cached: the same program again in the same project (every step a cache hit);
* Kedro (quiet: its loggers at WARNING), from its own virtualenv
  (:func:`peers.ensure_kedro`): the same chain as Kedro nodes over memory datasets, run
  by its ``SequentialRunner``. Kedro records nothing.

The method. What one more step costs is a small difference between two processes that
each take hundreds of milliseconds and jitter by tens (start-up, imports, and for
pipetrail the fixed cost of a run: environment capture, a new ledger). So the benchmark
runs in rounds, and in each round, for each chain length N, it runs each tool's N-step
chain next to its 1-step chain (which of the two goes first alternates from round to
round, and so does which tool goes first), and takes the round's per-step figure as
(time of N steps - time of 1 step) / (N - 1). Each row gives the median over the rounds
with a distribution-free interval for it (order statistics: at least 90% coverage where
the rounds allow, see ``_paired.py``), in its "measured" text; min and max are over the
rounds. A verdict is given only when the interval decides it: ``PASS`` when the whole
interval meets the target, ``FAIL`` when none of it does, ``inconclusive`` otherwise (at
10 steps the difference is a few milliseconds, within the jitter, so expect that there).

Targets: pipetrail's first run <= 0.5 ms per step at 100 and 1,000 steps, its cached run
<= 0.15 ms; faster than Kedro at every length, 10 steps included: ``vs_kedro.ratio.N`` is
Kedro's median per-step figure over pipetrail's (first run), and its verdict is that of
the per-round difference (Kedro's figure minus pipetrail's, same round) against 0. When
Kedro cannot be installed, its rows and the ratios say "not measured", with no verdict.

Context rows, without verdicts: ``ratio_cpu.N``, the same ratio in CPU time (user + system
of the whole process, ``getrusage`` of the children; a loaded machine stretches wall
time, not CPU time); ``pipetrail_first_in_run.N`` and ``pipetrail_cached_in_run.N``,
measured **in process**, from the recorded step events' own timestamps: the mean time
between the starts of consecutive steps, from the second to the last (the first carries
the one-off work of its step definition), so neither start-up nor the run's fixed cost
is in it; and the two 1-step baselines.

Rounds: 21 at 10 and 100 steps, 9 at 1,000 (``--quick``: 9, 9 and 5), after a warm-up. The
pipetrail processes run this checkout's ``src/`` (``PYTHONPATH``).

Run: ``.venv/bin/python benchmarks/step_overhead_vs_kedro.py [--quick]``.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _chain import PIPELINE_FILE_TEXT
from _common import PYTHON, REPO_ROOT, Result, bench_env, log, main, not_measured, run_timed
from _common import summarize as _summarize
from _paired import describe, interval_verdict, median_interval, summarize_rounds
from peers import Kedro, PeerUnavailable, ensure_kedro

SIZES = (10, 100, 1000)
FIRST_TARGET_MS = 0.5
CACHED_TARGET_MS = 0.15
CHECKED = (100, 1000)  # the sizes the absolute targets apply to
ROUNDS = {10: 21, 100: 21, 1000: 9}
QUICK_ROUNDS = {10: 9, 100: 9, 1000: 5}

PIPETRAIL_SCRIPT = """\
import json
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, sys.argv[1])
from chain import chain

run = chain.with_options(project=Path(sys.argv[2])).run(n=int(sys.argv[3]))
steps = run.steps()
starts = sorted(datetime.fromisoformat(s["started_at"].replace("Z", "+00:00")) for s in steps)
span = (starts[-1] - starts[1]).total_seconds() if len(starts) > 2 else None
statuses = sorted({s["status"] for s in steps})
print(json.dumps({"value": run.outputs, "statuses": statuses, "steps": len(steps), "span": span}))
"""

KEDRO_SCRIPT = """\
import logging
import sys

logging.basicConfig(level=logging.WARNING)
for name in ("kedro", "kedro.io", "kedro.pipeline", "kedro.runner"):
    logging.getLogger(name).setLevel(logging.WARNING)

from kedro.io import DataCatalog
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner


def inc(x):
    return x + 1


def start():
    return 1


n = int(sys.argv[1])
nodes = [node(start, inputs=None, outputs="x0", name="inc_0")]
nodes += [node(inc, inputs=f"x{i - 1}", outputs=f"x{i}", name=f"inc_{i}") for i in range(1, n)]
catalog = DataCatalog()
outputs = SequentialRunner().run(Pipeline(nodes), catalog)
value = outputs[f"x{n - 1}"]
value = value.load() if hasattr(value, "load") else value
print(value)
"""


@dataclass(frozen=True)
class Sample:
    """One whole process: its wall time and CPU time (s), and pipetrail's in-run step span.

    Attributes:
        wall: seconds, ``subprocess.run`` timed from outside.
        cpu: the child's user + system CPU seconds.
        span: pipetrail only, chains of 3 or more steps: seconds from the second step's
            start to the last one's, from the recorded step events.
    """

    wall: float
    cpu: float
    span: float | None = None


def _timed_child(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, out = run_timed(argv, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, cpu, out


class _Programs:
    """The three programs, written into a temporary folder."""

    def __init__(self, folder: Path, kedro: Kedro | None) -> None:
        self.folder = folder
        self.kedro = kedro
        self.env = bench_env()
        self.env["PYTHONPATH"] = str(REPO_ROOT / "src")
        self.kedro_env = bench_env()
        self.kedro_env.pop("PYTHONPATH", None)
        code = folder / "code"
        code.mkdir()
        (code / "chain.py").write_text(PIPELINE_FILE_TEXT.format(n=1000, name="chain"))
        (code / "run_chain.py").write_text(PIPETRAIL_SCRIPT)
        (code / "kedro_chain.py").write_text(KEDRO_SCRIPT)
        self._count = 0

    def pipetrail(self, n: int) -> tuple[Sample, Sample]:
        """The first run of an N-step chain in a new project, then its cached re-run."""
        self._count += 1
        project = self.folder / f"project-{self._count}"
        project.mkdir()
        try:
            first = self._pipetrail_once(project, n, "completed")
            cached = self._pipetrail_once(project, n, "cached")
        finally:
            shutil.rmtree(project, ignore_errors=True)
        return first, cached

    def _pipetrail_once(self, project: Path, n: int, status: str) -> Sample:
        code = self.folder / "code"
        wall, cpu, out = _timed_child(
            [PYTHON, str(code / "run_chain.py"), str(code), str(project), str(n)], self.env
        )
        try:
            printed = json.loads(out)
        except ValueError:
            printed = None
        expected = {"value": n, "statuses": [status], "steps": n}
        if not isinstance(printed, dict) or {k: printed.get(k) for k in expected} != expected:
            raise RuntimeError(f"pipetrail chain of {n} printed {out!r}, expected {expected}")
        return Sample(wall, cpu, printed.get("span"))

    def kedro_run(self, n: int) -> Sample:
        assert self.kedro is not None
        wall, cpu, out = _timed_child(
            [str(self.kedro.python), str(self.folder / "code" / "kedro_chain.py"), str(n)],
            self.kedro_env,
        )
        if out.strip().splitlines()[-1:] != [str(n)]:
            raise RuntimeError(f"Kedro chain of {n} printed {out!r}")
        return Sample(wall, cpu)


@dataclass
class _Pairs:
    """Per chain length, the samples of each round: the 1-step run and the N-step one."""

    first: list[tuple[Sample, Sample]]
    cached: list[tuple[Sample, Sample]]
    kedro: list[tuple[Sample, Sample]]


def per_step(pairs: list[tuple[Sample, Sample]], n: int, *, cpu: bool = False) -> list[float]:
    """Per round: (N-step time - 1-step time) / (N - 1), in ms."""
    return [
        ((long.cpu - short.cpu) if cpu else (long.wall - short.wall)) / (n - 1) * 1e3
        for short, long in pairs
    ]


def in_run(pairs: list[tuple[Sample, Sample]], n: int) -> list[float]:
    """Per round: the N-step run's mean time between step starts (2nd to last), in ms."""
    return [long.span / (n - 2) * 1e3 for _, long in pairs if long.span is not None]


def _round(programs: _Programs, pairs: dict[int, _Pairs], sizes: list[int], r: int) -> None:
    """One round: for each length, each tool's 1-step and N-step runs side by side."""
    for i, n in enumerate(sizes):
        lengths = (1, n) if r % 2 == 0 else (n, 1)
        tools = ["pipetrail", "kedro"] if (r + i) % 2 == 0 else ["kedro", "pipetrail"]
        got: dict[tuple[str, int], Sample] = {}
        for tool in tools:
            if tool == "kedro" and programs.kedro is None:
                continue
            for length in lengths:
                if tool == "kedro":
                    got["kedro", length] = programs.kedro_run(length)
                else:
                    got["first", length], got["cached", length] = programs.pipetrail(length)
        pairs[n].first.append((got["first", 1], got["first", n]))
        pairs[n].cached.append((got["cached", 1], got["cached", n]))
        if programs.kedro is not None:
            pairs[n].kedro.append((got["kedro", 1], got["kedro", n]))


def _measure(programs: _Programs, rounds: dict[int, int]) -> dict[int, _Pairs]:
    pairs = {n: _Pairs([], [], []) for n in SIZES}
    log("step_overhead_vs_kedro: warm-up")
    programs.pipetrail(10)
    if programs.kedro is not None:
        programs.kedro_run(10)
    total = max(rounds.values())
    log(
        "step_overhead_vs_kedro: "
        + ", ".join(f"{rounds[n]} rounds at {n} steps" for n in SIZES)
        + ", interleaved"
    )
    started = time.perf_counter()
    for r in range(total):
        sizes = [n for n in SIZES if rounds[n] > r]
        shift = r % len(sizes)
        _round(programs, pairs, sizes[shift:] + sizes[:shift], r)
        parts = []
        for n in sizes:
            first = per_step(pairs[n].first[-1:], n)[0]
            text = f"{n}: {first:.3f}"
            if pairs[n].kedro:
                text += f" (Kedro {per_step(pairs[n].kedro[-1:], n)[0]:.3f})"
            parts.append(text)
        log(
            f"  round {r + 1}/{total} ({time.perf_counter() - started:.0f} s), pipetrail first "
            f"run ms per step at {'; '.join(parts)}"
        )
    return pairs


def ratio_of(theirs: float, ours: float) -> float:
    """Kedro's per-step figure over pipetrail's; NaN (no ratio) unless both are positive.

    A median per-step figure at or below zero is noise (a difference of two processes
    that jitter more than the steps cost): a ratio of it would mean nothing.
    """
    return theirs / ours if theirs > 0 and ours > 0 else math.nan


def _ratio(n: int, kedro_ms: list[float], ours_ms: list[float]) -> Result:
    """Kedro / pipetrail (first run) per step; verdict from the per-round differences."""
    name = f"vs_kedro.ratio.{n}"
    measured = f"Kedro / pipetrail first run, per step, {n} steps"
    ours, theirs = statistics.median(ours_ms), statistics.median(kedro_ms)
    diff = median_interval([k - p for k, p in zip(kedro_ms, ours_ms, strict=True)])
    ratio = ratio_of(theirs, ours)
    return Result(
        name=name,
        measured=f"{measured} (per-round Kedro - pipetrail, ms: {describe(diff, 'ms')})",
        median=ratio,
        min=ratio,
        max=ratio,
        unit="x",
        target=">= 1.00 x",
        passed=interval_verdict(diff, at_least=0.0),
        n=1,
    )


def _rows(pairs: dict[int, _Pairs], missing: str | None) -> list[Result]:
    results: list[Result] = []
    for n in SIZES:
        got = pairs[n]
        checked = n in CHECKED
        first = per_step(got.first, n)
        results.append(
            summarize_rounds(
                f"vs_kedro.pipetrail_first.{n}",
                f"pipetrail per step, first run, {n}-step chain, whole process",
                first,
                "ms",
                at_most=FIRST_TARGET_MS if checked else None,
            )
        )
        results.append(
            summarize_rounds(
                f"vs_kedro.pipetrail_cached.{n}",
                f"pipetrail per step, cached re-run, {n}-step chain, whole process",
                per_step(got.cached, n),
                "ms",
                at_most=CACHED_TARGET_MS if checked else None,
            )
        )
        if missing:
            results.append(
                not_measured(
                    f"vs_kedro.kedro.{n}", f"Kedro per step, {n}-step chain", "ms", missing
                )
            )
            results.append(
                not_measured(
                    f"vs_kedro.ratio.{n}",
                    f"Kedro / pipetrail first run, per step, {n} steps",
                    "x",
                    missing,
                    target=">= 1.00 x",
                )
            )
        else:
            kedro_ms = per_step(got.kedro, n)
            results.append(
                summarize_rounds(
                    f"vs_kedro.kedro.{n}",
                    f"Kedro (quiet) per step, {n}-step chain, whole process",
                    kedro_ms,
                    "ms",
                )
            )
            results.append(_ratio(n, kedro_ms, first))
            ours_cpu = statistics.median(per_step(got.first, n, cpu=True))
            theirs_cpu = statistics.median(per_step(got.kedro, n, cpu=True))
            cpu_ratio = ratio_of(theirs_cpu, ours_cpu)
            results.append(
                Result(
                    name=f"vs_kedro.ratio_cpu.{n}",
                    measured=(
                        f"the same in CPU time of the whole process (medians: Kedro "
                        f"{theirs_cpu:.3g}, pipetrail {ours_cpu:.3g} ms per step)"
                    ),
                    median=cpu_ratio,
                    min=cpu_ratio,
                    max=cpu_ratio,
                    unit="x",
                    n=1,
                )
            )
        for kind, label in (("first", "first run"), ("cached", "cached re-run")):
            results.append(
                summarize_rounds(
                    f"vs_kedro.pipetrail_{kind}_in_run.{n}",
                    f"pipetrail per step, {label}, {n} steps, IN PROCESS: from the step "
                    "events' timestamps, not whole process",
                    in_run(getattr(got, kind), n),
                    "ms",
                )
            )
    results.append(
        _summarize(
            "vs_kedro.pipetrail_1_step",
            "pipetrail 1-step chain, first run, whole process (the baseline)",
            [short.wall * 1e3 for p in pairs.values() for short, _ in p.first],
            "ms",
        )
    )
    if not missing:
        results.append(
            _summarize(
                "vs_kedro.kedro_1_step",
                "Kedro 1-step chain, whole process (the baseline)",
                [short.wall * 1e3 for p in pairs.values() for short, _ in p.kedro],
                "ms",
            )
        )
    return results


def run(quick: bool) -> list[Result]:
    kedro = ensure_kedro()
    missing = kedro.reason if isinstance(kedro, PeerUnavailable) else None
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bench-vs-kedro-"))
    try:
        programs = _Programs(folder, None if isinstance(kedro, PeerUnavailable) else kedro)
        pairs = _measure(programs, QUICK_ROUNDS if quick else ROUNDS)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _rows(pairs, missing)


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
