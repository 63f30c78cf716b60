"""The concurrent listing benchmark's MLflow side: load the same runs into MLflow's store.

Run with the interpreter of MLflow's own virtualenv (see ``peers.ensure_mlflow``), never
the project's: ``python _server_mlflow.py DB ARTIFACTS RUNS_JSONL``. MLflow's own
SQLAlchemy store creates its schema in the SQLite database DB (a new file) and one
experiment, ``listing``; then the runs of RUNS_JSONL (one JSON object a line: ``id``,
``name``, ``status``, ``start_ms``, ``params``, ``tags``, ``metrics``) are inserted
through MLflow's own table definitions (the runs, their params, tags, metrics and latest
metrics, as logging them would leave them), in batches. Logging 100,000 runs one call at
a time would take most of an hour; what the benchmark times is the server's search, not
the loading. Prints the experiment id as JSON.
Standard library and MLflow only (pipetrail is not installed there).
"""

from __future__ import annotations

import json
import logging
import sys
import uuid

BATCH = 5000
_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def main(db: str, artifacts: str, runs_file: str) -> None:
    """Create the store and the experiment; insert every run of ``runs_file``."""
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{db}", artifacts)
    experiment = store.create_experiment("listing")
    tables = {
        "runs": SqlRun.__table__,
        "params": SqlParam.__table__,
        "tags": SqlTag.__table__,
        "metrics": SqlMetric.__table__,
        "latest": SqlLatestMetric.__table__,
    }
    pending: dict[str, list[dict[str, object]]] = {name: [] for name in tables}

    def flush() -> None:
        with store.engine.begin() as conn:
            for name, table in tables.items():
                if pending[name]:
                    conn.execute(table.insert(), pending[name])
                    pending[name] = []

    with open(runs_file, encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            run = json.loads(line)
            run_uuid = uuid.uuid4().hex
            pending["runs"].append(
                {
                    "run_uuid": run_uuid,
                    "name": run["name"] or run["id"],
                    "source_type": "LOCAL",
                    "source_name": "",
                    "entry_point_name": "",
                    "user_id": "bench",
                    "status": _STATUS.get(run["status"], "FINISHED"),
                    "start_time": run["start_ms"],
                    "end_time": run["start_ms"],
                    "deleted_time": None,
                    "source_version": "",
                    "lifecycle_stage": "active",
                    "artifact_uri": f"{artifacts}/{run_uuid}",
                    "experiment_id": int(experiment),
                }
            )
            for key, value in run["params"].items():
                pending["params"].append({"key": key, "value": value, "run_uuid": run_uuid})
            for key, value in run["tags"].items():
                pending["tags"].append({"key": key, "value": value, "run_uuid": run_uuid})
            for key, value in run["metrics"].items():
                row = {
                    "key": key,
                    "value": value,
                    "timestamp": run["start_ms"],
                    "step": 0,
                    "is_nan": False,
                    "run_uuid": run_uuid,
                }
                pending["metrics"].append(row)
                pending["latest"].append(row)
            if n % BATCH == 0:
                flush()
    flush()
    print(json.dumps({"experiment_id": str(experiment)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
