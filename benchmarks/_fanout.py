"""The Dask benchmark's pipelines: N independent trivial steps, and a chain of N.

In a real module file: step code fingerprints are taken from source, and the Dask workers
import the plain function by module name when it is submitted directly.
"""

from __future__ import annotations

from pipetrail import pipeline, step


@step
def inc(x: int) -> int:
    return x + 1


@pipeline
def fanout(n: int = 100, base: int = 0) -> list[int]:
    return [inc(base + i) for i in range(n)]


@pipeline
def chain(n: int = 100, base: int = 0) -> int:
    x = inc(base)
    for _ in range(n - 1):
        x = inc(x)
    return x
