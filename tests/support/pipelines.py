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

RECORDS = """
from pipetrail import pipeline, step, log_metric

@step(resources={"memory": "1MiB"})
def make(n: int, scale: float = 1e20) -> dict:
    return {"n": n, "scale": scale, "tiny": 1e-7, "values": list(range(n))}

@step(retries=1, resources={"memory": "1MiB"})
def total(data: dict, offset: float = 0.5) -> float:
    log_metric("total", sum(data["values"]) + offset)
    if offset < 0:
        raise ValueError(f"negative offset {offset!r}")
    return sum(data["values"]) + offset

@step
def label(value: float, tag: str = "\\u00e9t\\u00e9 \\u2028") -> str:
    print("labelling", value)
    return f"{tag}:{value}"

@pipeline
def pipe(n: int = 4, offset: float = 0.5, scale: float = 1e20):
    return label(total(make(n, scale=scale), offset=offset))
"""
"""Three steps whose records hold floats orjson writes unlike the reference encoder (``1e20``,
``1e-7``, and the parameters a test passes) and text to escape (``\\u2028``). ``make`` and
``total`` ask for 1 MiB of memory, less than they use; a negative ``offset`` fails
``total`` (retried once)."""
