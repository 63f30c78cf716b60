"""Executors: where step tasks run. The coordinator alone writes the ledger.

An executor takes :class:`~pipetrail.execution.task.StepTask` objects and returns
:class:`~pipetrail.execution.task.TaskResult` objects. Executors only ever write
content-addressed blobs to the store, which makes them safe to run anywhere:

* ``inline`` (:class:`InlineExecutor`): in the calling process, one step at a time;
* ``processes`` (:class:`~pipetrail.execution.executors.processes.ProcessExecutor`): a
  pool of local worker processes;
* ``dask`` (:class:`~pipetrail.execution.executors.dask_cluster.DaskExecutor`): the
  workers of a Dask distributed cluster, a local one made on demand or a scheduler at
  ``tcp://HOST:PORT``.

The last two are :class:`ConcurrentExecutor` s: the runner submits every node whose
upstream nodes are done and handles completions as they come
(:mod:`pipetrail.execution.scheduler`). They are chosen by configuration
(:func:`resolve_executor`), never by editing the pipeline. Imports nothing heavy: the
pool and Dask modules load when chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, runtime_checkable

from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from pipetrail.config import ProjectConfig
    from pipetrail.execution.executors.shipping import WorkerContext
    from pipetrail.execution.task import StepTask, TaskResult
    from pipetrail.store import ContentStore, SerializerRegistry

__all__ = [
    "EXECUTOR_NAMES",
    "ConcurrentExecutor",
    "Executor",
    "InlineExecutor",
    "executor_settings",
    "is_concurrent",
    "resolve_executor",
]

#: The executors a name in configuration or on the command line may choose.
EXECUTOR_NAMES = ("inline", "processes", "dask")


@runtime_checkable
class Executor(Protocol):
    """Runs step tasks.

    Contract: ``run`` never raises for errors in user code (they come back in
    ``TaskResult.error``); it may raise ``BaseException`` subclasses such as
    ``KeyboardInterrupt``. Implementations must only write to ``store``.
    """

    name: str

    def run(
        self, task: StepTask, *, store: ContentStore, registry: SerializerRegistry
    ) -> TaskResult:
        """Execute one task and return its result."""
        ...


@runtime_checkable
class ConcurrentExecutor(Executor, Protocol):
    """An executor that runs several tasks at once in other processes.

    Contract: :meth:`start` before anything is submitted, :meth:`shutdown` after (also
    when the run fails); both are called by the coordinator's thread only. A future
    never raises for the step's own failure, nor for a worker that died: the result's
    ``error`` is then a :class:`~pipetrail.errors.WorkerLostError`. Workers write only
    to the store described by the context.
    """

    def settings(self) -> dict[str, Any]:
        """What to record about the executor in the run (workers, address)."""
        ...

    def start(self, context: WorkerContext) -> None:
        """Start (or connect to) the workers.

        Raises:
            ExecutorError: they cannot be started or reached (names where).
        """
        ...

    def submit(self, task: StepTask) -> Future[TaskResult]:
        """Send one task to a worker; its result comes back through the future."""
        ...

    def shutdown(self) -> None:
        """Stop what :meth:`start` started; cancel what has not run."""
        ...


class InlineExecutor:
    """Runs each step in the calling process and thread, one at a time."""

    name = "inline"
    # Inputs are loaded by the coordinator, which is where the step runs.
    loads_stored_inputs = False

    def run(
        self, task: StepTask, *, store: ContentStore, registry: SerializerRegistry
    ) -> TaskResult:
        """Execute the task right here."""
        return _execute_task()(task, store, registry)


_EXECUTE: list[Callable[[StepTask, ContentStore, SerializerRegistry], TaskResult]] = []


def _execute_task() -> Callable[[StepTask, ContentStore, SerializerRegistry], TaskResult]:
    """:func:`~pipetrail.execution.task.execute_task`, imported on first use.

    A run whose steps are all cache hits executes nothing, so the module is not imported
    with this one; remembered here, since an import statement in
    :meth:`InlineExecutor.run` would cost an import lookup for every step.
    """
    if not _EXECUTE:
        from pipetrail.execution.task import execute_task

        _EXECUTE.append(execute_task)
    return _EXECUTE[0]


def is_concurrent(executor: object) -> TypeGuard[ConcurrentExecutor]:
    """Whether ``executor`` is a :class:`ConcurrentExecutor`.

    The same answer as ``isinstance``, which for a protocol looks up every member on
    the object (several times a run); the inline executor, which has none of
    :class:`ConcurrentExecutor`'s own, is answered without looking, unless an object of
    exactly that class was given attributes of its own.
    """
    if type(executor) is InlineExecutor and not vars(executor):
        return False
    return isinstance(executor, ConcurrentExecutor)


def executor_settings(executor: Executor) -> dict[str, Any]:
    """What the run record says about ``executor`` besides its name."""
    if is_concurrent(executor):
        return executor.settings()
    return {}


def resolve_executor(choice: Executor | str | None, config: ProjectConfig) -> Executor:
    """The executor a run uses: ``choice``, else the project's ``executor`` setting.

    A name is ``inline``, ``processes`` or ``dask``, optionally with a scheduler address
    (``dask=tcp://HOST:PORT``); ``[executor] workers`` and ``address`` in
    ``pipetrail.toml`` complete it.

    Raises:
        ProjectError: an unknown name, or an address given to an executor other than dask.
    """
    if choice is not None and not isinstance(choice, str):
        return choice
    text = config.executor if choice is None else choice
    name, _, address = text.partition("=")
    name = name.strip()
    settings = dict(config.executor_settings)
    if address.strip():
        settings["address"] = address.strip()
    if name not in EXECUTOR_NAMES:
        raise ProjectError(
            f"unknown executor {text!r}; choose one of inline, processes, dask or "
            "dask=tcp://HOST:PORT"
        )
    if name == "inline":
        return InlineExecutor()
    workers = settings.get("workers")
    if name == "processes":
        if address.strip():
            raise ProjectError(
                f"executor {text!r}: only the dask executor takes an address (dask=tcp://HOST:PORT)"
            )
        from pipetrail.execution.executors.processes import ProcessExecutor

        return ProcessExecutor(workers=workers, resources=settings.get("resources"))
    from pipetrail.execution.executors.dask_cluster import DaskExecutor

    return DaskExecutor(
        address=settings.get("address"),
        workers=workers,
        worker_resources=settings.get("resources"),
    )
