"""The flush timer: appends queued events when due, from threads the process reuses."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING

import pytest

from pipetrail.execution import flushing
from pipetrail.execution.flushing import PROCESS_STEP_TIMES, FlushTimer, must_flush_before
from pipetrail.ledger import EventDraft, EventKind

if TYPE_CHECKING:
    from collections.abc import Sequence


class _Ledger:
    """Stands in for the timer's ledger connection: counts appends and closes."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def append(self, drafts: Sequence[EventDraft], *, new_artifacts_only: bool = False) -> None:
        assert new_artifacts_only  # a run's queue holds artifacts the ledger may record
        self.log.append(f"append {len(drafts)} in {threading.current_thread().name}")

    def close(self) -> None:
        self.log.append("close")


def _flush_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "pipetrail-ledger-flush")


def _timer(log: list[str], queue: list[EventDraft]) -> FlushTimer:
    def take() -> list[EventDraft]:
        drafts, queue[:] = list(queue), []
        return drafts

    return FlushTimer(lambda: _Ledger(log), take, queue.extend)  # type: ignore[arg-type,return-value]


def _draft(n: int) -> EventDraft:
    return EventDraft(EventKind.STEP_STARTED, {"n": n}, run_id="r")


def test_timers_of_successive_runs_share_one_thread() -> None:
    log: list[str] = []
    for _ in range(2):  # the first may start the thread
        timer = _timer(log, [])
        timer.arm(time.monotonic() + 60)
        timer.close()
    before = _flush_threads()
    for _ in range(20):
        timer = _timer(log, [])
        timer.arm(time.monotonic() + 60)
        timer.disarm()
        timer.close()
    assert _flush_threads() == before
    assert log == []  # never due: nothing appended, no connection opened


def test_a_due_timer_appends_then_closes_its_connection_on_close() -> None:
    log: list[str] = []
    queue = [_draft(1), _draft(2)]
    timer = _timer(log, queue)
    timer.arm(time.monotonic() + 0.01)
    deadline = time.monotonic() + 10
    while timer.flushes == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    timer.close()
    assert log == ["append 2 in pipetrail-ledger-flush", "close"]
    assert queue == []


def test_a_step_fast_in_an_earlier_run_of_the_process_needs_no_flush() -> None:
    key = "blake3:code-of-a-step-seen-before"
    now = time.monotonic()
    assert must_flush_before(PROCESS_STEP_TIMES, key, 3, now)  # never ran in this process
    PROCESS_STEP_TIMES.record(key, 0.0)
    assert not must_flush_before(PROCESS_STEP_TIMES, key, 3, now)
    assert must_flush_before(PROCESS_STEP_TIMES, "blake3:other-code", 3, now)


def test_a_child_forked_while_a_thread_held_the_pool_starts_its_own_timer() -> None:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # as a flush thread putting itself back in the pool at the fork
        with flushing._idle_lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    release.set()
    holder.join()
    if pid == 0:
        try:
            timer = _timer([], [])
            timer.arm(time.monotonic() + 60)
            timer.close()
        finally:
            os._exit(0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's timer waited for a lock its parent's thread held")


class _SlowPool(list):  # type: ignore[type-arg]
    """The idle threads, where a thread going back waits until ``open`` is set."""

    def __init__(self, open_: threading.Event) -> None:
        super().__init__()
        self.open = open_

    def append(self, thread: object) -> None:
        self.open.wait(30)
        super().append(thread)


def test_closing_a_timer_that_never_fired_does_not_wait_for_its_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    warm = _timer(log, [])  # a thread idle in the pool
    warm.arm(time.monotonic() + 60)
    warm.close()
    first = _timer(log, [])
    first.arm(time.monotonic() + 60)  # takes the idle thread
    opened = threading.Event()
    monkeypatch.setattr(flushing, "_idle_threads", _SlowPool(opened))
    before = _flush_threads()
    closer = threading.Thread(target=first.close)
    closer.start()
    closer.join(10)
    # The thread cannot get back among the idle ones, yet close returned.
    assert not closer.is_alive()
    second = _timer(log, [])
    arming = threading.Thread(target=lambda: second.arm(time.monotonic() + 60))
    arming.start()
    arming.join(0.2)
    assert arming.is_alive()  # waits for the thread on its way back, starts none
    opened.set()
    arming.join(10)
    assert not arming.is_alive()
    second.close()
    assert _flush_threads() == before
    assert log == []
