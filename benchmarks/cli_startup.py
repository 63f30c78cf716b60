"""Whole-process wall time of the ``pipetrail`` command for cheap commands.

In a new temporary folder made a project with ``pipetrail init`` (empty: no runs), times
``python -c "import pipetrail"``, ``pipetrail --help`` and ``pipetrail runs`` (each with
warm-ups first), the peer's cheapest command, ``dvc --version`` (DVC in its own virtualenv,
see peers.py; "not measured" if it cannot be installed), and, for context, ``python -c
pass`` (the interpreter's own floor) and ``python -c "import click"`` (the floor of any
click-based command line). The commands are interleaved; each time is
``time.perf_counter`` around ``subprocess.run``. The ``vs_dvc`` rows divide each round's
``dvc --version`` time by the same round's pipetrail time (above 1: pipetrail is faster).
Targets (on the medians): ``import pipetrail`` <= 0.05 s; ``pipetrail --help`` and
``pipetrail runs`` <= 0.1 s each; both ``vs_dvc`` ratios >= 1. 15 timed rounds
(``--quick``: 5) after 3 warm-ups of each command; ``--no-peers`` leaves DVC out (its row
and the ratios say "not measured").

Run: ``.venv/bin/python benchmarks/cli_startup.py [--quick] [--no-peers]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from _common import (
    PIPETRAIL,
    PYTHON,
    Result,
    bench_env,
    log,
    main,
    not_measured,
    run_timed,
    summarize,
)
from peers import Dvc, ensure_dvc

if TYPE_CHECKING:
    import argparse

TARGET_S = 0.1  # `pipetrail --help`, `pipetrail runs` (and faster than `dvc --version`)
IMPORT_TARGET_S = 0.05  # `import pipetrail`
WARMUPS = 3


def _vs_dvc(name: str, what: str, ours: list[float], dvc: list[float] | None, why: str) -> Result:
    if dvc is None:
        return not_measured(name, what, "x", why, target=">= 1.00 x")
    ratios = [peer / mine for peer, mine in zip(dvc, ours, strict=True)]
    return summarize(name, what, ratios, "x", at_least=1.0)


def run(quick: bool, no_peers: bool = False) -> list[Result]:
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
        dvc = None if no_peers else ensure_dvc()
        commands = {
            "import": [PYTHON, "-c", "import pipetrail"],
            "help": [PIPETRAIL, "--help"],
            "runs": [PIPETRAIL, "runs"],
            "python": [PYTHON, "-c", "pass"],
            "click": [PYTHON, "-c", "import click"],
        }
        if isinstance(dvc, Dvc):
            commands["dvc"] = [str(dvc.executable), "--version"]
        for argv in commands.values():
            for _ in range(WARMUPS):
                run_timed(argv, cwd=folder, env=env)
        times: dict[str, list[float]] = {key: [] for key in commands}
        for _ in range(reps):
            for key, argv in commands.items():
                times[key].append(run_timed(argv, cwd=folder, env=env)[0])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    why = "--no-peers" if dvc is None else getattr(dvc, "reason", "")
    dvc_times = times.get("dvc")
    return [
        summarize(
            "cli_startup.import",
            '`python -c "import pipetrail"`',
            times["import"],
            "s",
            at_most=IMPORT_TARGET_S,
        ),
        summarize("cli_startup.help", "`pipetrail --help`", times["help"], "s", at_most=TARGET_S),
        summarize(
            "cli_startup.runs",
            "`pipetrail runs`, empty project",
            times["runs"],
            "s",
            at_most=TARGET_S,
        ),
        summarize("cli_startup.dvc_version", "`dvc --version` (peer)", dvc_times, "s")
        if dvc_times
        else not_measured("cli_startup.dvc_version", "`dvc --version` (peer)", "s", why),
        _vs_dvc(
            "cli_startup.help_vs_dvc",
            "`dvc --version` time / `pipetrail --help` time",
            times["help"],
            dvc_times,
            why,
        ),
        _vs_dvc(
            "cli_startup.runs_vs_dvc",
            "`dvc --version` time / `pipetrail runs` time",
            times["runs"],
            dvc_times,
            why,
        ),
        summarize("cli_startup.python_floor", "`python -c pass` (floor)", times["python"], "s"),
        summarize("cli_startup.click_floor", '`python -c "import click"`', times["click"], "s"),
    ]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-peers", action="store_true", help="do not install or time DVC (not measured)"
    )


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0], _options))
