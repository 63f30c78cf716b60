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

The process's ``PIPETRAIL_HOME`` is set to the fixture's key folder, whatever it was.

The 50 concurrent clients, against ``pipetrail serve`` and MLflow's tracking server on
the same runs, are benchmarks/server_concurrent.py's.

Run: ``.venv/bin/python benchmarks/server_listing.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from typing import TYPE_CHECKING, Any

import run_queries
from _common import WORK_DIR, Result, log, main, summarize

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TARGET_MS = 100.0


def prepared() -> tuple[Path, str]:
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
    # The key folder of the fixture's admin, whatever the caller's: the in-process server
    # keeps its cache of verified signatures there (run_all.py puts the variable back).
    os.environ["PIPETRAIL_HOME"] = str(WORK_DIR / "server" / "home")
    root, token = prepared()
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
    return results


if __name__ == "__main__":
    raise SystemExit(main(run, __doc__.splitlines()[0]))
