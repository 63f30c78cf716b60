"""The objects alive when a run starts are frozen while it runs (execution.heap)."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest

from pipetrail import pipeline, step
from pipetrail.execution.heap import frozen_heap

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SEEN: list[int] = []


@step
def frozen_count(x: int) -> int:
    SEEN.append(gc.get_freeze_count())
    return x + 1


@pipeline
def two_steps() -> int:
    return frozen_count(frozen_count(0))


@pytest.fixture(autouse=True)
def _nothing_frozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_run_freezes_what_was_alive_before_it_and_puts_it_back(tmp_path: Path) -> None:
    SEEN.clear()
    assert two_steps.with_options(project=tmp_path).run().outputs == 2
    assert len(SEEN) == 2
    assert all(count > 0 for count in SEEN)
    assert gc.get_freeze_count() == 0


def test_the_block_freezes_and_unfreezes() -> None:
    with frozen_heap():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


# Frozen objects other threads of the test process free leave the frozen count, so
# counts are compared with room for that; a second freeze would add the new objects.
_NEW = 10_000


def test_nested_blocks_share_one_freeze() -> None:
    with frozen_heap():
        frozen = gc.get_freeze_count()
        made = [[] for _ in range(_NEW)]  # tracked after the outer freeze
        with frozen_heap():
            assert frozen - _NEW < gc.get_freeze_count() <= frozen  # not frozen again
        assert frozen - _NEW < gc.get_freeze_count() <= frozen  # the outer block holds it
        del made
    assert gc.get_freeze_count() == 0


def test_a_heap_the_process_froze_itself_stays_frozen() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    made = [[] for _ in range(_NEW)]  # tracked after the program's freeze
    with frozen_heap():
        assert frozen - _NEW < gc.get_freeze_count() <= frozen  # nothing more frozen
    assert frozen - _NEW < gc.get_freeze_count() <= frozen  # nor the program's unfrozen
    del made


def test_nothing_is_frozen_while_the_collector_is_off() -> None:
    gc.disable()
    try:
        with frozen_heap():
            assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_the_heap_is_put_back_when_the_block_raises() -> None:
    with pytest.raises(ZeroDivisionError), frozen_heap():
        raise ZeroDivisionError
    assert gc.get_freeze_count() == 0
