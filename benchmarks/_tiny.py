"""The per-run benchmark's pipeline: 2 steps, 20 params, 20 metrics (see per_run.py).

Lives in a real module file because a step's code fingerprint is taken from its source.
``main`` runs it ``1 + N`` times in one process (the first run is the warm-up) and prints
the wall seconds of the N timed runs as JSON; per_run.py runs it as a child process.
The MLflow side (``_per_run_mlflow.py``) does the same work with the same values.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipetrail import log_metrics, pipeline, step

METRICS = 20


def params_of(run: int) -> dict[str, float]:
    """The 20 parameter values of run ``run`` (every run differs: every step executes)."""
    return {f"p{j:02d}": run + j / 100 for j in range(20)}


@step
def prepare(offset: float) -> list[float]:
    return [offset + k for k in range(8)]


@step
def train(data: list[float], config: dict[str, float]) -> float:
    score = sum(data) / len(data) + sum(config.values())
    log_metrics({f"metric_{k:02d}": score + k for k in range(METRICS)})
    return score


@pipeline
def tiny(
    p00: float = 0.0,
    p01: float = 0.0,
    p02: float = 0.0,
    p03: float = 0.0,
    p04: float = 0.0,
    p05: float = 0.0,
    p06: float = 0.0,
    p07: float = 0.0,
    p08: float = 0.0,
    p09: float = 0.0,
    p10: float = 0.0,
    p11: float = 0.0,
    p12: float = 0.0,
    p13: float = 0.0,
    p14: float = 0.0,
    p15: float = 0.0,
    p16: float = 0.0,
    p17: float = 0.0,
    p18: float = 0.0,
    p19: float = 0.0,
) -> float:
    config = {
        "p00": p00,
        "p01": p01,
        "p02": p02,
        "p03": p03,
        "p04": p04,
        "p05": p05,
        "p06": p06,
        "p07": p07,
        "p08": p08,
        "p09": p09,
        "p10": p10,
        "p11": p11,
        "p12": p12,
        "p13": p13,
        "p14": p14,
        "p15": p15,
        "p16": p16,
        "p17": p17,
        "p18": p18,
        "p19": p19,
    }
    return train(prepare(p00), config)


def main(project: str, runs: int) -> None:
    """Run the pipeline ``1 + runs`` times in ``project``; print the timed runs' seconds."""
    runner = tiny.with_options(project=Path(project))
    seconds = []
    try:
        for i in range(runs + 1):
            start = time.perf_counter()
            run = runner.run(**params_of(i))
            elapsed = time.perf_counter() - start
            statuses = [s["status"] for s in run.steps()]
            if statuses != ["completed", "completed"]:
                raise RuntimeError(f"run {i}: steps {statuses}, expected two executed steps")
            if i:
                seconds.append(elapsed)
    finally:
        if runner.project is not None:
            runner.project.close()
    print(json.dumps(seconds))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
