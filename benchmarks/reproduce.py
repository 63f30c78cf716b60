"""What `pipetrail reproduce` adds over a plain uncached run of the example pipeline.

Copies ``examples/breast_cancer`` to a temporary folder, prepares its data and runs it
once; then, interleaved so that a slow phase of a noisy machine hits both, times
(whole process, ``time.perf_counter`` around ``subprocess.run``):

* ``pipetrail run pipeline.py --no-cache -q``: every step executes;
* ``pipetrail reproduce RUN -q``: the same executions on the recorded source snapshots,
  plus reading both runs, comparing every artifact and metric, the environment diff and
  recording the verdict.

The ratio is taken per pair (each reproduce over the plain run timed next to it), so a
slow phase of the machine hits both sides of a ratio; the ``ratio`` row gives the median
of those per-pair ratios with their min and max, n = the number of pairs, like every
other ratio of the suite. The target is on that median: reproduce <= 1.2 x the plain
uncached run. The ratio of the two medians is logged for context.

Run: ``.venv/bin/python benchmarks/reproduce.py [--quick]``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _common import PIPETRAIL, PYTHON, Result, bench_env, log, main, run_timed, summarize

TARGET_RATIO = 1.2
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "breast_cancer"


def run(quick: bool) -> list[Result]:
    reps = 5 if quick else 11
    env = bench_env()
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bench-reproduce-"))
    log(f"reproduce: {reps} timed runs of each command in {folder}")
    try:
        project = folder / "example"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".pipetrail"))
        run_timed([PYTHON, "prepare_data.py"], cwd=project, env=env)
        _, out = run_timed([PIPETRAIL, "run", "pipeline.py", "--json"], cwd=project, env=env)
        run_id = json.loads(out)["run_id"]
        commands = {
            "run": [PIPETRAIL, "run", "pipeline.py", "--no-cache", "-q"],
            "reproduce": [PIPETRAIL, "reproduce", run_id, "-q"],
        }
        for argv in commands.values():  # warm-up: imports, page cache
            run_timed(argv, cwd=project, env=env)
        times: dict[str, list[float]] = {key: [] for key in commands}
        for _ in range(reps):
            for key, argv in commands.items():
                times[key].append(run_timed(argv, cwd=project, env=env)[0])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows(times["run"], times["reproduce"])


def rows(plain: list[float], reproduced: list[float]) -> list[Result]:
    """The rows from the paired times: ``plain[i]`` and ``reproduced[i]`` ran next to each other."""
    ratios = [r / p for r, p in zip(reproduced, plain, strict=True)]
    of_medians = statistics.median(reproduced) / statistics.median(plain)
    log(f"reproduce: ratio of medians {of_medians:.3f}; per pair {[f'{x:.2f}' for x in ratios]}")
    return [
        summarize("reproduce.run", "`run --no-cache`, example", plain, "s"),
        summarize("reproduce.reproduce", "`reproduce RUN`, example", reproduced, "s"),
        summarize(
            "reproduce.ratio",
            "reproduce / uncached run, per pair",
            ratios,
            "x",
            at_most=TARGET_RATIO,
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
