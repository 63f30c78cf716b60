"""The ``dask`` executor: steps run on the workers of a Dask distributed cluster.

With no address, a ``LocalCluster`` of worker processes (one thread each, so one step
per process at a time, as on the ``processes`` executor) is made when the run starts
and closed when it ends. With ``address="tcp://HOST:PORT"`` the executor connects to
that scheduler; its workers need pipetrail (and what the steps import) installed and
must reach the store. Only this module imports ``dask``: it is the optional extra
``pipetrail[dask]``, and a missing install is reported with the line that installs it.

Every task is the same plain function,
:func:`~pipetrail.execution.executors.shipping.run_shipped`, given the encoded task, so
Dask never has to pickle user code itself. A worker that dies while running a step is
reported by Dask as ``KilledWorker``; the local cluster is made with
``distributed.scheduler.allowed-failures`` at 0 so the step's own retry policy decides
(a remote scheduler applies its own setting first). The result comes back as a
:class:`~pipetrail.errors.WorkerLostError`, like on the process pool. Backend errors
are translated here (:func:`_dask_errors`); callers never see a Dask exception.

:meth:`DaskExecutor.submit_chained` sends a task whose inputs are the results of tasks
still in flight (their Dask futures are its arguments), so Dask starts it when they
finish without a round trip through the coordinator (see
:mod:`pipetrail.execution.scheduler` for which steps are chained, and
:func:`~pipetrail.execution.executors.shipping.run_chained` for what the worker does).

A step's resource request is submitted as Dask worker resources (``cpu``, ``memory``,
``gpu``: see :mod:`pipetrail.execution.executors.capacity`), so Dask runs it only on a
worker that declares enough and never runs more at once than the worker has. Before
such a task is submitted the scheduler's workers are read (at most every
:data:`WORKERS_READ_AGAIN_S`): a step no worker can satisfy comes back at once with a
:class:`~pipetrail.errors.ResourceError`, where Dask would keep it waiting for ever.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ExecutorError, WorkerLostError
from pipetrail.execution.executors.capacity import (
    configured_capacity,
    describe,
    memory_bytes,
    refused,
    shortfall,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pipetrail.execution.executors.shipping import WorkerContext
    from pipetrail.execution.task import StepTask, TaskResult
    from pipetrail.store import ContentStore, SerializerRegistry

__all__ = ["DaskExecutor"]

_INSTALL = "pip install 'pipetrail[dask]'"
#: Seconds to wait for a scheduler at an address before giving up.
CONNECT_TIMEOUT_S = 10.0
#: Seconds the scheduler's list of workers and their resources is reused.
WORKERS_READ_AGAIN_S = 2.0
#: Seconds :meth:`DaskExecutor.cancel` waits for the Dask client to take a cancellation
#: (on Ctrl-C, or below a failed step) before going on without it: an unresponsive
#: scheduler or client must not hang the interrupt. After such a wait, closing the client
#: and the local cluster at the run's end is bounded by it too.
CANCEL_TIMEOUT_S = 5.0


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ExecutorError(
            f"the dask executor needs dask.distributed, which is not installed; run {_INSTALL}"
        ) from None
    return distributed


def _run_on_worker(context: WorkerContext, data: bytes) -> bytes:
    """What each Dask task runs: one shipped step, with the worker's address recorded."""
    from pipetrail.execution.executors.shipping import run_shipped

    where: dict[str, Any] = {}
    with contextlib.suppress(ValueError, ImportError):
        from distributed import get_worker

        where["address"] = get_worker().address
    return run_shipped(context, data, where)


def _run_chained_on_worker(context: WorkerContext, data: bytes, upstream: list[bytes]) -> bytes:
    """What each chained Dask task runs: ``upstream`` are its upstream tasks' results."""
    from pipetrail.execution.executors.shipping import run_chained

    where: dict[str, Any] = {}
    with contextlib.suppress(ValueError, ImportError):
        from distributed import get_worker

        where["address"] = get_worker().address
    return run_chained(context, data, upstream, where)


