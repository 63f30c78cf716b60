"""The per-run benchmark's MLflow side: the same work as ``_tiny.py``, logged with MLflow.

Run with the interpreter of MLflow's own virtualenv (see ``peers.ensure_mlflow``), never
the project's: ``python _per_run_mlflow.py FOLDER RUNS STORE``. Each run starts an MLflow
run, logs the same 20 params, computes what the two steps of ``_tiny.py`` compute, logs
the same 20 metrics and ends the run, against a local tracking store in ``FOLDER``
(STORE: ``sqlite``, a SQLite database, or ``file``, the file store). The first run is
the warm-up; the wall seconds of the next RUNS are printed as JSON.
Standard library and MLflow only (pipetrail is not installed there).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

METRICS = 20


def params_of(run: int) -> dict[str, float]:
    """The 20 parameter values of run ``run`` (as in ``_tiny.py``)."""
    return {f"p{j:02d}": run + j / 100 for j in range(20)}


def prepare(offset: float) -> list[float]:
    return [offset + k for k in range(8)]


def train(data: list[float], config: dict[str, float]) -> tuple[float, dict[str, float]]:
    score = sum(data) / len(data) + sum(config.values())
    return score, {f"metric_{k:02d}": score + k for k in range(METRICS)}


def main(folder: str, runs: int, store: str) -> None:
    """Run ``1 + runs`` tracked runs; print the timed runs' seconds."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    import mlflow

    if store == "sqlite":
        uri = f"sqlite:///{os.path.join(folder, 'mlflow.db')}"
    else:  # the file store, in maintenance mode in MLflow 3: allowed explicitly
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        uri = f"file://{folder}/mlruns"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("per-run")
    seconds = []
    for i in range(runs + 1):
        start = time.perf_counter()
        with mlflow.start_run():
            params = params_of(i)
            mlflow.log_params(params)
            _, metrics = train(prepare(params["p00"]), params)
            mlflow.log_metrics(metrics)
        elapsed = time.perf_counter() - start
        if i:
            seconds.append(elapsed)
    client = mlflow.MlflowClient()
    last = client.search_runs([mlflow.get_experiment_by_name("per-run").experiment_id])[0]
    if len(last.data.params) != 20 or len(last.data.metrics) != METRICS:
        raise RuntimeError(f"the last run logged {last.data.params} / {last.data.metrics}")
    print(json.dumps(seconds))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
