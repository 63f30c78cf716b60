"""The lineage page benchmark's pipeline: 500 independent parts combined into one model.

Upstream of the model's artifact: the combining step run, the 500 part artifacts and the
500 part step runs (and what the parts read): over 1,000 nodes.
"""

from __future__ import annotations

from pipetrail import pipeline, step


@step
def part(i: int) -> int:
    return i * i


@step
def combine(parts: list[int]) -> dict[str, int]:
    return {"total": sum(parts), "parts": len(parts)}


@pipeline
def wide(n: int = 500) -> dict[str, int]:
    return combine([part(i) for i in range(n)])