class DaskExecutor:
    """Runs steps on a Dask distributed cluster.

    Args:
        address: the scheduler (``tcp://HOST:PORT``); None makes a local cluster.
        workers: worker processes of the local cluster (default: the number of CPUs).
        client: an open ``distributed.Client`` to use as it is (not closed here).
        worker_resources: what each worker of the local cluster declares (``cpu``,
            ``memory``, ``gpu``); default: its share of the machine's CPUs and memory.

    Raises:
        ExecutorError: ``workers`` is not a whole number >= 1.
        ProjectError: ``worker_resources`` names an unknown resource or a bad amount.
    """

    name = "dask"
    #: Its workers load large inputs from the store themselves (see
    #: :mod:`pipetrail.execution.executors.shipping`).
    loads_stored_inputs = True

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        client: Any = None,
        worker_resources: Any = None,
    ) -> None:
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ExecutorError(f"the dask executor needs workers >= 1, got {workers!r}")
        self.address = address
        self.workers = workers
        self.worker_resources = configured_capacity(worker_resources)
        self._known_workers: tuple[float, list[dict[str, float]]] | None = None
        self._given = client
        self._client: Any = client
        self._cluster: Any = None
        self._context: WorkerContext | None = None
        self._context_future: Any = None
        # Results are collected by one thread from a Dask ``as_completed`` (cheaper than a
        # callback per future, which waits on the client's event loop for each result).
        self._completed: Any = None
        # Dask key -> (the step's future, its name, whether it is chained).
        self._waiting: dict[str, tuple[Future[TaskResult], str, bool]] = {}
        # The Dask future of each step's future in flight (chained tasks wait on them).
        self._remotes: dict[Future[TaskResult], Any] = {}
        self._lock = threading.Lock()
        self._added = threading.Event()
        self._stop = threading.Event()
        self._collector: threading.Thread | None = None
        self._unresponsive = False  # a cancellation was not taken in time

    def __repr__(self) -> str:
        where = self.address or ("a given client" if self._given else "a local cluster")
        return f"DaskExecutor({where})"

    def settings(self) -> dict[str, Any]:
        """The scheduler address, or the local cluster's size."""
        if self._given is not None:
            return {"address": str(self._given.scheduler.address), "cluster": "given"}
        if self.address is not None:
            return {"address": self.address, "cluster": "remote"}
        found: dict[str, Any] = {"cluster": "local", "workers": self._local_workers()}
        if self.worker_resources:  # declared: recorded (the machine's share is not)
            found["worker_resources"] = describe(self._local_resources())
        return found

    def _local_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def _local_resources(self) -> dict[str, float]:
        """What each worker of a local cluster declares (module docstring)."""
        workers = self._local_workers()
        share: dict[str, float] = {"cpu": max(1.0, (os.cpu_count() or 1) / workers)}
        memory = memory_bytes()
        if memory is not None:
            share["memory"] = float(memory // workers)
        return {**share, **self.worker_resources}

    # -- lifecycle -------------------------------------------------------------------
    def connect(self) -> Any:
        """Connect to the scheduler, or make the local cluster, once; return the client.

        Several runs can share one cluster through it (a sweep gives each run its own
        ``DaskExecutor(client=...)``); :meth:`shutdown` of this executor closes it.

        Raises:
            ExecutorError: dask is not installed, or the scheduler cannot be reached
                (names the address).
        """
        distributed = _import_distributed()
        if self._client is None:
            if self.address is not None:
                try:
                    self._client = distributed.Client(
                        self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False
                    )
                except (OSError, TimeoutError, ValueError) as exc:
                    raise ExecutorError(
                        f"cannot reach the Dask scheduler at {self.address} ({type(exc).__name__}:"
                        f" {exc}); check that it is running and the address is right, or run "
                        "with --executor processes"
                    ) from None
            else:
                self._cluster, self._client = _local_cluster(
                    distributed, self._local_workers(), self._local_resources()
                )
        return self._client

    def start(self, context: WorkerContext) -> None:
        """Connect to the scheduler, or make the local cluster (see :meth:`connect`).

        Raises:
            ExecutorError: dask is not installed, or the scheduler cannot be reached
                (names the address).
        """
        distributed = _import_distributed()
        self._context = context
        self.connect()
        with _dask_errors(self):
            # Sent to the workers once; each task refers to it.
            self._context_future = self._client.scatter(context, broadcast=True, hash=False)
            self._completed = distributed.as_completed(
                [], loop=self._client.loop, with_results=True, raise_errors=False
            )
        self._stop.clear()
        self._collector = threading.Thread(
            target=self._collect, name="pipetrail-dask-results", daemon=True
        )
        self._collector.start()

    def _collect(self) -> None:
        """Complete each submitted task's future as its Dask future finishes."""
        completed = self._completed
        while not self._stop.is_set():
            try:
                remote, value = next(completed)
            except StopIteration:  # nothing in flight: wait for the next submission
                self._added.wait(timeout=0.1)
                self._added.clear()
                continue
            with self._lock:
                done, step, chained = self._waiting.pop(remote.key, (None, "", False))
                if done is not None:
                    self._remotes.pop(done, None)
            if done is not None:
                done.set_result(_result(remote, value, step, chained=chained))

    def shutdown(self) -> None:
        """Close the client and the local cluster this executor made.

        Bounded by :data:`CANCEL_TIMEOUT_S` when a cancellation was not taken in time or
        the client has lost its scheduler; a close still going on then finishes on a
        daemon thread (a local cluster's worker processes are stopped by it, or at the
        latest when this process exits).
        """
        self._stop.set()
        self._added.set()
        if self._collector is not None:
            self._collector.join(timeout=5)
            self._collector = None
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._remotes = {}
        for done, *_ in waiting.values():
            done.cancel()
        self._completed = None
        self._context_future = None
        client, cluster = self._client, self._cluster
        # After a cancellation the client did not take in time, or once it has lost its
        # scheduler, the closes are bounded: they would wait on a scheduler that does
        # not answer.
        lost = client is not None and client.status != "running"
        timeout = CANCEL_TIMEOUT_S if self._unresponsive or lost else None
        if cluster is not None and _scheduler_closed(cluster):
            # Nothing left to shut down there: asking would wait out Dask's connect
            # timeout (30 s) before the workers are closed.
            cluster.shutdown_scheduler = False
        if self._given is None and client is not None:
            _bounded(client.close, timeout)
            self._client = None
        if cluster is not None:
            _bounded(cluster.close, timeout)
            self._cluster = None

    # -- tasks -----------------------------------------------------------------------
    def submit(self, task: StepTask) -> Future[TaskResult]:
        """Send one task to the cluster.

        Raises:
            ExecutorError: the executor was not started, or the task cannot be sent.
        """
        from pipetrail.execution.executors.shipping import encode_task

        if self._client is None:
            raise ExecutorError("the dask executor was not started")
        done: Future[TaskResult] = Future()
        done.set_running_or_notify_cancel()
        if task.resources:
            problem = self._unsatisfiable(task.resources)
            if problem is not None:
                done.set_result(refused(task.step_name, problem))
                return done
        data = encode_task(task)
        self._send(done, task, _run_on_worker, data)
        return done

    def submit_chained(
        self, task: StepTask, upstream: list[Future[TaskResult]]
    ) -> Future[TaskResult] | None:
        """Send a task that waits on the cluster for the steps of ``upstream`` to finish.

        The task's inputs name outputs of ``upstream``
        (:class:`~pipetrail.execution.executors.shipping.ChainedInput`, by position):
        Dask starts it as soon as they are done, on the worker that holds their results
        when it can, without a round trip through the coordinator. Its result's error is
        a :class:`~pipetrail.execution.executors.shipping.ChainBroken` when it did not
        run its step (an upstream step failed...); see
        :func:`~pipetrail.execution.executors.shipping.run_chained`.

        Returns:
            None when it cannot be chained (an upstream future is no longer in flight,
            the step cannot be sent, or no worker has the resources it requests): the
            coordinator submits it the usual way once its inputs are done.

        Raises:
            ExecutorError: the executor was not started.
        """
        from pipetrail.execution.executors.shipping import encode_task

        if self._client is None:
            raise ExecutorError("the dask executor was not started")
        with self._lock:
            remotes = [self._remotes.get(future) for future in upstream]
        if any(remote is None for remote in remotes):
            return None
        if task.resources and self._unsatisfiable(task.resources) is not None:
            return None
        try:
            data = encode_task(task)
        except ExecutorError:
            return None
        done: Future[TaskResult] = Future()
        done.set_running_or_notify_cancel()
        self._send(done, task, _run_chained_on_worker, data, remotes)
        return done

    def cancel(self, futures: list[Future[TaskResult]]) -> list[str]:
        """Cancel chained tasks whose steps must not start (see :meth:`submit_chained`).

        A task already running finishes on its worker, and its result is dropped. The
        cancellation waits at most :data:`CANCEL_TIMEOUT_S` for the Dask client.

        Returns:
            The steps whose tasks the cluster was not told to cancel: the client did
            not take the cancellation in time, refused it, or has lost its scheduler.
            Such a task may still run its step on the cluster; its result is dropped.
        """
        with self._lock:
            found = [
                (self._remotes[f], self._waiting.get(self._remotes[f].key, (None, "?"))[1])
                for f in futures
                if f in self._remotes
            ]
        if not found:
            return []
        steps = [step for _, step in found]
        client = self._client
        if client is None or client.status != "running":
            return steps
        remotes = [remote for remote, _ in found]
        if _bounded(lambda: client.cancel(remotes), CANCEL_TIMEOUT_S):
            return []
        self._unresponsive = True
        return steps

    def _send(
        self,
        done: Future[TaskResult],
        task: StepTask,
        function: Any,
        data: bytes,
        upstream: list[Any] | None = None,
    ) -> None:
        """Submit one Dask task whose result completes ``done``."""
        extra = () if upstream is None else (upstream,)
        with _dask_errors(self):
            remote = self._client.submit(
                function,
                self._context_ref(),
                data,
                *extra,
                pure=False,
                retries=0,
                resources=dict(task.resources) or None,
            )
            with self._lock:
                self._waiting[remote.key] = (done, task.step_name, upstream is not None)
                self._remotes[done] = remote
            self._completed.add(remote)
        self._added.set()

    def _unsatisfiable(self, request: dict[str, float]) -> str | None:
        """Why no worker can run a step requesting ``request``; None when one can."""
        now = time.monotonic()
        if self._known_workers is None or now - self._known_workers[0] > WORKERS_READ_AGAIN_S:
            with _dask_errors(self):
                info = self._client.scheduler_info(n_workers=-1)
            declared = [
                {str(k): float(v) for k, v in (worker.get("resources") or {}).items()}
                for worker in info.get("workers", {}).values()
            ]
            self._known_workers = (now, declared)
        declared = self._known_workers[1]
        if any(not shortfall(request, has) for has in declared):
            return None
        where = self.address or ("a local cluster" if self._given is None else "the given cluster")
        kinds = sorted({describe(has) if has else "no resources" for has in declared})
        have = "; ".join(kinds) if kinds else "no workers at all"
        return (
            f"it requests {describe(request)}, and no worker of the Dask cluster ({where}) "
            f"has that much (the workers declare: {have}); start workers that declare it "
            '(dask worker SCHEDULER --resources "cpu=4 memory=17179869184 gpu=1"), set '
            "[executor.resources] for a local cluster, or request less"
        )

    def _context_ref(self) -> Any:
        """The scattered worker context, sent again when the cluster lost it.

        A worker that dies takes its replica with it; when it held the only one (the
        other workers were restarting when it was scattered), later tasks would fail
        with lost dependencies, so the context is scattered anew.
        """
        found = self._context_future
        if found is None or found.status in ("lost", "error", "cancelled"):
            found = self._client.scatter(self._context, broadcast=True, hash=False)
            self._context_future = found
        return found

    def run(
        self, task: StepTask, *, store: ContentStore, registry: SerializerRegistry
    ) -> TaskResult:
        """Execute one task on the cluster and wait for it."""
        return self.submit(task).result()


def _bounded(call: Callable[[], object], timeout: float | None) -> bool:
    """Run ``call``, waiting at most ``timeout`` seconds (None: for ever) for it to return.

    A call that does not return in time goes on on a daemon thread, and is left to it.

    Returns:
        Whether it returned in time without raising.
    """
    if timeout is None:
        with contextlib.suppress(Exception):  # the Dask client raises many kinds
            call()
            return True
        return False
    ended = threading.Event()
    returned: list[bool] = []

    def target() -> None:
        try:
            with contextlib.suppress(Exception):  # the Dask client raises many kinds
                call()
                returned.append(True)
        finally:
            ended.set()

    threading.Thread(target=target, name="pipetrail-dask-bounded", daemon=True).start()
    return ended.wait(timeout) and bool(returned)


def _scheduler_closed(cluster: Any) -> bool:
    """Whether the scheduler of a local cluster has closed (or is closing) already."""
    from distributed.core import Status

    scheduler = getattr(cluster, "scheduler", None)
    return scheduler is not None and scheduler.status in (Status.closing, Status.closed)


def _local_cluster(
    distributed: Any, workers: int, resources: dict[str, float] | None = None
) -> tuple[Any, Any]:
    import dask

    # A worker that dies fails its task at once: the step's retry policy decides.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            # Any free port: a fixed one (8787) fails when another cluster holds it.
            dashboard_address=":0",
            silence_logs=40,
            resources=resources,
        )
    return cluster, distributed.Client(cluster, set_as_default=False)


