"""Interrupts: SIGINT (Ctrl-C) and SIGTERM end a run cleanly; a second one exits at once.

Two pieces:

* :func:`handling_interrupts` installs handlers for the duration of a block (main thread
  only). The first signal raises :class:`~pipetrail.errors.RunInterruptedError` (a
  ``KeyboardInterrupt``) where the main thread is, so a step's code stops as it would on
  Ctrl-C and the runner records the run as ``interrupted``. With ``exit_on_second`` (what
  ``pipetrail run``, ``reproduce`` and ``check`` use, through
  :mod:`pipetrail.cli.interruptible`) a second signal exits the process at once, with status
  ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM): the run is then left
  unfinished and shows as ``crashed``, like a killed one. Without it (the default a
  runner installs for Python callers) a second signal is raised like the first.
* :func:`deferred_interrupts` marks a block that must not be cut in two: appending to the
  ledger and forgetting what was appended. A signal arriving inside is remembered and
  raised when the outermost such block exits (or dropped with ``deliver=False``, when
  the block is the run's last word anyway).

Signals are only ever delivered to the main thread, so both are no-ops elsewhere.
Imports only the standard library and ``pipetrail.errors``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

from pipetrail.errors import RunInterruptedError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType, TracebackType

__all__ = [
    "deferred_interrupts",
    "handling_interrupts",
    "interrupt_requested",
    "python_default_sigint",
]


class _State:
    """What the installed handlers know; touched only in the main thread."""

    def __init__(self) -> None:
        self.installed = 0
        self.exit_on_second = False
        # The first signal received while handlers are installed ("SIGINT"), if any.
        self.received: str | None = None
        # A signal that arrived inside deferred_interrupts(), to raise at its end.
        self.pending: str | None = None
        self.depth = 0


_state = _State()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handle(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _state.received is not None:
        if _state.exit_on_second:
            os.write(
                2,
                f"\n{name} again: exiting now; the run is left unfinished and will show "
                "as crashed\n".encode(),
            )
            os._exit(128 + signum)
        if _state.depth > 0:
            return  # the first one is being handled: let the ledger write finish
        raise RunInterruptedError(name)
    _state.received = name
    if _state.depth > 0:
        _state.pending = name
        return
    raise RunInterruptedError(name)


def python_default_sigint() -> bool:
    """Whether this is the main thread and SIGINT has Python's default handler."""
    return _in_main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler


@contextlib.contextmanager
def handling_interrupts(
    signals: tuple[str, ...] = ("SIGINT", "SIGTERM"), *, exit_on_second: bool = True
) -> Iterator[None]:
    """Turn ``signals`` into :class:`~pipetrail.errors.RunInterruptedError` for a block.

    Handlers already installed by an enclosing block stay (the outer block's settings
    win). The previous handlers are restored when the block exits. Outside the main
    thread nothing is installed.

    Args:
        signals: signal names to handle.
        exit_on_second: exit the process at once on a second signal (the CLI);
            otherwise raise it too.
    """
    if not _in_main_thread() or _state.installed:
        yield
        return
    numbers = [signal.Signals[name] for name in signals]
    saved: dict[signal.Signals, Any] = {number: signal.getsignal(number) for number in numbers}
    _state.installed += 1
    _state.exit_on_second = exit_on_second
    _state.received = _state.pending = None
    try:
        for number in numbers:
            signal.signal(number, _handle)
        yield
    finally:
        for number, previous in saved.items():
            signal.signal(number, previous)
        _state.installed -= 1
        _state.received = _state.pending = None


def interrupt_requested() -> str | None:
    """Return the signal received under :func:`handling_interrupts`, if any.

    A step may catch the ``KeyboardInterrupt`` a signal raised and carry on; the runner
    asks this between steps so that the run still ends as ``interrupted``.
    """
    return _state.received if _state.installed else None


class deferred_interrupts:
    """Hold signals back while the block runs (see the module docstring).

    A class rather than a generator: every flush of a run's events enters one.

    Args:
        deliver: raise a signal that arrived inside when the outermost such block exits
            normally; ``False`` drops it (it stays visible to
            :func:`interrupt_requested`).

    Raises:
        RunInterruptedError: a signal arrived inside and ``deliver`` is true.
    """

    __slots__ = ("_counted", "_deliver")

    def __init__(self, *, deliver: bool = True) -> None:
        self._deliver = deliver
        self._counted = False

    def __enter__(self) -> None:
        if _in_main_thread():
            _state.depth += 1
            self._counted = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._counted:
            return
        self._counted = False
        _state.depth -= 1
        if exc_type is None and _state.depth == 0 and _state.pending is not None:
            name, _state.pending = _state.pending, None
            if self._deliver:
                raise RunInterruptedError(name)
