"""Per-run cost: 200 runs of a tiny pipeline in one process, against MLflow doing the same.

The pipeline (``_tiny.py``) has 2 steps, 20 params and logs 20 metrics; every run gets
new parameter values, so both steps execute and record everything (code fingerprints,
environment, params, metrics, outputs) each time. One child process runs it once as a
warm-up, then RUNS times, in a fresh project, and reports each run's wall time.

MLflow (``peers.ensure_mlflow``: its own virtualenv, pinned version) does the same work
in one child process of its own (``_per_run_mlflow.py``): start a run, log the same 20
params, compute the same values, log the same 20 metrics, end the run; once with a SQLite
tracking store and once with the file store, both in a throw-away folder. The three
processes alternate in each round; figures are medians over every timed run of a tool.
When MLflow cannot be installed its rows and the comparison say "not measured".

| row | what | target |
|-----|------|--------|
| ``per_run.pipetrail`` | median ms per run, pipetrail | <= 8 ms |
| ``per_run.mlflow_sqlite`` | median ms per run, MLflow, SQLite store | context |
| ``per_run.mlflow_file`` | median ms per run, MLflow, file store | context |
| ``per_run.vs_mlflow`` | MLflow's default store (SQLite) / pipetrail, same run | >= 3 x |
| ``per_run.vs_mlflow_file`` | MLflow's file store / pipetrail, same run | context |

The target compares with MLflow as it runs when nothing is configured: its default
tracking store is a SQLite database (``sqlite:///mlflow.db``), like pipetrail's ledger.
The file store (no transactions; opt-in since MLflow 3, ``MLFLOW_ALLOW_FILE_STORE``) is
timed too and its ratio shown beside it. Its time follows the disk: it writes 47 small
files a run, and measured from about 10 to over 40 ms a run on this machine.

``--profile`` adds a cProfile of 40 runs in this process (after a warm-up run): the top
functions by cumulative time, the raw profile kept in benchmarks/.work/.
``--pages`` adds, for one run after 100 in this process, each ledger transaction's
events and the pages it wrote to the write-ahead log, by table or index (figures that
machine load does not change; see docs/adr/0031-step-speed-across-runs.md).

Run: ``.venv/bin/python benchmarks/per_run.py [--quick] [--profile] [--pages]``.
"""

from __future__ import annotations

import collections
import cProfile
import io
import json
import pstats
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import (
    BENCH_DIR,
    PYTHON,
    WORK_DIR,
    Result,
    bench_env,
    log,
    main,
    not_measured,
    summarize,
)
from peers import Mlflow, PeerUnavailable, ensure_mlflow

if TYPE_CHECKING:
    import argparse

RUNS = 200
TARGET_MS = 8.0
TARGET_RATIO = 3.0
_STORES = ("sqlite", "file")


def _child(argv: list[str]) -> list[float]:
    """Run a timing child process; return the seconds of its timed runs."""
    proc = subprocess.run(argv, capture_output=True, text=True, env=bench_env(), check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{proc.stderr}")
    lines = proc.stdout.strip().splitlines()
    seconds = json.loads(lines[-1]) if lines else None
    if not isinstance(seconds, list) or not seconds:
        raise RuntimeError(f"{' '.join(argv)} printed no timings:\n{proc.stdout}")
    return [float(s) for s in seconds]


def _pipetrail(runs: int) -> list[float]:
    project = Path(tempfile.mkdtemp(prefix="pipetrail-bench-per-run-"))
    try:
        return _child([PYTHON, str(BENCH_DIR / "_tiny.py"), str(project), str(runs)])
    finally:
        shutil.rmtree(project, ignore_errors=True)


def _mlflow(mlflow: Mlflow, runs: int, store: str) -> list[float]:
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bench-mlflow-"))
    try:
        script = str(BENCH_DIR / "_per_run_mlflow.py")
        return _child([str(mlflow.python), script, str(folder), str(runs), store])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def profile_runs(runs: int = 40, top: int = 30) -> str:
    """cProfile ``runs`` runs of the tiny pipeline in this process; return the report."""
    sys.path.insert(0, str(BENCH_DIR))
    import _tiny

    project = Path(tempfile.mkdtemp(prefix="pipetrail-bench-per-run-"))
    runner = _tiny.tiny.with_options(project=project)
    profiler = cProfile.Profile()
    try:
        runner.run(**_tiny.params_of(0))
        profiler.enable()
        for i in range(1, runs + 1):
            runner.run(**_tiny.params_of(i))
        profiler.disable()
    finally:
        if runner.project is not None:
            runner.project.close()
        shutil.rmtree(project, ignore_errors=True)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    dump = WORK_DIR / "per_run.prof"
    profiler.dump_stats(str(dump))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return f"cProfile of {runs} runs of the tiny pipeline (raw profile: {dump})\n{out.getvalue()}"


_WAL_HEADER = 32
_FRAME_HEADER = 24


def _wal_pages(db: Path, page_size: int) -> list[int]:
    """The page number of each frame in ``db``'s write-ahead log, in order."""
    wal = Path(f"{db}-wal")
    data = wal.read_bytes() if wal.exists() else b""
    pages, at = [], _WAL_HEADER
    while at + _FRAME_HEADER <= len(data):
        pages.append(struct.unpack(">I", data[at : at + 4])[0])
        at += _FRAME_HEADER + page_size
    return pages


def pages_per_transaction(warm_runs: int = 100) -> str:
    """Run the tiny pipeline ``warm_runs`` times, then report one run's ledger transactions."""
    sys.path.insert(0, str(BENCH_DIR))
    import _tiny

    from pipetrail.ledger.ledger import Ledger

    project = Path(tempfile.mkdtemp(prefix="pipetrail-bench-per-run-"))
    runner = _tiny.tiny.with_options(project=project)
    appends: list[tuple[int, list[int]]] = []
    original = Ledger.append
    try:
        for i in range(warm_runs):
            runner.run(**_tiny.params_of(i))
        db = next(project.rglob("ledger.db"))
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])

        def counting(self: Ledger, drafts: Any, **kwargs: Any) -> Any:
            before = len(_wal_pages(db, page_size))
            try:
                return original(self, drafts, **kwargs)
            finally:
                appends.append((len(drafts), _wal_pages(db, page_size)[before:]))

        Ledger.append = counting  # type: ignore[method-assign]
        runner.run(**_tiny.params_of(warm_runs))
        Ledger.append = original  # type: ignore[method-assign]
        with sqlite3.connect(db) as conn:
            try:
                owner = dict(conn.execute("SELECT pageno, name FROM dbstat").fetchall())
            except sqlite3.Error:  # SQLite built without the dbstat table
                owner = {}
    finally:
        Ledger.append = original  # type: ignore[method-assign]
        if runner.project is not None:
            runner.project.close()
        shutil.rmtree(project, ignore_errors=True)
    lines = [f"ledger transactions of one run after {warm_runs}: {len(appends)}"]
    for count, pages in appends:
        by_tree = collections.Counter(owner.get(p, "?") for p in set(pages))
        top = ", ".join(f"{name} {n}" for name, n in by_tree.most_common(6))
        lines.append(f"  {count} events, {len(set(pages))} pages: {top}")
    return "\n".join(lines)


