"""Executors: where step tasks run. The coordinator alone writes the ledger.

An executor takes :class:`~pipetrail.execution.task.StepTask` objects and returns
:class:`~pipetrail.execution.task.TaskResult` objects. Executors only ever write
content-addressed blobs to the store, which makes them safe to run anywhere: the
in-process executor here; local processes and Dask (DESIGN.md roadmap) implement the
same Protocol and are chosen by configuration, never by editing the pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pipetrail.execution.task import StepTask, TaskResult
    from pipetrail.store import ContentStore, SerializerRegistry

__all__ = ["Executor", "InlineExecutor"]


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


class InlineExecutor:
    """Runs each step in the calling process and thread, one at a time."""

    name = "inline"

    def run(
        self, task: StepTask, *, store: ContentStore, registry: SerializerRegistry
    ) -> TaskResult:
        """Execute the task right here."""
        # Imported here: a run whose steps are all cache hits executes nothing.
        from pipetrail.execution.task import execute_task

        return execute_task(task, store, registry)
