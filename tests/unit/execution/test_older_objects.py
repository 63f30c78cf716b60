"""While a run's nodes run, the objects older than them are left out of garbage collections."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest

from pipetrail import pipeline, step
from pipetrail.execution.older_objects import older_objects_set_aside

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture(autouse=True)
def _no_freeze_around() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_older_objects_are_set_aside_and_given_back() -> None:
    older = [object()]
    with older_objects_set_aside():
        assert gc.get_freeze_count() > 0
        assert not any(item is older for item in gc.get_objects())
    assert gc.get_freeze_count() == 0
    assert any(item is older for item in gc.get_objects())


def test_runs_at_once_share_one_freeze_undone_by_the_last_to_end() -> None:
    first, second = older_objects_set_aside(), older_objects_set_aside()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0


def test_a_freeze_the_program_made_is_kept() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    made_after = [object()]
    with older_objects_set_aside():
        assert gc.get_freeze_count() == frozen
        assert any(item is made_after for item in gc.get_objects())
    assert gc.get_freeze_count() == frozen


SEEN: list[int] = []


@step
def count_frozen(x: int) -> int:
    SEEN.append(gc.get_freeze_count())
    return x + 1


@pipeline
def counted(n: int = 2) -> int:
    x = count_frozen(0)
    for _ in range(n - 1):
        x = count_frozen(x)
    return x


def test_a_run_sets_them_aside_while_its_steps_run_only(
    make_project: Callable[..., Path],
) -> None:
    SEEN.clear()
    run = counted.with_options(project=make_project()).run()
    assert run.outputs == 2
    assert len(SEEN) == 2
    assert all(count > 0 for count in SEEN)
    assert gc.get_freeze_count() == 0


@step
def fails(x: int) -> int:
    SEEN.append(gc.get_freeze_count())
    raise ValueError("no")


@pipeline
def failing() -> int:
    return fails(count_frozen(0))


def test_a_failed_run_gives_them_back_too(make_project: Callable[..., Path]) -> None:
    from pipetrail.errors import StepFailedError

    SEEN.clear()
    with pytest.raises(StepFailedError):
        failing.with_options(project=make_project()).run()
    assert SEEN
    assert all(count > 0 for count in SEEN)
    assert gc.get_freeze_count() == 0
