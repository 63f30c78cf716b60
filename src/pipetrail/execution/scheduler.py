"""Running a run's nodes: one at a time, or every ready node at once.

:func:`run_nodes` is the runner's loop over the graph. On the inline executor it runs the
nodes in order, one after the other. On a
:class:`~pipetrail.execution.executors.ConcurrentExecutor` it submits every node whose
upstream nodes are done and handles each result as it comes back, so independent
branches run in parallel. Either way everything but the step's own code happens here,
on the coordinator's thread: cache decisions, loading inputs, queueing events and
appending them (:func:`~pipetrail.execution.run_state.flush`). A step running in a
worker process cannot crash the coordinator, so its start is not flushed before it is
submitted: queued events wait at most :data:`~pipetrail.execution.flushing.MAX_DELAY_S`,
and are appended at once when nothing is left executing.

Nodes are decided in graph order, so the events of a run whose steps are all cache hits
are the same on every executor.

When a step fails the run fails. Steps already executing finish and are recorded; with
``keep_going`` (``--keep-going``), nodes that do not depend on the failed one still run.
The first failure is raised once nothing is executing any more; the nodes that never
started are listed by the run's end event.

With ``[quotas]`` (:mod:`pipetrail.execution.quotas`) a step is admitted before it
starts: the run's own steps wait for each other when they fill a concurrency quota; a
step the quotas refuse stops the run like a failure, without ``--keep-going``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pipetrail.errors import QuotaExceededError, RunInterruptedError, StepFailedError
from pipetrail.execution.executors import ConcurrentExecutor
from pipetrail.execution.flushing import MAX_DELAY_S
from pipetrail.execution.interrupts import interrupt_requested
from pipetrail.execution.quotas import QuotaWait, run_quotas
from pipetrail.execution.run_node import prepare_node, run_node
from pipetrail.execution.run_state import flush
from pipetrail.execution.step_result import PreparedStep, finish_step, retry

if TYPE_CHECKING:
    from concurrent.futures import Future

    from pipetrail.core.graph import Node
    from pipetrail.execution.executors import Executor
    from pipetrail.execution.observer import RunObserver
    from pipetrail.execution.run_state import RunOptions, RunState
    from pipetrail.execution.task import TaskResult

__all__ = ["run_nodes"]


def run_nodes(
    state: RunState, options: RunOptions, executor: Executor, observer: RunObserver
) -> None:
    """Run every node of the run's graph on ``executor``.

    Raises:
        StepFailedError: a step failed (the first one, after the others have finished).
        QuotaExceededError: a quota refused a step (after the steps executing finished;
            see :mod:`pipetrail.execution.quotas`).
        RunInterruptedError: a signal arrived between steps.
    """
    state.quotas = run_quotas(state)
    try:
        if isinstance(executor, ConcurrentExecutor):
            _Concurrent(state, options, executor, observer).run()
        else:
            _run_in_order(state, options, executor, observer)
    finally:
        if state.quotas is not None:
            state.quotas.close()


def _run_in_order(
    state: RunState, options: RunOptions, executor: Executor, observer: RunObserver
) -> None:
    failure: StepFailedError | None = None
    blocked: set[str] = set()
    for node in state.graph.nodes.values():
        _check_interrupt()
        if blocked.intersection(node.upstream()):
            blocked.add(node.id)
            continue
        try:
            run_node(state, node, options, executor, observer)
        except StepFailedError as exc:
            if not options.keep_going:
                raise
            failure = failure or exc
            blocked.add(node.id)
    if failure is not None:
        raise failure


def _check_interrupt() -> None:
    received = interrupt_requested()
    if received is not None:
        # The step before caught the KeyboardInterrupt and went on; stop here.
        raise RunInterruptedError(received)


class _Concurrent:
    """The loop for executors that run several steps at once."""

    def __init__(
        self,
        state: RunState,
        options: RunOptions,
        executor: ConcurrentExecutor,
        observer: RunObserver,
    ) -> None:
        self.state = state
        self.options = options
        self.executor = executor
        self.observer = observer
        self.waiting: list[Node] = list(state.graph.nodes.values())
        self.done: set[str] = set()
        self.blocked: set[str] = set()
        self.running: dict[Future[TaskResult], PreparedStep] = {}
        self.failure: StepFailedError | None = None
        self.refused: QuotaExceededError | None = None

    def run(self) -> None:
        try:
            while self.waiting or self.running:
                _check_interrupt()
                if self.refused is None and (self.failure is None or self.options.keep_going):
                    self._start_ready()
                elif not self.running:
                    break
                if not self.running:
                    if self.waiting and not self._any_startable():
                        break  # only nodes below a failure are left
                    continue
                self._collect()
        finally:
            for future in self.running:
                future.cancel()
        if self.failure is not None:
            raise self.failure
        if self.refused is not None:
            raise self.refused

    def _any_startable(self) -> bool:
        return any(not self.blocked.intersection(n.upstream()) for n in self.waiting)

    def _start_ready(self) -> None:
        """Decide, in graph order, every node whose upstream nodes are done."""
        still: list[Node] = []
        for node in self.waiting:
            upstream = node.upstream()
            if self.blocked.intersection(upstream):
                self.blocked.add(node.id)
                continue
            if not self.done.issuperset(upstream) or self.refused is not None:
                still.append(node)
                continue
            quotas = self.state.quotas
            if quotas is not None and quotas.should_wait():
                still.append(node)  # the run's own steps fill a quota: one must end first
                continue
            try:
                prepared = prepare_node(
                    self.state, node, self.options, self.executor, self.observer, flush_first=False
                )
            except QuotaWait:
                # Full, and some of the steps executing are the run's own: one must end.
                still.append(node)
                continue
            except QuotaExceededError as exc:
                # Refused before it started; the steps executing finish and are recorded.
                self.refused = exc
                still.append(node)
                continue
            if prepared is None:
                self.done.add(node.id)
            else:
                self.running[self.executor.submit(prepared.task)] = prepared
        self.waiting = still

    def _collect(self) -> None:
        """Wait for results (flushing queued events in time) and handle them."""
        # Imported here: a run on the inline executor does not load concurrent.futures.
        from concurrent.futures import FIRST_COMPLETED, wait

        state = self.state
        timeout = MAX_DELAY_S
        if state.pending_since is not None:
            timeout = max(0.0, state.pending_since + MAX_DELAY_S - time.monotonic())
        finished, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in finished:
            prepared = self.running.pop(future)
            result = future.result()
            node = prepared.node
            state.step_times.record(id(node.step), result.resources.get("wall_ns", 0) / 1e9)
            if retry(prepared, result):
                self.running[self.executor.submit(prepared.task)] = prepared
                continue
            if state.quotas is not None:
                state.quotas.release()
            try:
                finish_step(state, prepared, result, self.observer)
            except StepFailedError as exc:
                self.failure = self.failure or exc
                self.blocked.add(node.id)
            else:
                self.done.add(node.id)
        if state.pending_since is not None and (
            time.monotonic() - state.pending_since >= MAX_DELAY_S or not self.running
        ):
            flush(state)
