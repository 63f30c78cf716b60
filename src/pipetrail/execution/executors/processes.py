"""The ``processes`` executor: a pool of local worker processes.

Each worker is a process started with ``spawn`` (safe with threads in the coordinator
and the same on every platform), holding one pipe to the coordinator; it runs one task
at a time through :func:`~pipetrail.execution.executors.shipping.run_shipped`. A
dispatcher thread hands queued tasks to idle workers and watches each busy worker's
pipe and process: a result completes the task's future; a process that ends without
one (a crash, ``os._exit``, the out-of-memory killer) completes it with a
:class:`~pipetrail.errors.WorkerLostError` naming the step and the exit code, and is
replaced by a fresh worker. Unlike ``concurrent.futures.ProcessPoolExecutor``, one dead
worker fails only the task it was running, never the whole pool.

Steps are admitted by their resource requests (see
:mod:`pipetrail.execution.executors.capacity`): a queued task starts only when its
request, added to those of the tasks executing, fits in the pool's capacity; the first
queued task that fits goes first. A step asking for more than the whole capacity is
refused when submitted, with a :class:`~pipetrail.errors.ResourceError` as its result.

Workers ignore SIGINT: Ctrl-C is the coordinator's to handle (it ends the run and shuts
the pool down).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ExecutorError, WorkerLostError
from pipetrail.execution.executors.capacity import (
    configured_capacity,
    describe,
    machine_capacity,
    refused,
    shortfall,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from pipetrail.execution.executors.shipping import WorkerContext
    from pipetrail.execution.task import StepTask, TaskResult
    from pipetrail.store import ContentStore, SerializerRegistry

__all__ = ["ProcessExecutor"]


def _worker_main(conn: Connection, context: WorkerContext) -> None:
    """A worker process: run each task received until an empty message arrives."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from pipetrail.execution.executors.shipping import run_shipped

    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        if not data:
            return
        conn.send_bytes(run_shipped(context, data, {}))


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    job: tuple[Future[TaskResult], str, dict[str, float]] | None = None  # future, step, request


