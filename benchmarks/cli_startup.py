"""Whole-process wall time of the ``pipetrail`` command for cheap commands.

In a new temporary folder made a project with ``pipetrail init`` (empty: no runs), times
``pipetrail --help`` and ``pipetrail runs`` (each with warm-ups first), and, for context,
``python -c pass`` (the interpreter's own floor) and ``python -c "import click"`` (the
floor of any click-based command line). Each time is ``time.perf_counter`` around
``subprocess.run``.

Run: ``.venv/bin/python benchmarks/cli_startup.py [--quick]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _common import PIPETRAIL, PYTHON, Result, bench_env, log, main, run_timed, summarize

TARGET_S = 0.3
WARMUPS = 3


def run(quick: bool) -> list[Result]:
    reps = 5 if quick else 15
    env = bench_env()
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bench-cli-"))
    log(f"cli_startup: {reps} timed runs of each command in {folder}")
    try:
        run_timed([PIPETRAIL, "init"], cwd=folder, env=env)
        _, out = run_timed([PIPETRAIL, "runs"], cwd=folder, env=env)
        if "no runs yet" not in out:
            raise RuntimeError(f"`pipetrail runs` in an empty project printed {out!r}")
        # Interleave the commands, so slow phases of a noisy machine hit all of them.
        commands = {
            "help": [PIPETRAIL, "--help"],
            "runs": [PIPETRAIL, "runs"],
            "python": [PYTHON, "-c", "pass"],
            "click": [PYTHON, "-c", "import click"],
        }
        for argv in commands.values():
            for _ in range(WARMUPS):
                run_timed(argv, cwd=folder, env=env)
        times: dict[str, list[float]] = {key: [] for key in commands}
        for _ in range(reps):
            for key, argv in commands.items():
                times[key].append(run_timed(argv, cwd=folder, env=env)[0])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [
        summarize("cli_startup.help", "`pipetrail --help`", times["help"], "s", at_most=TARGET_S),
        summarize(
            "cli_startup.runs",
            "`pipetrail runs`, empty project",
            times["runs"],
            "s",
            at_most=TARGET_S,
        ),
        summarize("cli_startup.python_floor", "`python -c pass` (floor)", times["python"], "s"),
        summarize("cli_startup.click_floor", '`python -c "import click"`', times["click"], "s"),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
