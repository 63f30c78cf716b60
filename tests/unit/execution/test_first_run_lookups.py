"""A step no run recorded yet misses without a cache lookup per node (execution.run_node)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail import pipeline, step
from pipetrail.execution.cache_ahead import CacheAhead

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


@step
def bump(x: int) -> int:
    return x + 1


@step
def twice(x: int) -> int:
    return 2 * x


@pipeline
def bumps(n: int = 3) -> int:
    x = bump(0)
    for _ in range(n - 1):
        x = bump(x)
    return x


@pipeline
def more_bumps(n: int = 3) -> int:
    x = bump(0)
    for _ in range(n - 1):
        x = bump(x)
    return x


@pipeline
def aa_doubles() -> int:
    return twice(twice(1))


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The cache keys looked up in the ledger from now on."""
    keys: list[str] = []
    hit = CacheAhead.hit

    def counted(self: CacheAhead, reader: Any, cache_key: str) -> Any:
        keys.append(cache_key)
        return hit(self, reader, cache_key)

    monkeypatch.setattr(CacheAhead, "hit", counted)
    return keys


def test_a_step_never_recorded_is_not_looked_up_node_by_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = _counted(monkeypatch)
    first = bumps.with_options(project=tmp_path).run(n=4)
    assert first.outputs == 4
    steps = first.steps()
    assert [(s["status"], s["cache_decision"]) for s in steps] == [("completed", "miss")] * 4
    assert {s["cache_reason"] for s in steps} == {"no earlier step run has this cache key"}
    assert keys == []
    first.project.close()
    again = bumps.with_options(project=tmp_path).run(n=5)
    assert [s["status"] for s in again.steps()] == ["cached"] * 4 + ["completed"]
    assert len(keys) == 5  # recorded now: each node is looked up
    again.project.close()


def test_a_step_recorded_by_another_pipeline_is_still_a_hit(tmp_path: Path) -> None:
    # The pipelines are walked in the order of their names: "aa_doubles" comes first.
    aa_doubles.with_options(project=tmp_path).run().project.close()
    bumps.with_options(project=tmp_path).run(n=2).project.close()
    other = more_bumps.with_options(project=tmp_path).run(n=3)
    assert [s["status"] for s in other.steps()] == ["cached", "cached", "completed"]
    reader = other.project.reader()
    assert reader.step_ran("bump")
    assert reader.step_ran("twice")
    assert not reader.step_ran("never")
    other.project.close()
