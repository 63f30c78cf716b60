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


def _debug_reaches(handler: logging.Handler, attach_after: int) -> str:
    """Captures in a row; ``handler`` is added to a logger after the ``attach_after``-th."""
    logging.getLogger().setLevel(logging.WARNING)
    with logging_ready():
        for index in range(attach_after + 2):
            with capture_output(tee=False):
                logging.getLogger("ready.e").debug("step %d", index)
            if index + 1 == attach_after:
                logging.getLogger("ready.e").addHandler(handler)
    logging.getLogger("ready.e").removeHandler(handler)
    assert handler.filters == []
    stream = getattr(handler, "stream", None)
    return stream.getvalue() if isinstance(stream, io.StringIO) else ""


def test_a_handler_made_after_unchanged_captures_is_gated() -> None:
    # The logger tree is walked again once a handler is made: captures that follow
    # unchanged ones must not let records below the root's level reach it.
    logging.getLogger().setLevel(logging.WARNING)
    seen = io.StringIO()
    with logging_ready():
        for index in range(4):
            with capture_output(tee=False):
                logging.getLogger("ready.f").debug("step %d", index)
            if index == 2:
                handler = logging.StreamHandler(seen)
                logging.getLogger("ready.f").addHandler(handler)
    logging.getLogger("ready.f").removeHandler(handler)
    assert seen.getvalue() == ""
    assert handler.filters == []


def test_a_handler_made_before_and_added_later_is_gated() -> None:
    # A handler that already existed, unattached, when the tree was last walked is not
    # seen by the handlers' mark: it keeps every capture walking the tree.
    handler = logging.StreamHandler(io.StringIO())
    assert _debug_reaches(handler, attach_after=3) == ""