class ProcessExecutor:
    """Runs steps in a pool of local worker processes.

    Args:
        workers: how many processes (default: the number of CPUs).
        resources: the pool's capacity (``cpu``, ``memory``, ``gpu``), instead of the
            machine's (see :mod:`pipetrail.execution.executors.capacity`).

    Raises:
        ExecutorError: ``workers`` is not a whole number >= 1.
        ProjectError: ``resources`` names an unknown resource or a bad amount.
    """

    name = "processes"
    #: Its workers load large inputs from the store themselves (see
    #: :mod:`pipetrail.execution.executors.shipping`).
    loads_stored_inputs = True

    def __init__(self, workers: int | None = None, *, resources: Any = None) -> None:
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ExecutorError(f"the processes executor needs workers >= 1, got {workers!r}")
        self.workers = workers or os.cpu_count() or 1
        self._declared = configured_capacity(resources)
        self.capacity = {**machine_capacity(self.workers), **self._declared}
        self._used: dict[str, float] = {}
        self._context: WorkerContext | None = None
        self._pool: list[_Worker] = []
        self._queue: deque[tuple[Future[TaskResult], bytes, str, dict[str, float]]] = deque()
        self._lock = threading.Lock()
        self._wake_r: Connection | None = None
        self._wake_w: Connection | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers})"

    def settings(self) -> dict[str, Any]:
        """The number of worker processes, and the pool's capacity when it is declared."""
        if not self._declared:
            return {"workers": self.workers}
        return {"workers": self.workers, "capacity": describe(self.capacity)}

    # -- lifecycle -------------------------------------------------------------------
    def start(self, context: WorkerContext) -> None:
        """Start the worker processes and the dispatcher thread."""
        self._context = context
        self._stopping = False
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        try:
            self._pool = [self._spawn() for _ in range(self.workers)]
        except OSError as exc:
            self.shutdown()
            raise ExecutorError(f"cannot start the worker processes: {exc}") from None
        self._thread = threading.Thread(
            target=self._dispatch, name="pipetrail-process-pool", daemon=True
        )
        self._thread.start()

    def _spawn(self) -> _Worker:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_worker_main, args=(child, self._context), name="pipetrail-worker"
        )
        process.daemon = True
        process.start()
        child.close()
        return _Worker(process, parent)

    def shutdown(self) -> None:
        """Stop the workers (the tasks still queued are cancelled)."""
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            queued, self._queue = list(self._queue), deque()
        for future, *_ in queued:
            future.cancel()
        for worker in self._pool:
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(b"")
        for worker in self._pool:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=2)
            worker.conn.close()
            if worker.job is not None and not worker.job[0].done():
                worker.job[0].cancel()
        self._pool = []
        for conn in (self._wake_r, self._wake_w):
            if conn is not None:
                conn.close()
        self._wake_r = self._wake_w = None

    # -- tasks -----------------------------------------------------------------------
    def submit(self, task: StepTask) -> Future[TaskResult]:
        """Queue one task for the next idle worker.

        A step requesting more than the pool's whole capacity comes back at once with
        a :class:`~pipetrail.errors.ResourceError`.

        Raises:
            ExecutorError: the task cannot be sent (see ``encode_task``), or the pool
                was not started.
        """
        from pipetrail.execution.executors.shipping import encode_task

        if self._thread is None:
            raise ExecutorError("the processes executor was not started")
        future: Future[TaskResult] = Future()
        need = {"cpu": 1.0, **task.resources}  # a step declaring no cpu takes one
        missing = shortfall(need, self.capacity)
        if missing:
            future.set_running_or_notify_cancel()
            future.set_result(
                refused(
                    task.step_name,
                    f"it requests {', '.join(missing)}: more than the processes executor's "
                    f"whole pool ({describe(self.capacity)}); request less, or declare "
                    "what the machine has in [executor.resources] of pipetrail.toml",
                )
            )
            return future
        data = encode_task(task)
        with self._lock:
            self._queue.append((future, data, task.step_name, need))
        self._wake()
        return future

    def run(
        self, task: StepTask, *, store: ContentStore, registry: SerializerRegistry
    ) -> TaskResult:
        """Execute one task on a worker and wait for it."""
        return self.submit(task).result()

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send_bytes(b"x")

    def _dispatch(self) -> None:
        from pipetrail.execution.executors.shipping import decode_result

        wake = self._wake_r
        if wake is None:  # shut down before the thread started
            return
        while not self._stopping:
            with self._lock:
                for worker in self._pool:
                    if worker.job is None and self._queue:
                        picked = self._take_fitting()
                        if picked is None:
                            break  # what is queued waits for capacity to be freed
                        future, data, step, need = picked
                        worker.job = (future, step, need)
                        self._reserve(need, 1)
                        # A dead process fails to take it: its sentinel says so below.
                        with contextlib.suppress(OSError):
                            worker.conn.send_bytes(data)
            watched: list[Any] = [wake]
            for worker in self._pool:
                watched.extend((worker.conn, worker.process.sentinel))
            ready = wait(watched, timeout=1.0)
            if wake in ready:
                with contextlib.suppress(OSError, EOFError):
                    while wake.poll():
                        wake.recv_bytes()
            for index, worker in enumerate(self._pool):
                if worker.conn in ready and worker.job is not None:
                    reply: bytes | None = None
                    with contextlib.suppress(EOFError, OSError):
                        reply = worker.conn.recv_bytes()
                    if reply is not None:
                        future, _, need = worker.job
                        worker.job = None
                        self._reserve(need, -1)
                        try:
                            future.set_result(decode_result(reply))
                        except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable value
                            future.set_exception(exc)
                        continue
                if worker.process.sentinel in ready and not worker.process.is_alive():
                    self._replace(index, worker)

    def _take_fitting(self) -> tuple[Future[TaskResult], bytes, str, dict[str, float]] | None:
        """Remove and return the first queued task whose request fits now (lock held)."""
        free = {key: amount - self._used.get(key, 0.0) for key, amount in self.capacity.items()}
        for index, entry in enumerate(self._queue):
            if entry[0].cancelled():
                continue
            if not shortfall(entry[3], free):
                del self._queue[index]
                if entry[0].set_running_or_notify_cancel():
                    return entry
                return self._take_fitting()
        # Cancelled futures are dropped; what is left waits.
        self._queue = deque(entry for entry in self._queue if not entry[0].cancelled())
        return None

    def _reserve(self, need: dict[str, float], sign: int) -> None:
        for key, amount in need.items():
            self._used[key] = self._used.get(key, 0.0) + sign * amount

    def _replace(self, index: int, worker: _Worker) -> None:
        """A worker process ended: fail its task, start another in its place."""
        from pipetrail.execution.task import TaskResult

        worker.process.join(timeout=1)
        code = worker.process.exitcode
        worker.conn.close()
        if worker.job is not None:
            future, step, need = worker.job
            worker.job = None
            self._reserve(need, -1)
            error = WorkerLostError(
                f"the worker process running step {step!r} died (exit code {code}) "
                "before returning; nothing it stored is recorded"
            )
            future.set_result(TaskResult(error=error, traceback=f"WorkerLostError: {error}\n"))
        if not self._stopping:
            try:
                self._pool[index] = self._spawn()
            except OSError:
                del self._pool[index]
