"""When a run's queued events reach the ledger: before a step's code, or within a bound.

A run queues its events (:func:`pipetrail.execution.run_state.emit`) and appends them
in one transaction at a flush. Before handing control to a step's code the runner asks
:func:`must_flush_before`:

* a step whose code has not yet run in this process, or ran slower than
  :data:`FAST_STEP_S` the last time, starts only once everything queued before it is
  committed: if it blocks, crashes the process or is killed, the record already holds
  every step that completed before it and its own start;
* a step whose code ran faster than :data:`FAST_STEP_S` the last time it ran (in this
  run or an earlier one of this process: :data:`PROCESS_STEP_TIMES`, keyed by the code
  fingerprint, so changed code starts with no history) may start
  with the events still queued, as long as the oldest of them is younger than
  :data:`MAX_DELAY_S` and fewer than :data:`MAX_PENDING` are queued. While its code
  runs a :class:`FlushTimer` is armed: should it run past the deadline, the timer's
  thread appends the queued events on a connection of its own. So no event waits longer
  than about :data:`MAX_DELAY_S` (plus one commit), whatever the step does.

A chain of many trivial steps thus costs one transaction per batch of steps instead of one
per step, and a kill -9 loses at most the last :data:`MAX_DELAY_S` of records of fast
steps (the run still shows as crashed: ``run.started`` is appended before any step). See
docs/adr/0017-batched-ledger-writes.md and, for the memory across runs,
docs/adr/0031-step-speed-across-runs.md.

The small objects steps store are batched the same way: during a run the local store
holds them in memory (:func:`hold_small_writes`) and every flush commits them, in one pack
transaction, just before it appends the events that name them (:func:`commit_small_writes`),
so an object is always committed before a record points at it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from pipetrail.ledger import EventDraft
    from pipetrail.ledger.ledger import Ledger
    from pipetrail.store import ContentStore

__all__ = [
    "FAST_STEP_S",
    "MAX_DELAY_S",
    "MAX_PENDING",
    "PROCESS_STEP_TIMES",
    "FlushTimer",
    "StepTimes",
    "commit_small_writes",
    "hold_small_writes",
]

# A step whose code returned within this time is "fast": the next call of it may start
# with events still queued.
FAST_STEP_S = 0.005
# The longest an event waits in the queue (the timer appends it then).
MAX_DELAY_S = 0.05
# At most this many queued events: a flush comes before the next step's code beyond it.
MAX_PENDING = 2000
# At most this many fast steps are remembered; beyond it the memory starts again (empty).
MAX_REMEMBERED = 10_000


class StepTimes:
    """The steps whose code ran fast the last time it ran.

    Steps are keyed by what the caller chooses: the runs of a process share
    :data:`PROCESS_STEP_TIMES`, keyed by each step's code fingerprint digest.
    """

    def __init__(self) -> None:
        self._fast: set[Hashable] = set()

    def record(self, step_key: Hashable, seconds: float) -> None:
        """Note how long one call of a step's code took (executor included)."""
        if seconds <= FAST_STEP_S:
            if len(self._fast) >= MAX_REMEMBERED:
                self._fast.clear()  # forgetting only costs a flush before the next call
            self._fast.add(step_key)
        else:
            self._fast.discard(step_key)

    def is_fast(self, step_key: Hashable) -> bool:
        """Whether the step's last recorded call was fast."""
        return step_key in self._fast


# The steps whose code ran fast, across the runs of this process (set and read from any
# thread: one set operation at a time, under the GIL).
PROCESS_STEP_TIMES = StepTimes()


def must_flush_before(
    times: StepTimes, step_key: Hashable, pending: int, since: float | None
) -> bool:
    """Whether the queued events must be committed before the step's code starts.

    Args:
        times: the step times to consult.
        step_key: the key of the step about to run in ``times``.
        pending: how many events are queued.
        since: ``time.monotonic()`` when the oldest of them was queued (None: none are).
    """
    if pending == 0 or since is None:
        return False
    if not times.is_fast(step_key) or pending >= MAX_PENDING:
        return True
    return time.monotonic() - since >= MAX_DELAY_S


