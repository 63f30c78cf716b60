"""Whole-process wall time of a fully cached re-run of the README example, against a baseline.

The README example is ``examples/breast_cancer`` (pandas, pandera, pydantic and
scikit-learn). The target (at least 2x faster than the code before the overhead work) is
against a fixed commit, so the default baseline is pinned: ``BASELINE``, commit 9802558,
the baseline the earlier measurements used. That commit already holds part of the
start-up work (``import pipetrail`` and the CLI import their names and commands on first
use), so a pass against it is conservative: against the code before any of that work the
speed-up would be larger. ``--baseline REF`` compares with another commit (``main``,
say); a default of ``main`` would make run_all.py, on ``main``, compare a commit with
itself and fail the target by construction. The baseline's ``src/`` and ``examples/``
are extracted with ``git archive`` into benchmarks/.work/, and its example runs on its own
code (``PYTHONPATH`` set to its ``src/``); the current tree's example runs on the current
code. Both use the same interpreter and installed libraries. The rows name the baseline
commit.

For each side: a copy of its example folder in a new temporary folder, the data written by
``prepare_data.py``, one uncached run, a pause until the files are older than the two
seconds in which a change could go unseen, two warm-up re-runs, then N timed re-runs
(``pipetrail run pipeline.py -q``), interleaved with the other side's. Every timed run must
say ``0 executed, 6 cached``. The ``speedup`` row divides each round's baseline time by
the same round's current time; its target is >= 2 x (the median). 10 rounds
(``--quick``: 3). The baseline tree is kept in benchmarks/.work/baseline-COMMIT/.

Run: ``.venv/bin/python benchmarks/example_rerun.py [--quick] [--baseline REF]``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _common import (
    PYTHON,
    REPO_ROOT,
    WORK_DIR,
    Result,
    bench_env,
    log,
    main,
    run_timed,
    summarize,
)

if TYPE_CHECKING:
    import argparse

TARGET_X = 2.0  # at least 2x faster than the baseline commit
#: The commit the target is measured against (see the module docstring).
BASELINE = "9802558"
STEPS = 6
_RACY_WINDOW_S = 2.0
_SUMMARY = re.compile(r"completed: (\d+) executed, (\d+) cached of (\d+) steps")


def _baseline_tree(ref: str) -> tuple[str, Path]:
    """Extract ``src/`` and ``examples/`` of commit ``ref``; return (commit, folder)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder = WORK_DIR / f"baseline-{commit[:12]}"
    if not (folder / "COMPLETE").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "src", "examples"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        (folder / "COMPLETE").write_text(commit + "\n")
    return commit, folder


def _project(tree: Path, env: dict[str, str]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bench-example-"))
    # Only the tracked files: a checkout where the example already ran holds its state
    # folder and data, which would make the "first" run a cached one.
    shutil.copytree(
        tree / "examples" / "breast_cancer",
        folder,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".pipetrail", "data"),
    )
    run_timed([PYTHON, "prepare_data.py"], cwd=folder, env=env)
    return folder


def _rerun(folder: Path, env: dict[str, str], *, expect_cached: bool = True) -> float:
    argv = [PYTHON, "-m", "pipetrail.cli.main", "run", "pipeline.py", "-q"]
    seconds, out = run_timed(argv, cwd=folder, env=env)
    found = _SUMMARY.search(out)
    if found is None:
        raise RuntimeError(f"unexpected output of pipetrail run: {out!r}")
    executed, cached, total = (int(g) for g in found.groups())
    want = (0, STEPS) if expect_cached else (STEPS, 0)
    if (executed, cached) != want or total != STEPS:
        raise RuntimeError(f"expected (executed, cached) = {want}, got: {out.strip()!r}")
    return seconds


def run(quick: bool, baseline: str = BASELINE) -> list[Result]:
    reps = 3 if quick else 10
    commit, tree = _baseline_tree(baseline)
    log(f"example_rerun: baseline {baseline} = {commit[:12]}; {reps} timed re-runs per side")
    sides = {"baseline": (tree, bench_env()), "current": (REPO_ROOT, bench_env())}
    sides["baseline"][1]["PYTHONPATH"] = str(tree / "src")
    sides["current"][1]["PYTHONPATH"] = str(REPO_ROOT / "src")
    folders: dict[str, Path] = {}
    times: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for name, (source, env) in sides.items():
            folders[name] = _project(source, env)
            _rerun(folders[name], env, expect_cached=False)
        time.sleep(_RACY_WINDOW_S + 0.1)
        for name, (_, env) in sides.items():
            for _ in range(2):
                _rerun(folders[name], env)
        for _ in range(reps):
            for name, (_, env) in sides.items():
                times[name].append(_rerun(folders[name], env))
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
    return rows(times["current"], times["baseline"], baseline, commit)


def rows(current: list[float], before: list[float], ref: str, commit: str) -> list[Result]:
    """The three rows, from the paired re-run times of this tree and of commit ``commit``.

    ``ref`` is the baseline as given (``--baseline``); the labels name the commit it
    resolved to, and the ref too when it is a name (``main``) rather than that commit.
    """
    short = commit[:12]
    named = short if commit.startswith(ref) else f"{ref} = {short}"
    ratios = [b / c for b, c in zip(before, current, strict=True)]
    return [
        summarize(
            "example_rerun.current",
            "README example, all 6 steps cached, this tree",
            current,
            "s",
        ),
        summarize(
            "example_rerun.baseline",
            f"same, at baseline commit {named}, same run",
            before,
            "s",
        ),
        summarize(
            "example_rerun.speedup",
            f"time at {short} / time of this tree, per round",
            ratios,
            "x",
            at_least=TARGET_X,
        ),
    ]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        metavar="REF",
        help=f"the commit to compare with (default: {BASELINE}, the target's baseline)",
    )


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0], _options))
