"""50 concurrent API clients against ``pipetrail serve`` and MLflow's tracking server, on
the same 100,000 runs, with the same queries, in the same run.

The runs: server_listing's project (run_queries' ledger of 100,000 runs with params
``lr``, ``depth``, ``model``, a ``stage`` tag on one run in ten, and ``f1``, ``accuracy``
and ``loss`` on each completed run). The same runs (status, start time, name, params,
tags, metrics) are copied once into an MLflow store: MLflow (``peers.ensure_mlflow``: its
own virtualenv under benchmarks/.work/, pinned version) creates its SQLite schema and an
experiment, and ``_server_mlflow.py`` inserts the runs through MLflow's table definitions
(cached in benchmarks/.work/server-mlflow/). Each server's output is kept in
benchmarks/.work/server/serve.log and benchmarks/.work/server-mlflow/server.log.

Each server runs as a whole process with 2 workers on 127.0.0.1: ``pipetrail serve
--workers 2`` (every call authenticated with an API token and authorized by the caller's
roles) and ``mlflow server --workers 2`` over its SQLite store (no authentication, its
default). One after the other, 50 client threads (one httpx client each) call for 60 s
(15 s with --quick), alternating two queries, after one untimed call of each:

* the newest 50 runs: ``GET /api/v1/runs?limit=50``; MLflow ``POST
  /api/2.0/mlflow/runs/search`` with ``max_results: 50``, ``order_by: ["attributes.start_time
  DESC"]``;
* the newest 50 runs with ``f1 > 0.9``: ``where=metrics.f1 > 0.9``; MLflow
  ``filter: "metrics.f1 > 0.9"``, same order.

Rows:

* ``server_concurrent.errors`` (target 0): pipetrail's answers other than 200 and failed
  calls;
* ``server_concurrent.p95``, ``.rps``: pipetrail's p95 latency and throughput;
* ``server_concurrent.mlflow_errors``, ``.mlflow_p95``, ``.mlflow_rps``: MLflow's;
* ``server_concurrent.vs_mlflow_rps`` (pipetrail's throughput / MLflow's) and
  ``.vs_mlflow_p95`` (MLflow's p95 / pipetrail's): above 1, pipetrail does better.

The comparisons are informational (the issue asks for them measured, with no target).
The client threads share the 2 CPUs with the servers (and, on a shared machine, with
whatever else runs: compare the ratios, measured in one run).

Run: ``.venv/bin/python benchmarks/server_concurrent.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import server_listing
from _common import BENCH_DIR, WORK_DIR, Result, bench_env, log, main, not_measured, summarize
from peers import MLFLOW_REQUIREMENT, Mlflow, PeerUnavailable, ensure_mlflow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import httpx

CLIENTS = 50
WHERE = "metrics.f1 > 0.9"
MLFLOW_DIR = WORK_DIR / "server-mlflow"


@dataclass
class Load:
    """What the clients saw: each call's latency (ms), failed calls, the wall seconds."""

    latencies: list[float]
    failures: Counter[str]  # why, how many times
    seconds: float

    @property
    def errors(self) -> int:
        """Failed calls."""
        return sum(self.failures.values())

    @property
    def p95(self) -> float:
        """The 95th percentile latency, ms."""
        return statistics.quantiles(self.latencies, n=20)[-1]

    @property
    def rps(self) -> float:
        """Calls per second, all clients together."""
        return len(self.latencies) / self.seconds


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _process(
    argv: list[str], cwd: Path, env: dict[str, str], probe: str, log_file: Path
) -> Iterator[None]:
    """Run a server (its output in ``log_file``); wait until ``probe`` answers; stop it."""
    import httpx

    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("wb") as out:
        server = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(probe, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{argv[0]} did not start: {' '.join(argv)}") from None
                time.sleep(0.3)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _hammer(
    base: str,
    headers: dict[str, str],
    calls: list[Callable[[httpx.Client], str | None]],
    seconds: float,
) -> Load:
    """``CLIENTS`` threads calling ``calls`` in turn for ``seconds``."""
    import httpx

    with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
        for call in calls:  # warm each worker's caches once, untimed (both servers alike)
            wrong = call(http)
            if wrong is not None:
                raise RuntimeError(f"the warm-up call to {base} failed: {wrong}")
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        mine: list[float] = []
        failed: Counter[str] = Counter()
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            n = offset
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    wrong = calls[n % len(calls)](http)
                except httpx.HTTPError as exc:
                    wrong = type(exc).__name__
                mine.append((time.perf_counter() - start) * 1000)
                if wrong is not None:
                    failed[wrong] += 1
                n += 1
        with lock:
            latencies.extend(mine)
            errors.update(failed)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Load(latencies, errors, time.perf_counter() - began)


def _checked(answer: httpx.Response, member: str) -> str | None:
    """None when ``answer`` is a 200 with 50 items in ``member``; else what it was."""
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}: {answer.text[:120]}"
    found = len(answer.json().get(member, []))
    return None if found == 50 else f"{found} runs instead of 50"


