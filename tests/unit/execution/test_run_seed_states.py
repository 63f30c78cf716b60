"""A run saves the random generators' states once and puts them back when it ends."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail import pipeline, step

if TYPE_CHECKING:
    from pathlib import Path


@step
def noisy(x: float) -> float:
    return x + random.random()


@step
def broken(x: float) -> float:
    random.random()
    raise ValueError(f"broken at {x}")


@pipeline
def noisy_chain(n: int = 4) -> float:
    x = noisy(0.0)
    for _ in range(n - 1):
        x = noisy(x)
    return x


@pipeline
def fails_late() -> float:
    return broken(noisy(noisy(0.0)))


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    saves: list[int] = []
    real = random.getstate

    def counting() -> Any:
        saves.append(1)
        return real()

    monkeypatch.setattr(random, "getstate", counting)
    return saves


def test_a_run_saves_the_states_once_and_the_callers_sequence_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    random.seed(12)
    expected = [random.random() for _ in range(3)]
    random.seed(12)
    saves = _counting(monkeypatch)
    first = random.random()
    run = noisy_chain.with_options(project=tmp_path).run(n=4)
    assert len(saves) == 1  # not once a step
    assert [first, random.random(), random.random()] == expected
    # Each step was still seeded at its start: a second project gives the same values.
    again = noisy_chain.with_options(project=tmp_path / "other").run(n=4)
    assert again.outputs == run.outputs


def test_a_failed_run_puts_the_states_back_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    random.seed(13)
    expected = random.random()
    random.seed(13)
    with pytest.raises(Exception, match="broken"):
        fails_late.with_options(project=tmp_path).run()
    assert random.random() == expected