def run(
    quick: bool, profile: bool = False, no_peers: bool = False, pages: bool = False
) -> list[Result]:
    rounds, runs = (1, 50) if quick else (2, RUNS)
    mlflow = PeerUnavailable("--no-peers") if no_peers else ensure_mlflow()
    log(f"per_run: {rounds} round(s) of {runs} runs each: pipetrail, MLflow (sqlite, file)")
    ours: list[float] = []
    peer: dict[str, list[float]] = {store: [] for store in _STORES}
    for i in range(rounds):
        ours.extend(s * 1e3 for s in _pipetrail(runs))
        if isinstance(mlflow, Mlflow):
            for store in _STORES:
                peer[store].extend(s * 1e3 for s in _mlflow(mlflow, runs, store))
        done = {"pipetrail": ours, **{f"mlflow {k}": v for k, v in peer.items() if v}}
        log(
            f"  round {i + 1}: "
            + ", ".join(f"{k} {statistics.median(v):.2f} ms" for k, v in done.items())
        )
    if profile:
        log(profile_runs())
    if pages:
        log(pages_per_transaction())
    what = "median ms per run, 2 steps, 20 params, 20 metrics"
    results = [summarize("per_run.pipetrail", f"{what}, pipetrail", ours, "ms", at_most=TARGET_MS)]
    if isinstance(mlflow, PeerUnavailable):
        for store in _STORES:
            results.append(
                not_measured(
                    f"per_run.mlflow_{store}", f"{what}, MLflow {store} store", "ms", mlflow.reason
                )
            )
        results.append(
            not_measured(
                "per_run.vs_mlflow",
                "speed-up over MLflow (its default store, SQLite)",
                "x",
                mlflow.reason,
                target=f">= {TARGET_RATIO:.0f} x",
            )
        )
        results.append(
            not_measured(
                "per_run.vs_mlflow_file", "speed-up over MLflow's file store", "x", mlflow.reason
            )
        )
        return results
    for store in _STORES:
        results.append(
            summarize(
                f"per_run.mlflow_{store}",
                f"{what}, MLflow {mlflow.version} {store} store",
                peer[store],
                "ms",
            )
        )
    mine = statistics.median(ours)
    results.append(
        summarize(
            "per_run.vs_mlflow",
            "speed-up over MLflow, its default store (SQLite), same run",
            [statistics.median(peer["sqlite"]) / mine],
            "x",
            at_least=TARGET_RATIO,
        )
    )
    results.append(
        summarize(
            "per_run.vs_mlflow_file",
            "speed-up over MLflow's file store (opt-in), same run",
            [statistics.median(peer["file"]) / mine],
            "x",
        )
    )
    return results


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", action="store_true", help="also cProfile 40 runs")
    parser.add_argument("--no-peers", action="store_true", help="do not run MLflow")
    parser.add_argument(
        "--pages", action="store_true", help="also report one run's ledger transactions"
    )


if __name__ == "__main__":
    sys.exit(main(run, "Per-run cost of a tiny pipeline, against MLflow.", _extra))
