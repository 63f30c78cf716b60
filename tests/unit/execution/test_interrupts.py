"""Signal handling for runs, with real signals sent to this process (the main thread)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pipetrail.errors import RunInterruptedError
from pipetrail.execution.interrupts import (
    deferred_interrupts,
    handling_interrupts,
    interrupt_requested,
    python_default_sigint,
)


def send(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)
    # The handler runs between bytecodes of the main thread; give it a few.
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        time.sleep(0.001)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_raises_where_the_main_thread_is(sig: signal.Signals) -> None:
    with handling_interrupts(), pytest.raises(RunInterruptedError) as caught:
        send(sig)
    assert caught.value.signal_name == sig.name
    assert caught.value.run_id is None
    assert isinstance(caught.value, KeyboardInterrupt)


def test_handlers_are_put_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with handling_interrupts():
        assert not python_default_sigint()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert interrupt_requested() is None


def test_a_signal_inside_a_deferred_block_is_raised_when_it_ends() -> None:
    reached: list[str] = []

    def appending() -> None:
        with deferred_interrupts():
            send(signal.SIGTERM)
            reached.append("end of the block")
        reached.append("after the block")

    with handling_interrupts(), pytest.raises(RunInterruptedError, match="SIGTERM"):
        appending()
    assert reached == ["end of the block"]


def test_a_signal_inside_a_block_that_does_not_deliver_is_only_remembered() -> None:
    with handling_interrupts():
        with deferred_interrupts(deliver=False):
            send(signal.SIGINT)
        assert interrupt_requested() == "SIGINT"
    assert interrupt_requested() is None


def test_without_exit_on_second_a_second_signal_waits_for_the_deferred_block() -> None:
    with handling_interrupts(exit_on_second=False):
        with pytest.raises(RunInterruptedError):
            send(signal.SIGINT)
        with deferred_interrupts(deliver=False):
            send(signal.SIGINT)  # the first is being handled: not raised here
        with pytest.raises(RunInterruptedError):
            send(signal.SIGINT)


def test_nested_blocks_keep_the_outer_handlers() -> None:
    with handling_interrupts(exit_on_second=False):
        outer = signal.getsignal(signal.SIGINT)
        with handling_interrupts(("SIGINT",)):
            assert signal.getsignal(signal.SIGINT) is outer
        assert signal.getsignal(signal.SIGINT) is outer