class FlushTimer:
    """Appends the queued events from a thread of its own once they are due.

    Armed only while a step's code runs with events queued; the main thread does not touch
    the queue between :meth:`arm` and :meth:`disarm`, and :meth:`disarm` waits for a flush
    in progress, so the queue has one user at a time. On the first :meth:`arm` the timer
    takes a thread of the process's idle flush threads (or starts one); its ledger
    connection is opened there when it first appends, and :meth:`close` returns once the
    thread has closed that connection and gone back to the idle ones (a process running
    many short runs starts no thread per run).

    Args:
        open_ledger: opens a new ledger connection (called in the timer's thread).
        take: returns the queued events and empties the queue (called under the lock).
        put_back: puts events back at the front of the queue when appending them failed;
            the main thread's next flush then appends them (and reports a failure).
    """

    def __init__(
        self,
        open_ledger: Callable[[], Ledger],
        take: Callable[[], list[EventDraft]],
        put_back: Callable[[list[EventDraft]], None],
    ) -> None:
        self._open_ledger = open_ledger
        self._take = take
        self._put_back = put_back
        self._cond = threading.Condition(threading.Lock())
        self._deadline: float | None = None
        self._idle = False  # the thread waits for an arm() (and needs waking)
        self._closing = False
        self._done: threading.Event | None = None  # set when its thread has let go
        self._ledger: Ledger | None = None
        self.flushes = 0

    def arm(self, deadline: float) -> None:
        """Append the queued events at ``deadline`` (``time.monotonic()``) unless disarmed."""
        with self._cond:
            if self._done is None:
                self._done = threading.Event()
                _in_flush_thread(self._loop, self._done)
            self._deadline = deadline
            if self._idle:
                # Otherwise the thread is waiting for a deadline, and finds this one when
                # it wakes (the deadline only moves later: to the next queue's).
                self._cond.notify()

    def disarm(self) -> None:
        """Stop waiting; returns once a flush the timer started has finished."""
        with self._cond:
            self._deadline = None

    def close(self) -> None:
        """Stop the thread and close its connection (the queue is left as it is).

        Waits for the thread only when it opened a connection (the timer fired): that
        connection is closed by then. A timer that never fired returns at once; its
        thread goes back to the idle ones on its own, and the next timer of the process
        to need a thread waits for it there rather than start another (a run of fast
        steps then never waits for the thread to be scheduled at its end).
        """
        with self._cond:
            self._closing = True
            self._deadline = None
            self._cond.notify()
            opened = self._ledger is not None  # set only under the lock, by a flush
        done, self._done = self._done, None
        if done is None:
            return
        if opened:
            done.wait()
        else:
            with _returning_lock:  # never the idle threads' lock: a thread may hold it
                _returning.append(done)

    def _loop(self) -> None:
        try:
            with self._cond:
                while not self._closing:
                    if self._deadline is None:
                        self._idle = True
                        self._cond.wait()
                        self._idle = False
                        continue
                    left = self._deadline - time.monotonic()
                    if left > 0:
                        self._cond.wait(left)
                        continue
                    self._deadline = None
                    self._flush()  # under the lock: disarm() waits for it
        finally:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None

    def _flush(self) -> None:
        drafts = self._take()
        if not drafts:
            return
        try:
            if self._ledger is None:
                self._ledger = self._open_ledger()
            self._ledger.append(drafts, new_artifacts_only=True)
        except Exception:  # noqa: BLE001 - the main thread's next flush meets the failure again
            self._put_back(drafts)
            return
        self.flushes += 1


class _FlushThread:
    """A daemon thread that serves one flush timer after another (see :class:`FlushTimer`)."""

    def __init__(self) -> None:
        self._ready = threading.Semaphore(0)
        self._job: tuple[Callable[[], None], threading.Event] | None = None
        threading.Thread(target=self._run, name="pipetrail-ledger-flush", daemon=True).start()

    def give(self, job: Callable[[], None], done: threading.Event) -> None:
        """Run ``job``, then set ``done`` once this thread is idle again."""
        self._job = (job, done)
        self._ready.release()

    def _run(self) -> None:
        while True:
            self._ready.acquire()
            if self._job is None:
                continue
            (job, done), self._job = self._job, None
            try:
                job()
            finally:
                with _idle_lock:
                    _idle_threads.append(self)
                done.set()


_idle_threads: list[_FlushThread] = []
# Set by each thread once back among the idle ones, for timers closed without waiting.
_returning: list[threading.Event] = []
_idle_lock = threading.Lock()
_returning_lock = threading.Lock()


def _forget_parent_threads() -> None:
    # A forked child has none of its parent's threads (it starts its own), and the lock
    # may have been held by one of them at the fork.
    global _idle_lock, _returning_lock
    _idle_threads.clear()
    _returning.clear()
    _idle_lock = threading.Lock()
    _returning_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_threads)


def _in_flush_thread(job: Callable[[], None], done: threading.Event) -> None:
    """Run ``job`` in an idle flush thread, or in a new one; ``done`` is set after it.

    A thread still on its way back to the idle ones (its timer closed without waiting)
    is waited for rather than another started.
    """
    while True:
        with _idle_lock:
            thread = _idle_threads.pop() if _idle_threads else None
        if thread is not None:
            break
        with _returning_lock:
            returning = _returning[:]
            _returning[:] = [e for e in returning if not e.is_set()]
        if not returning:
            break
        for event in returning:  # a set one: its thread is idle now, found next time
            event.wait()
    (thread or _FlushThread()).give(job, done)


def hold_small_writes(store: ContentStore) -> None:
    """Have ``store`` keep small objects in memory until the next flush, if it can.

    See :meth:`pipetrail.store.LocalStore.hold_small_writes`; other stores write at once.
    """
    hold = getattr(store, "hold_small_writes", None)
    if hold is not None:
        hold()


def commit_small_writes(store: ContentStore, *, release: bool = False) -> None:
    """Commit the small objects ``store`` holds in memory (a no-op when it holds none)."""
    commit = getattr(store, "commit_small_writes", None)
    if commit is not None:
        commit(release=release)
