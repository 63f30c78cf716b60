"""The server's run listing over a ledger of 100,000 runs: ``GET /api/v1/runs?limit=50``
and the runs page, each authenticated and authorized as every request is.

The ledger is run_queries' (benchmarks/run_queries.py: 100,000 runs, params, tags,
metrics), copied once into benchmarks/.work/server/ with a first admin, ``bench``, and
an API token for them (a key folder of its own beside it).

Rows (in-process through FastAPI's test client: the application and its ASGI stack,
token check, roles read from the governance events, the query, the JSON or HTML; no
network). Each round sends 100 requests (20 with --quick) and takes their 95th
percentile; the row is the median over the rounds of that p95:

* ``server.api_runs`` (target p95 <= 100 ms): ``GET /api/v1/runs?limit=50``;
* ``server.api_where`` (target p95 <= 100 ms): ``GET /api/v1/runs?where=metrics.f1 >
  0.9&limit=50``;
* ``server.page_runs`` (target p95 <= 100 ms): ``GET /`` (the runs table, 50 rows);
* ``server.api_next_page`` (target p95 <= 100 ms): the page after ``cursor=`` the 50th
  run, the way a client walks the list.

Then ``pipetrail serve --workers 2`` as a real process, and 50 client threads (one
httpx client each) calling ``GET /api/v1/runs?limit=50`` for 60 s (10 s with --quick):

* ``server.concurrent_errors`` (target 0): answers other than 200, and failed calls;
* ``server.concurrent_p95`` and ``server.concurrent_rps``: the p95 latency and the
  throughput (informational; the client threads share the 2 CPUs with the server);
* ``server.vs_mlflow``: not measured yet (MLflow's tracking server on the same runs).

Run: ``.venv/bin/python benchmarks/server_listing.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import run_queries
from _common import WORK_DIR, Result, bench_env, log, main, not_measured, summarize

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TARGET_MS = 100.0


def _prepared() -> tuple[Path, str]:
    """The copied project with its admin, and the admin's token."""
    source, info = run_queries.project_root()
    folder = WORK_DIR / "server"
    root, home, marker = folder / "project", folder / "home", folder / "params.json"
    key = {"source": info["key"], "version": 1}
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("key") == key and root.exists():
            return root, str(saved["token"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log("server: copying the 100,000-run project and adding an admin (once)")
    shutil.copytree(source, root)
    from pipetrail.execution.project import Project
    from pipetrail.governance.keys import create_key, load_signer
    from pipetrail.governance.service import Governance
    from pipetrail.governance.tokens import issue_token

    create_key("bench", folder=home)
    project = Project.at(root)
    admin = Governance(project, signer=load_signer("bench", folder=home))
    admin.bootstrap()
    token = issue_token(admin, "bench", expires="366d", label="benchmarks").token
    project.close()
    marker.write_text(json.dumps({"key": key, "token": token}))  # written last: complete
    return root, token


def _p95s(call: Callable[[], Any], rounds: int, per_round: int) -> list[float]:
    for _ in range(5):
        call()  # warm the page cache and the process's verified-signature cache
    found = []
    for _ in range(rounds):
        times = []
        for _ in range(per_round):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1000)
        found.append(statistics.quantiles(times, n=20)[-1])
    return found


def run(quick: bool) -> list[Result]:
    os.environ.setdefault("PIPETRAIL_HOME", str(WORK_DIR / "server" / "home"))
    root, token = _prepared()
    from fastapi.testclient import TestClient

    from pipetrail.server.app import create_app
    from pipetrail.server.context import ServerSettings

    client = TestClient(create_app(ServerSettings(root=root)), base_url="https://testserver")
    client.headers["Authorization"] = f"Bearer {token}"
    first = client.get("/api/v1/runs", params={"limit": 50})
    if first.status_code != 200 or len(first.json()["runs"]) != 50:
        raise RuntimeError(f"GET /api/v1/runs failed: {first.status_code} {first.text[:300]}")
    cursor = first.json()["next_cursor"]

    def get(path: str, **params: Any) -> Callable[[], Any]:
        def call() -> None:
            answer = client.get(path, params=params)
            if answer.status_code != 200:
                raise RuntimeError(f"GET {path} {params}: {answer.status_code}")

        return call

    rows = [
        ("api_runs", "GET /api/v1/runs?limit=50", get("/api/v1/runs", limit=50)),
        (
            "api_where",
            "GET /api/v1/runs?where=metrics.f1 > 0.9&limit=50",
            get("/api/v1/runs", where="metrics.f1 > 0.9", limit=50),
        ),
        ("page_runs", "GET / (runs table, 50 rows)", get("/")),
        (
            "api_next_page",
            "GET /api/v1/runs?limit=50&cursor=(50th run)",
            get("/api/v1/runs", limit=50, cursor=cursor),
        ),
    ]
    rounds, per_round = (3, 20) if quick else (7, 100)
    results = []
    for name, what, call in rows:
        samples = _p95s(call, rounds, per_round)
        log(f"server.{name}: median p95 {statistics.median(samples):.1f} ms")
        results.append(
            summarize(
                f"server.{name}",
                f"p95 of {per_round} x {what} over 100,000 runs",
                samples,
                "ms",
                at_most=TARGET_MS,
            )
        )
    client.close()
    return results + _concurrent(root, token, 10.0 if quick else 60.0)


def _concurrent(root: Path, token: str, seconds: float) -> list[Result]:
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = bench_env() | {"PIPETRAIL_HOME": str(WORK_DIR / "server" / "home")}
    server = subprocess.Popen(
        [sys.executable, "-m", "pipetrail.cli.main", "serve", "--port", str(port),
         "--workers", "2"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/login", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("pipetrail serve did not start") from None
                time.sleep(0.2)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def client() -> None:
            mine: list[float] = []
            failed = 0
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as http:
                while time.monotonic() < stop:
                    start = time.perf_counter()
                    try:
                        ok = http.get("/api/v1/runs", params={"limit": 50}).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    mine.append((time.perf_counter() - start) * 1000)
                    failed += not ok
            with lock:
                latencies.extend(mine)
                errors[0] += failed

        threads = [threading.Thread(target=client) for _ in range(50)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=30)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    rps = len(latencies) / elapsed
    log(f"server.concurrent: {len(latencies)} calls, {errors[0]} errors, p95 {p95:.0f} ms")
    what = f"50 clients x GET /api/v1/runs?limit=50 for {seconds:.0f} s, 2 workers"
    return [
        summarize("server.concurrent_errors", f"failed calls, {what}", [errors[0]], "calls",
                  at_most=0),
        summarize("server.concurrent_p95", f"p95 latency, {what}", [p95], "ms"),
        summarize("server.concurrent_rps", f"throughput, {what}", [rps], "req/s"),
        not_measured(
            "server.vs_mlflow",
            "MLflow tracking server search_runs, same runs, same clients",
            "req/s",
            "the MLflow tracking server is not set up by this benchmark yet",
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main(run, __doc__.splitlines()[0]))