def _result(remote: Any, value: Any, step: str, *, chained: bool = False) -> TaskResult:
    """The step's result from a finished Dask task; a lost worker as the step's error.

    ``value`` is what the task returned, or for a task in error ``(type, exception,
    traceback)``. A chained task that failed for another reason than its own worker
    dying did not run its step (an upstream task failed): its error is then a
    :class:`~pipetrail.execution.executors.shipping.ChainBroken`.
    """
    from distributed.scheduler import KilledWorker

    from pipetrail.execution.executors.shipping import ChainBroken, decode_result
    from pipetrail.execution.task import TaskResult

    status = remote.status
    error: Exception
    if chained and status != "finished":
        problem = value[1] if isinstance(value, tuple) and len(value) == 3 else value
        if not (isinstance(problem, KilledWorker) and problem.task == remote.key):
            return TaskResult(error=ChainBroken(f"the chained step {step!r} did not run"))
    if status == "finished":
        try:
            return decode_result(value)
        except Exception as exc:  # noqa: BLE001 - e.g. a value of a class not importable here
            error = ExecutorError(
                f"the result of step {step!r} could not be read back from its Dask worker: "
                f"{type(exc).__name__}: {exc}"
            )
    else:
        problem = value[1] if isinstance(value, tuple) and len(value) == 3 else value
        if isinstance(problem, KilledWorker):
            error = WorkerLostError(
                f"the Dask worker running step {step!r} died before returning ({problem}); "
                "nothing it stored is recorded"
            )
        else:
            error = ExecutorError(
                f"the Dask cluster could not run step {step!r} ({status}): "
                f"{type(problem).__name__}: {problem}"
            )
    return TaskResult(error=error, traceback=f"{type(error).__name__}: {error}\n")


@contextlib.contextmanager
def _dask_errors(executor: DaskExecutor) -> Iterator[None]:
    """Translate what the Dask client raises into :class:`ExecutorError`."""
    try:
        yield
    except ExecutorError:
        raise
    except Exception as exc:  # noqa: BLE001 - the Dask client raises many kinds
        raise ExecutorError(f"{executor!r}: {type(exc).__name__}: {exc}") from None