# -- pipetrail ---------------------------------------------------------------------------
def _pipetrail_calls() -> list[Callable[[httpx.Client], str | None]]:
    def newest(http: httpx.Client) -> str | None:
        return _checked(http.get("/api/v1/runs", params={"limit": 50}), "runs")

    def where(http: httpx.Client) -> str | None:
        return _checked(http.get("/api/v1/runs", params={"where": WHERE, "limit": 50}), "runs")

    return [newest, where]


def _pipetrail(root: Path, token: str, seconds: float) -> Load:
    port = _free_port()
    env = bench_env() | {"PIPETRAIL_HOME": str(WORK_DIR / "server" / "home")}
    argv = [sys.executable, "-m", "pipetrail.cli.main", "serve", "--port", str(port),
            "--workers", "2"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with _process(argv, root, env, base + "/login", WORK_DIR / "server" / "serve.log"):
        return _hammer(base, {"Authorization": f"Bearer {token}"}, _pipetrail_calls(), seconds)


# -- MLflow ------------------------------------------------------------------------------
def _export(root: Path, out: Path) -> int:
    """The project's runs as JSON lines for ``_server_mlflow.py``; how many."""
    db = sqlite3.connect(f"file:{root / '.pipetrail' / 'ledger.db'}?mode=ro", uri=True)
    params: dict[str, dict[str, str]] = {}
    tags: dict[str, dict[str, str]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for run_id, name, value in db.execute("SELECT run_id, name, value FROM run_params"):
        params.setdefault(run_id, {})[name] = str(json.loads(value))
    for run_id, key, value in db.execute('SELECT run_id, "key", value FROM run_tags'):
        tags.setdefault(run_id, {})[key] = value
    for run_id, key, value in db.execute('SELECT run_id, "key", value FROM run_metrics'):
        metrics.setdefault(run_id, {})[key] = value
    count = 0
    with out.open("w", encoding="utf-8") as lines:
        for run_id, name, status, started in db.execute(
            "SELECT run_id, name, status, started_at FROM runs"
        ):
            start_ms = int(datetime.fromisoformat(started).timestamp() * 1000)
            record = {
                "id": run_id, "name": name, "status": status, "start_ms": start_ms,
                "params": params.get(run_id, {}), "tags": tags.get(run_id, {}),
                "metrics": metrics.get(run_id, {}),
            }  # fmt: skip
            lines.write(json.dumps(record) + "\n")
            count += 1
    db.close()
    return count


def _mlflow_store(mlflow: Mlflow, root: Path) -> tuple[Path, str]:
    """MLflow's SQLite store holding the project's runs (built once), and the experiment."""
    marker = MLFLOW_DIR / "params.json"
    key = {"mlflow": MLFLOW_REQUIREMENT, "source": str(root), "version": 1}
    source_mark = (root.parent / "params.json").read_text()
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("key") == key and saved.get("source_mark") == source_mark:
            return MLFLOW_DIR / "mlflow.db", str(saved["experiment_id"])
    shutil.rmtree(MLFLOW_DIR, ignore_errors=True)
    MLFLOW_DIR.mkdir(parents=True)
    runs_file = MLFLOW_DIR / "runs.jsonl"
    count = _export(root, runs_file)
    log(f"server_concurrent: loading the same {count} runs into MLflow's store (once)")
    done = subprocess.run(
        [str(mlflow.python), str(BENCH_DIR / "_server_mlflow.py"), str(MLFLOW_DIR / "mlflow.db"),
         str(MLFLOW_DIR / "artifacts"), str(runs_file)],
        capture_output=True, text=True, check=False, env=bench_env(),
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"loading MLflow's store failed:\n{done.stderr[-3000:]}")
    experiment = json.loads(done.stdout.strip().splitlines()[-1])["experiment_id"]
    runs_file.unlink()
    marker.write_text(
        json.dumps({"key": key, "source_mark": source_mark, "experiment_id": experiment})
    )  # written last: complete
    return MLFLOW_DIR / "mlflow.db", experiment


def _mlflow_calls(experiment: str) -> list[Callable[[httpx.Client], str | None]]:
    def search(body: dict[str, Any]) -> Callable[[httpx.Client], str | None]:
        full = {
            "experiment_ids": [experiment],
            "max_results": 50,
            "order_by": ["attributes.start_time DESC"],
        } | body

        def call(http: httpx.Client) -> str | None:
            return _checked(http.post("/api/2.0/mlflow/runs/search", json=full), "runs")

        return call

    return [search({}), search({"filter": WHERE})]


def _mlflow(mlflow: Mlflow, db: Path, experiment: str, seconds: float) -> Load:
    port = _free_port()
    executable = mlflow.python.with_name("mlflow")
    argv = [str(executable), "server", "--backend-store-uri", f"sqlite:///{db}",
            "--default-artifact-root", str(MLFLOW_DIR / "artifacts"), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "2"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    env = bench_env() | {"MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    with _process(argv, MLFLOW_DIR, env, base + "/health", MLFLOW_DIR / "server.log"):
        return _hammer(base, {}, _mlflow_calls(experiment), seconds)


# -- the run -----------------------------------------------------------------------------
def _rows(prefix: str, who: str, what: str, load: Load, *, errors_target: bool) -> list[Result]:
    log(
        f"server_concurrent: {who}: {len(load.latencies)} calls, {load.errors} errors, "
        f"p95 {load.p95:.0f} ms, {load.rps:.1f} req/s"
        + (f" (failures: {dict(load.failures)})" if load.failures else "")
    )
    return [
        summarize(f"server_concurrent.{prefix}errors", f"{who}: failed calls, {what}",
                  [load.errors], "calls", at_most=0 if errors_target else None),
        summarize(f"server_concurrent.{prefix}p95", f"{who}: p95 latency, {what}", [load.p95],
                  "ms"),
        summarize(f"server_concurrent.{prefix}rps", f"{who}: throughput, {what}", [load.rps],
                  "req/s"),
    ]  # fmt: skip


def run(quick: bool) -> list[Result]:
    seconds = 15.0 if quick else 60.0
    root, token = server_listing.prepared()
    what = (
        f"{CLIENTS} clients x (newest 50 | newest 50 with f1 > 0.9) over 100,000 runs "
        f"for {seconds:.0f} s, 2 workers"
    )
    mlflow = ensure_mlflow()
    store = None
    if isinstance(mlflow, Mlflow):
        store = _mlflow_store(mlflow, root)
    ours = _pipetrail(root, token, seconds)
    results = _rows("", "pipetrail", what, ours, errors_target=True)
    if isinstance(mlflow, PeerUnavailable) or store is None:
        reason = mlflow.reason if isinstance(mlflow, PeerUnavailable) else "no store"
        return results + [
            not_measured(f"server_concurrent.{name}", f"MLflow tracking server: {name}", unit,
                         reason)
            for name, unit in (("mlflow_errors", "calls"), ("mlflow_p95", "ms"),
                               ("mlflow_rps", "req/s"), ("vs_mlflow_rps", "x"),
                               ("vs_mlflow_p95", "x"))
        ]  # fmt: skip
    theirs = _mlflow(mlflow, store[0], store[1], seconds)
    results += _rows("mlflow_", f"MLflow {mlflow.version}", what, theirs, errors_target=False)
    results += [
        summarize("server_concurrent.vs_mlflow_rps",
                  "throughput, pipetrail / MLflow search_runs, same run", [ours.rps / theirs.rps],
                  "x"),
        summarize("server_concurrent.vs_mlflow_p95",
                  "p95 latency, MLflow search_runs / pipetrail, same run",
                  [theirs.p95 / ours.p95], "x"),
    ]  # fmt: skip
    return results


if __name__ == "__main__":
    raise SystemExit(main(run, __doc__.splitlines()[0]))
