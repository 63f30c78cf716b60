"""Whole-process wall time of ``pipetrail run chain50.py -q`` when every step is cached.

Makes a project in a new temporary folder (``pipetrail init``; outside any git
repository, so no git state is captured), writes ``chain50.py`` (a chain of 50 trivial
steps, the same code as benchmarks/_chain.py), runs it once to fill the cache (timed: the
uncached first run), waits until the project folder is older than the two seconds in
which a change could go unseen (the list of installed packages a run records is cached
under a key made of the mtimes of the search path's folders, the pipeline's among them;
a folder changed within that window is listed again at every run), runs it twice more as
warm-ups, then times N more runs. Every timed run's summary line is checked to say ``0
executed, 50 cached``.

Each time is ``time.perf_counter`` around ``subprocess.run``: process start, interpreter
start-up, imports, loading the file, the run and exit, as a user at a shell sees it.

Run: ``.venv/bin/python benchmarks/cached_chain.py [--quick]``.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _chain import PIPELINE_FILE_TEXT
from _common import PIPETRAIL, Result, bench_env, log, main, run_timed, summarize

STEPS = 50
TARGET_S = 0.2  # issue 9: a fully cached 50-step run, whole process
_RACY_WINDOW_S = 2.0
_SUMMARY = re.compile(r"completed: (\d+) executed, (\d+) cached of (\d+) steps")


def _make_project(env: dict[str, str]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bench-chain50-"))
    run_timed([PIPETRAIL, "init"], cwd=folder, env=env)
    (folder / "chain50.py").write_text(PIPELINE_FILE_TEXT.format(n=STEPS, name="chain50"))
    return folder


def _run_chain(folder: Path, env: dict[str, str], *, expect_cached: bool) -> float:
    seconds, out = run_timed([PIPETRAIL, "run", "chain50.py", "-q"], cwd=folder, env=env)
    found = _SUMMARY.search(out)
    if found is None:
        raise RuntimeError(f"unexpected output of pipetrail run: {out!r}")
    executed, cached, total = (int(g) for g in found.groups())
    want = (0, STEPS) if expect_cached else (STEPS, 0)
    if (executed, cached) != want or total != STEPS:
        raise RuntimeError(f"expected (executed, cached) = {want}, got: {out.strip()!r}")
    return seconds


def run(quick: bool) -> list[Result]:
    reps = 5 if quick else 20
    first_runs = 1 if quick else 3
    env = bench_env()
    log(f"cached_chain: {first_runs} fresh project(s), then {reps} timed cached runs")
    uncached: list[float] = []
    cached: list[float] = []
    folders: list[Path] = []
    try:
        for i in range(first_runs):
            folder = _make_project(env)
            folders.append(folder)
            uncached.append(_run_chain(folder, env, expect_cached=False))
            if i == 0:
                time.sleep(_RACY_WINDOW_S + 0.1)  # the files have settled, as on a re-run
                for _ in range(2):  # warm-ups: OS file cache, .pyc files, SQLite pages
                    _run_chain(folder, env, expect_cached=True)
                for _ in range(reps):
                    cached.append(_run_chain(folder, env, expect_cached=True))
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    log(f"  cached runs: {', '.join(f'{s:.3f}' for s in cached)} s")
    return [
        summarize(
            "cached_chain.cached",
            f"`pipetrail run chain50.py -q`, all {STEPS} steps cached",
            cached,
            "s",
            at_most=TARGET_S,
        ),
        summarize(
            "cached_chain.first_run",
            "same command, first (uncached) run, fresh project",
            uncached,
            "s",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
