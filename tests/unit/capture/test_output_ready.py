"""``logging_ready``: many captures in a row see and leave logging as captures alone do."""

from __future__ import annotations

import io
import logging
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import pytest

from pipetrail.capture.output import capture_output, logging_ready

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture(autouse=True)
def _root_as_found() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


def _steps(block: Callable[[], AbstractContextManager[object]]) -> tuple[list[str], str, int]:
    """Three 'steps' captured in turn; returns their logs, a handler's output, the root level."""
    logging.getLogger().setLevel(logging.WARNING)
    seen = io.StringIO()
    handler = logging.StreamHandler(seen)
    logs = []
    with block():
        with capture_output(tee=False) as out:
            logging.getLogger("ready.a").info("one")
            # A step adds a handler (level NOTSET) and sets the root level.
            logging.getLogger("ready.b").addHandler(handler)
        logs.append(out.text())
        with capture_output(tee=False) as out:
            logging.getLogger("ready.b").debug("hidden from the handler: root was WARNING")
            logging.getLogger("ready.b").warning("two")
            logging.getLogger().setLevel(logging.ERROR)
        logs.append(out.text())
        with capture_output(tee=False) as out:
            logging.getLogger("ready.c").info("three, captured although root says ERROR")
            logging.getLogger("ready.b").warning("not for the handler: root is ERROR now")
        logs.append(out.text())
    logging.getLogger("ready.b").removeHandler(handler)
    return (
        [line.split(" ", 3)[-1] for log in logs for line in log.splitlines()],
        seen.getvalue(),
        logging.getLogger().level,
    )


def test_captures_inside_logging_ready_behave_as_captures_alone() -> None:
    alone = _steps(nullcontext)
    ready = _steps(logging_ready)
    assert ready == alone
    captured, handler_saw, level = ready
    assert "one" in captured[0]
    assert any("three" in line for line in captured)
    assert handler_saw == "two\n"
    assert level == logging.ERROR  # the steps' own choice is kept


def test_logging_ready_leaves_nothing_behind() -> None:
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    handlers = list(root.handlers)
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger("ready.d").addHandler(other)
    with logging_ready():
        assert root.level == logging.NOTSET  # lowered once for all the captures inside
        with capture_output(tee=False):
            pass
    assert root.level == logging.WARNING
    assert root.handlers == handlers
    assert other.filters == []
    logging.getLogger("ready.d").removeHandler(other)
