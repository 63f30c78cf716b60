"""Listing and filtering runs with the Python read API over a ledger of 100,000 runs.

The ledger: 100,000 runs of one pipeline, each a ``run.started`` and a closing event
(``run.completed`` 90%, ``run.failed`` 8%, ``run.interrupted`` 2%), appended through the
ledger's own path (:meth:`Ledger.append`: hash chain, projections) in transactions of
5,000 events. Params ``lr`` (50 values), ``depth`` (1-10) and ``model`` (5 values); one
run in ten carries a ``stage`` tag (``prod`` one time in five, else ``dev``) and one in
twenty a name. Every completed run also has a closing ``step.completed`` event of its
``evaluate`` step with a logged ``loss`` series summary and the numbers it returned
(``f1``, ``accuracy``), which the ``run_metrics`` projection holds. Deterministic from a
seed.

Cached in benchmarks/.work/run_queries/ and reused while the parameters and the schema
(the text of the migration scripts) are the same (``params.json``, written last); delete
the folder to rebuild (about a minute).

Rows (in-process, on one open ``pipetrail.Project``; a first round that is not counted
warms the page cache; medians):

* ``run_queries.list`` (target <= 50 ms): ``project.runs(limit=100)``;
* ``run_queries.params`` (target <= 50 ms): ``runs(params={"lr": ..., "model": ...},
  limit=100)``;
* ``run_queries.tags`` (target <= 50 ms): ``runs(tags={"stage": "prod"}, limit=100)``;
* ``run_queries.status`` (target <= 50 ms): ``runs(status="failed", limit=100)``;
* ``run_queries.where`` (target <= 50 ms): ``runs(where="metrics.f1 > 0.9", limit=100)``;
* ``run_queries.cli_where`` (target <= 0.5 s, whole process): ``pipetrail runs --where
  'metrics.f1 > 0.9'`` (20 rows, the command's default);
* context: ``project.run("latest")`` and ``runs(limit=100)`` on a freshly opened project.

Run: ``.venv/bin/python benchmarks/run_queries.py [--quick]``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
import time
from typing import TYPE_CHECKING, Any

from _common import (
    PIPETRAIL,
    REPO_ROOT,
    WORK_DIR,
    Result,
    bench_env,
    log,
    main,
    run_timed,
    summarize,
)

import pipetrail
from pipetrail.core.clock import format_ts, new_id
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

PARAMS = {"runs": 100_000, "seed": 11, "batch": 5000}
TARGET_MS = 50.0
CLI_TARGET_S = 0.5
_STATUSES = [
    (EventKind.RUN_COMPLETED, 90),
    (EventKind.RUN_FAILED, 8),
    (EventKind.RUN_INTERRUPTED, 2),
]
_MODELS = ["lr", "rf", "gbm", "svm", "knn"]


def _schema_key() -> str:
    """A digest of the migration scripts: a schema change rebuilds the cached ledger."""
    versions = REPO_ROOT / "src" / "pipetrail" / "ledger" / "migrations" / "versions"
    digest = hashlib.sha256(HEAD_REVISION.encode())
    for script in sorted(versions.glob("*.py")):
        digest.update(script.name.encode() + script.read_bytes())
    return digest.hexdigest()[:16]


def _drafts(rng: random.Random, i: int, started: float) -> list[EventDraft]:
    run_id = new_id()
    at = format_ts(dt.datetime.fromtimestamp(started, tz=dt.UTC))
    payload: dict[str, Any] = {
        "run_id": run_id,
        "pipeline": "train",
        "pipeline_fingerprint": "blake3:" + "f" * 64,
        "owner": "bench",
        "host": "bench-host",
        "process": str(1000 + i),
        "params": {
            "lr": round(0.001 * rng.randint(1, 50), 3),
            "depth": rng.randint(1, 10),
            "model": rng.choice(_MODELS),
        },
        "seed": rng.randint(0, 2**31),
        "git": None,
        "environment": None,
        "started_at": at,
        "steps_total": 4,
        "purpose": "run",
    }
    if i % 10 == 0:
        payload["tags"] = {"stage": "prod" if i % 50 == 0 else "dev"}
    if i % 20 == 0:
        payload["name"] = f"experiment {i}"
    kind = rng.choices([k for k, _ in _STATUSES], weights=[w for _, w in _STATUSES])[0]
    end: dict[str, Any] = {"run_id": run_id, "ended_at": at}
    drafts = [EventDraft(EventKind.RUN_STARTED, payload, run_id=run_id)]
    if kind != EventKind.RUN_COMPLETED:
        end["error"] = "synthetic"
    else:
        loss = round(rng.random(), 4)
        step = {
            "step_run_id": new_id(),
            "run_id": run_id,
            "node_id": "evaluate",
            "step": "evaluate",
            "pipeline": "train",
            "started_at": at,
            "ended_at": at,
            "decision": "miss",
            "outputs": {},
            "metrics": {"loss": {"count": 10, "min": loss, "max": loss + 1, "last": loss}},
            "output_metrics": {"f1": round(rng.random(), 4), "accuracy": round(rng.random(), 4)},
        }
        drafts.append(EventDraft(EventKind.STEP_COMPLETED, step, run_id=run_id))
    drafts.append(EventDraft(kind, end, run_id=run_id))
    return drafts


def build(root: Path) -> dict[str, Any]:
    """Write the project and its ledger; return what the queries probe."""
    rng = random.Random(PARAMS["seed"])
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    ledger = Ledger.open(f"sqlite:///{root / '.pipetrail' / 'ledger.db'}", actor="bench")
    pending: list[EventDraft] = []
    started = time.time() - PARAMS["runs"]
    for i in range(PARAMS["runs"]):
        pending.extend(_drafts(rng, i, started + i))
        if len(pending) >= PARAMS["batch"]:
            ledger.append(pending)
            pending = []
            if i % 20_000 == 0:
                log(f"  {i} runs")
    ledger.append(pending)
    ledger.close()
    return {"probe_params": {"lr": 0.025, "model": "rf"}}


def project_root(rebuild: bool = False) -> tuple[Path, dict[str, Any]]:
    """Return the cached project and its probes, building them when missing or stale."""
    folder = WORK_DIR / "run_queries"
    root, info_file = folder / "project", folder / "params.json"
    key = {"params": PARAMS, "schema": _schema_key()}
    if not rebuild and info_file.exists():
        info = json.loads(info_file.read_text())
        if info.get("key") == key and root.exists():
            return root, info
    shutil.rmtree(folder, ignore_errors=True)
    root.mkdir(parents=True)
    log(f"run_queries: building a ledger of {PARAMS['runs']} runs in {root} (once)")
    start = time.perf_counter()
    info = build(root) | {"key": key, "build_s": time.perf_counter() - start}
    log(f"  built in {info['build_s']:.0f} s")
    info_file.write_text(json.dumps(info, indent=1))  # written last: marks it complete
    return root, info


def _times(call: Callable[[], object], reps: int) -> list[float]:
    call()  # warm
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def run(quick: bool) -> list[Result]:
    root, info = project_root()
    reps = 5 if quick else 21
    project = pipetrail.Project.open(root)
    probe = info["probe_params"]
    listed = project.runs(limit=100)
    if len(listed) != 100:
        raise RuntimeError(f"expected 100 runs, got {len(listed)}")
    if len(project.runs(params=probe, limit=100)) == 0:
        raise RuntimeError("the params probe matches no run")
    prod = {"stage": "prod"}
    rows: list[tuple[str, str, Callable[[], object]]] = [
        ("list", "runs(limit=100) of 100,000", lambda: project.runs(limit=100)),
        (
            "params",
            "runs(params=lr+model, limit=100)",
            lambda: project.runs(params=probe, limit=100),
        ),
        ("tags", "runs(tags=stage:prod, limit=100)", lambda: project.runs(tags=prod, limit=100)),
        (
            "where",
            "runs(where='metrics.f1 > 0.9', limit=100)",
            lambda: project.runs(where="metrics.f1 > 0.9", limit=100),
        ),
        (
            "status",
            "runs(status=failed, limit=100)",
            lambda: project.runs(status="failed", limit=100),
        ),
    ]
    results = []
    for name, measured, call in rows:
        samples = _times(call, reps)
        log(f"run_queries.{name}: median {sorted(samples)[len(samples) // 2]:.1f} ms")
        results.append(summarize(f"run_queries.{name}", measured, samples, "ms", at_most=TARGET_MS))
    results.append(
        summarize(
            "run_queries.latest", 'run("latest")', _times(lambda: project.run("latest"), reps), "ms"
        )
    )
    project.close()

    def fresh() -> None:
        with pipetrail.Project.open(root) as opened:
            opened.runs(limit=100)

    results.append(
        summarize("run_queries.fresh", "open + runs(limit=100)", _times(fresh, reps), "ms")
    )
    command = [PIPETRAIL, "runs", "--where", "metrics.f1 > 0.9"]
    env = bench_env()
    run_timed(command, cwd=root, env=env)  # warm the page cache
    wall = [run_timed(command, cwd=root, env=env)[0] for _ in range(reps)]
    log(f"run_queries.cli_where: median {sorted(wall)[len(wall) // 2]:.3f} s")
    results.append(
        summarize(
            "run_queries.cli_where",
            "pipetrail runs --where 'metrics.f1 > 0.9' (whole process)",
            wall,
            "s",
            at_most=CLI_TARGET_S,
        )
    )
    return results


if __name__ == "__main__":
    raise SystemExit(main(run, "List and filter runs over a ledger of 100,000 runs."))
