"""Pipeline sources that several test modules run, as text written to a file."""

from __future__ import annotations

GRID = """
from pipetrail import log_metric, pipeline, step

@step
def load(n: int) -> list[int]:
    return list(range(n))

@step
def train(data: list[int], C: float, penalty: str) -> float:
    if penalty == "boom":
        raise ValueError("no such penalty")
    score = sum(data) * C / (2 if penalty == "l1" else 3)
    log_metric("score", score)
    print("trained", C, penalty)
    return score

@pipeline
def grid(C: float = 1.0, penalty: str = "l2", n: int = 10):
    return train(load(n), C, penalty)
"""
"""A grid-search pipeline: ``penalty="boom"`` fails its training step."""
