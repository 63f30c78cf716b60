"""The verified-read-cost benchmark's pipeline: N steps that each read a stored artifact.

Lives in a real module file because a step's code fingerprint is taken from its source.
``make(i)`` steps are cache hits after the first run; each ``use`` step gets a new
``salt`` every run, so it executes and loads its input, the output of a cached ``make``,
from the store (not from the bytes a step of this run just wrote): one verified read of
a small stored artifact per ``use`` step. See verified_read_cost.py.
"""

from __future__ import annotations

from pipetrail import pipeline, step

DEFAULT_READS = 200


@step
def make(i: int) -> list[int]:
    return [i + k for k in range(16)]


@step
def use(data: list[int], salt: int) -> int:
    return sum(data) + salt


@step
def total(values: list[int]) -> int:
    return sum(values)


@pipeline
def reads(n: int = DEFAULT_READS, salt: int = 0) -> int:
    return total([use(make(i), salt=salt) for i in range(n)])
