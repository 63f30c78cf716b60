"""Per-step overhead, whole process, against Kedro: chains of 10, 100 and 1,000 steps.

Three programs, each run as a whole process (``time.perf_counter`` around
``subprocess.run``: interpreter start-up, imports, the run, exit), in the same benchmark
run, repetitions interleaved (within a repetition: every chain length, each tool in turn):

* pipetrail, first run: ``benchmarks/_chain.py``'s pipeline file (a chain of N trivial
  steps, ``inc(inc(...inc(0)))``) run through the Python API in a new project, full
  recording (ledger, store, environment capture);
* pipetrail, cached: the same program again in the same project (every step a cache hit);
* Kedro (quiet: its loggers at WARNING), from its own virtualenv
  (:func:`peers.ensure_kedro`): the same chain as Kedro nodes over memory datasets, run
  by its ``SequentialRunner``. Kedro records nothing.

Per-step figure, per repetition = (whole-process time of the N-step chain - whole-process
time of the 1-step chain of the same tool in the same repetition) / N: what one more step
costs, start-up and the fixed cost of a run taken out; the table gives the median over the
repetitions (and the ratio row the median of the per-repetition ratios). Targets:
pipetrail's first run <= 0.5 ms per step at 100 and 1,000 steps, its cached run <= 0.15 ms;
the Kedro ratio (Kedro's per-step figure over pipetrail's first-run one) is checked against
>= 1 (pipetrail no slower) at every length, 10 steps included. When Kedro cannot be
installed, its rows and the ratios say "not measured", with no verdict. The rows are
named ``vs_kedro.*``. 7 repetitions (``--quick``: 3) after a warm-up.

The pipetrail processes run this checkout's ``src/`` (``PYTHONPATH``).

Run: ``.venv/bin/python benchmarks/step_overhead_vs_kedro.py [--quick]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _chain import PIPELINE_FILE_TEXT
from _common import PYTHON, REPO_ROOT, Result, bench_env, log, main, not_measured, run_timed
from _common import summarize as _summarize
from peers import Kedro, PeerUnavailable, ensure_kedro

SIZES = (10, 100, 1000)
FIRST_TARGET_MS = 0.5
CACHED_TARGET_MS = 0.15
CHECKED = (100, 1000)  # the sizes the targets apply to

PIPETRAIL_SCRIPT = """\
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
from chain import chain

run = chain.with_options(project=Path(sys.argv[2])).run(n=int(sys.argv[3]))
print(run.outputs, run.steps()[-1]["status"])
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


class _Programs:
    """The three programs, written into a temporary folder."""

    def __init__(self, folder: Path, kedro: Kedro | None) -> None:
        self.folder = folder
        self.kedro = kedro
        self.env = bench_env()
        self.env["PYTHONPATH"] = str(REPO_ROOT / "src")
        code = folder / "code"
        code.mkdir()
        (code / "chain.py").write_text(PIPELINE_FILE_TEXT.format(n=1000, name="chain"))
        (code / "run_chain.py").write_text(PIPETRAIL_SCRIPT)
        (code / "kedro_chain.py").write_text(KEDRO_SCRIPT)
        self._count = 0

    def new_project(self) -> Path:
        self._count += 1
        project = self.folder / f"project-{self._count}"
        project.mkdir()
        return project

    def pipetrail(self, project: Path, n: int) -> float:
        code = self.folder / "code"
        seconds, out = run_timed(
            [PYTHON, str(code / "run_chain.py"), str(code), str(project), str(n)], env=self.env
        )
        if not out.startswith(f"{n} "):
            raise RuntimeError(f"pipetrail chain of {n} printed {out!r}")
        return seconds

    def kedro_run(self, n: int) -> float:
        assert self.kedro is not None
        env = bench_env()
        env.pop("PYTHONPATH", None)
        seconds, out = run_timed(
            [str(self.kedro.python), str(self.folder / "code" / "kedro_chain.py"), str(n)],
            env=env,
        )
        if out.strip().splitlines()[-1:] != [str(n)]:
            raise RuntimeError(f"Kedro chain of {n} printed {out!r}")
        return seconds


def _per_step(times: dict[int, list[float]], n: int) -> list[float]:
    """Per repetition: (N-step time - 1-step time) / N, in ms."""
    return [(t - base) / n * 1e3 for t, base in zip(times[n], times[1], strict=True)]


def _row(name: str, measured: str, values: list[float], *, at_most: float | None = None) -> Result:
    return _summarize(name, measured, values, "ms", at_most=at_most)


def run(quick: bool) -> list[Result]:
    reps = 3 if quick else 7
    kedro = ensure_kedro()
    missing = kedro.reason if isinstance(kedro, PeerUnavailable) else None
    sizes = (1, *SIZES)
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bench-vs-kedro-"))
    first: dict[int, list[float]] = {n: [] for n in sizes}
    cached: dict[int, list[float]] = {n: [] for n in sizes}
    peer: dict[int, list[float]] = {n: [] for n in sizes}
    try:
        programs = _Programs(folder, None if missing else kedro)  # type: ignore[arg-type]
        log(f"step_overhead_vs_kedro: warm-up, then {reps} interleaved repetitions")
        warm = programs.new_project()
        programs.pipetrail(warm, 10)
        programs.pipetrail(warm, 10)
        if not missing:
            programs.kedro_run(10)
        for rep in range(reps):
            for n in sizes:
                project = programs.new_project()
                first[n].append(programs.pipetrail(project, n))
                cached[n].append(programs.pipetrail(project, n))
                if not missing:
                    peer[n].append(programs.kedro_run(n))
                shutil.rmtree(project, ignore_errors=True)
            log(
                f"  rep {rep + 1}: 1000 steps: pipetrail {first[1000][-1]:.2f} s, cached "
                f"{cached[1000][-1]:.2f} s" + ("" if missing else f", Kedro {peer[1000][-1]:.2f} s")
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results: list[Result] = []
    for n in SIZES:
        checked = n in CHECKED
        results.append(
            _row(
                f"vs_kedro.pipetrail_first.{n}",
                f"pipetrail per step, first run, {n}-step chain, whole process",
                _per_step(first, n),
                at_most=FIRST_TARGET_MS if checked else None,
            )
        )
        results.append(
            _row(
                f"vs_kedro.pipetrail_cached.{n}",
                f"pipetrail per step, cached re-run, {n}-step chain, whole process",
                _per_step(cached, n),
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
            continue
        kedro_ms = _per_step(peer, n)
        results.append(
            _row(f"vs_kedro.kedro.{n}", f"Kedro (quiet) per step, {n}-step chain", kedro_ms)
        )
        results.append(
            _summarize(
                f"vs_kedro.ratio.{n}",
                f"Kedro / pipetrail first run, per step, {n} steps",
                [
                    k / p if p > 0 else float("inf")
                    for k, p in zip(kedro_ms, _per_step(first, n), strict=True)
                ],
                "x",
                at_least=1.0,
            )
        )
    results.append(
        _summarize(
            "vs_kedro.pipetrail_1_step",
            "pipetrail 1-step chain, first run, whole process (the baseline)",
            [s * 1e3 for s in first[1]],
            "ms",
        )
    )
    if not missing:
        results.append(
            _summarize(
                "vs_kedro.kedro_1_step",
                "Kedro 1-step chain, whole process (the baseline)",
                [s * 1e3 for s in peer[1]],
                "ms",
            )
        )
    return results


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
