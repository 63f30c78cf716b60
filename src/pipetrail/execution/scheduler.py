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

Chaining (the ``dask`` executor, a run without quotas): a node whose cache is off
executes whatever its inputs are, so it need not wait for them to be decided. Once all
its upstream nodes are in flight it is submitted at once, chained on their tasks
(``submit_chained``): the cluster starts it as soon as they finish, on the worker that
holds their results, without a round trip through the coordinator. Its record does not
change: its start is recorded (decided, keyed, ``step.started``) when its upstream nodes
are done, in graph order as for any node, and its end when its result arrives. A chained
task whose upstream step failed does not run its step, nor does one given an input only
the coordinator may load (sealed, a file or folder); the coordinator then sends the step
the usual way when its upstream nodes are done (a failed one blocks it, as always).
When the run stops starting nodes (a failure without ``--keep-going``, a refusal), a
chained node may already be executing on the cluster before its upstream results reach
the coordinator, and a started task cannot be called back: so each chained node whose
upstream nodes complete is recorded and awaited like a node executing, and only those
below a failed (or cancelled) node are cancelled, since they cannot run their step.
"""

from __future__ import annotations

import heapq
import queue
import time
from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import new_id
from pipetrail.core.graph import OutputRef, SourceRef
from pipetrail.errors import (
    ProjectError,
    QuotaExceededError,
    RunInterruptedError,
    StepFailedError,
)
from pipetrail.execution.executors import ConcurrentExecutor, is_concurrent
from pipetrail.execution.flushing import MAX_DELAY_S
from pipetrail.execution.interrupts import interrupt_requested
from pipetrail.execution.run_node import load_task_inputs, node_task, prepare_node, run_node
from pipetrail.execution.run_state import flush, speed_key
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
    state.quotas = _run_quotas(state)
    try:
        if is_concurrent(executor):
            _Concurrent(state, options, executor, observer).run()
        else:
            _run_in_order(state, options, executor, observer)
    finally:
        if state.quotas is not None:
            state.quotas.close()


def _run_quotas(state: RunState) -> Any:
    """The run's quotas (:func:`~pipetrail.execution.quotas.run_quotas`), or None.

    A project without a ``[quotas]`` table has none, and this answers so without
    importing the quota module; the table read here is the one the quotas are built
    from. A table that cannot be read counts as none here too, as in
    :func:`~pipetrail.execution.quotas.load_quotas`.
    """
    from pipetrail.config_tables import project_table

    try:
        table = project_table(state.project.root, "quotas")
    except ProjectError:
        return None  # the project's own configuration check reports a broken file
    if table is None:
        return None
    from pipetrail.execution.quotas import run_quotas

    return run_quotas(state, table)


def _run_in_order(
    state: RunState, options: RunOptions, executor: Executor, observer: RunObserver
) -> None:
    failure: StepFailedError | None = None
    blocked: set[str] = set()
    for node in state.graph.nodes.values():
        _check_interrupt()
        if blocked and blocked.intersection(node.upstream()):
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


# After Ctrl-C, how long results already on their way are awaited (chained runs only).
_INTERRUPT_GRACE_S = 2.0


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
        # The nodes not started yet, in graph order; those of them whose upstream nodes
        # are all done or one blocked (``ready``, by graph position) are decided next.
        self.waiting: dict[str, Node] = dict(state.graph.nodes)
        self.position = {node_id: i for i, node_id in enumerate(self.waiting)}
        self.left: dict[str, int] = {}
        self.downstream: dict[str, list[str]] = {}
        self.ready: list[tuple[int, str]] = []
        self.done: set[str] = set()
        self.blocked: set[str] = set()
        self.running: dict[Future[TaskResult], PreparedStep] = {}
        self.finished: queue.SimpleQueue[Future[TaskResult]] = queue.SimpleQueue()
        self.failure: StepFailedError | None = None
        self.refused: QuotaExceededError | None = None
        # Chaining (see the module docstring): node id -> the future of its task in
        # flight, and the chained tasks whose start is not recorded yet (node id ->
        # their future and step run id).
        self.in_flight: dict[str, Future[TaskResult]] = {}
        self.chained: dict[str, tuple[Future[TaskResult], str]] = {}
        self.dropped: set[str] = set()  # chained nodes cancelled: they never run their step
        # node id -> its chained task's upstream nodes, by slot (ChainedInput.slot).
        self.slots: dict[str, list[str]] = {}
        self.upstream = {node_id: node.upstream() for node_id, node in self.waiting.items()}
        for node_id, upstream in self.upstream.items():
            self.left[node_id] = len(upstream)
            for up in upstream:
                self.downstream.setdefault(up, []).append(node_id)
            if not upstream:
                heapq.heappush(self.ready, (self.position[node_id], node_id))
        # The nodes that may be chained, until they are: see _chain_waiting.
        self.unchained: set[str] = set()
        if getattr(executor, "submit_chained", None) is not None and state.quotas is None:
            self.unchained = {
                node_id
                for node_id, node in self.waiting.items()
                if self.upstream[node_id] and not (options.cache and node.step.options.cache)
            }

    def _resolved(self, node_id: str) -> None:
        """``node_id`` is done or blocked: its downstream nodes may be decided."""
        blocked = node_id in self.blocked
        for down in self.downstream.get(node_id, ()):
            self.left[down] -= 1
            if (blocked or self.left[down] == 0) and down in self.waiting:
                heapq.heappush(self.ready, (self.position[down], down))

    def run(self) -> None:
        try:
            while self.waiting or self.running:
                _check_interrupt()
                if self.refused is None and (self.failure is None or self.options.keep_going):
                    self._start_ready()
                else:
                    self._settle_chained()
                    if not self.running:
                        break
                if not self.running:
                    if self.waiting and not self._any_startable():
                        break  # only nodes below a failure are left
                    continue
                self._collect()
        except RunInterruptedError:
            self._record_what_ran()
            raise
        finally:
            for future in self.running:
                future.cancel()
            self._cancel_chained(list(self.chained))
        if self.failure is not None:
            raise self.failure
        if self.refused is not None:
            raise self.refused

    def _any_startable(self) -> bool:
        return any(not self.blocked.intersection(self.upstream[n]) for n in self.waiting)

    def _start_ready(self) -> None:
        """Decide, in graph order, every node whose upstream nodes are done."""
        from pipetrail.execution.quotas import QuotaWait  # concurrent executors only

        again: list[tuple[int, str]] = []
        while self.ready:
            entry = heapq.heappop(self.ready)
            node_id = entry[1]
            node = self.waiting.get(node_id)
            if node is None:
                continue  # decided already (queued twice)
            if self.blocked.intersection(self.upstream[node_id]):
                self.blocked.add(node_id)
                del self.waiting[node_id]
                self._cancel_chained([node_id])
                self._resolved(node_id)
                continue
            if self.left[node_id] > 0:
                continue  # queued when an upstream node was blocked, since undone
            quotas = self.state.quotas
            if self.refused is not None or (quotas is not None and quotas.should_wait()):
                again.append(entry)  # the run's own steps fill a quota: one must end first
                continue
            if node_id in self.chained:
                del self.waiting[node_id]
                self._start_chained(node)
                continue
            try:
                prepared = prepare_node(
                    self.state, node, self.options, self.executor, self.observer, flush_first=False
                )
            except QuotaWait:
                # Full, and some of the steps executing are the run's own: one must end.
                again.append(entry)
                continue
            except QuotaExceededError as exc:
                # Refused before it started; the steps executing finish and are recorded.
                self.refused = exc
                again.append(entry)
                continue
            del self.waiting[node_id]
            if prepared is None:
                self.done.add(node_id)
                self._resolved(node_id)
            else:
                self._submit(prepared)
        for entry in again:
            heapq.heappush(self.ready, entry)
        if self.unchained:
            self._chain_waiting()

    def _submit(self, prepared: PreparedStep) -> None:
        if not prepared.loaded:  # a chained task that did not run, or its retry
            load_task_inputs(self.state, prepared, self.options, self.executor, self.observer)
        future = self.executor.submit(prepared.task)
        self._await(future, prepared)
        self.in_flight[prepared.node.id] = future
        self.unchained.discard(prepared.node.id)

    def _start_chained(self, node: Node) -> None:
        """Record the start of a chained node (its upstream nodes are done)."""
        future, step_run_id = self.chained.pop(node.id)
        prepared = prepare_node(
            self.state,
            node,
            self.options,
            self.executor,
            self.observer,
            flush_first=False,
            step_run_id=step_run_id,
            chained=True,
        )
        if prepared is None:  # not reached: only nodes that execute whatever are chained
            raise RuntimeError(f"chained node {node.id!r} was not executed")
        self._await(future, prepared)

    def _await(self, future: Future[TaskResult], prepared: PreparedStep) -> None:
        """Handle ``future``'s result once it is done (:meth:`_collect`)."""
        self.running[future] = prepared
        # Done futures queue themselves: waiting costs nothing per step in flight.
        future.add_done_callback(self.finished.put)

    def _chain_waiting(self) -> None:
        """Submit, chained on their upstream tasks, the nodes waiting only on tasks in flight.

        Only a node that executes whatever its inputs are (its cache is off) is chained:
        a cached one is decided by its inputs' digests, known only when they are done.
        """
        submit_chained = self.executor.submit_chained  # type: ignore[attr-defined]
        for node in self.waiting.values():
            if node.id not in self.unchained:
                continue
            upstream = self.upstream[node.id]
            if not all(up in self.in_flight for up in upstream):
                continue
            self.unchained.discard(node.id)  # tried once: sent the usual way when refused
            order = sorted(upstream)
            slots = {up: i for i, up in enumerate(order)}
            step_run_id = new_id()
            kwargs = {
                name: self._chained_input(value, slots) for name, value in node.inputs.items()
            }
            task = node_task(
                self.state,
                node,
                self.options,
                step_run_id,
                kwargs,
                {
                    name: self.state.sources[value][0]
                    for name, value in node.inputs.items()
                    if isinstance(value, SourceRef)
                },
            )
            future = submit_chained(task, [self.in_flight[up] for up in order])
            if future is not None:
                self.chained[node.id] = (future, step_run_id)
                self.in_flight[node.id] = future
                self.slots[node.id] = order

    def _recorded_inputs(self, prepared: PreparedStep, result: TaskResult) -> bool:
        """Whether a chained step loaded exactly the upstream outputs recorded for it."""
        order = self.slots.get(prepared.node.id)
        if order is None or prepared.loaded:
            return True  # not a chained task's result
        for label, digest in result.chained_inputs.items():
            slot, _, name = label.partition("/")
            up = order[int(slot)]
            names = self.state.graph.nodes[up].output_names
            if self.state.outputs[up][names.index(name)].digest != digest:
                return False
        return True

    def _chained_input(self, value: Any, slots: dict[str, int]) -> Any:
        from pipetrail.execution.executors.shipping import ChainedInput

        if isinstance(value, OutputRef):
            names = self.state.graph.nodes[value.node_id].output_names
            return ChainedInput(slots[value.node_id], names[value.index])
        if isinstance(value, SourceRef):
            return self.state.sources[value][1]
        if isinstance(value, list):
            return [self._chained_input(v, slots) for v in value]
        if isinstance(value, tuple):
            return tuple(self._chained_input(v, slots) for v in value)
        if isinstance(value, dict):
            return {k: self._chained_input(v, slots) for k, v in value.items()}
        return value

    def _settle_chained(self) -> None:
        """Once no node starts any more: see the chained nodes through.

        The cluster starts a chained task as soon as its upstream tasks finish there,
        which may be before their results reach the coordinator, and a task it started
        cannot be called back (cancelling only drops its result). So a chained node is
        cancelled only when it cannot run its step: an upstream node failed or was
        cancelled. The others are recorded once their upstream nodes are done, and
        awaited like any node executing.
        """
        if not self.chained:
            return
        for node in list(self.waiting.values()):
            if node.id not in self.chained:
                continue
            upstream = self.upstream[node.id]
            if self.done.issuperset(upstream):
                del self.waiting[node.id]
                self._start_chained(node)
            elif any(up in self.blocked or up in self.dropped for up in upstream):
                self._cancel_chained([node.id])

    def _cancel_chained(self, node_ids: list[str]) -> None:
        futures = []
        for node_id in node_ids:
            if node_id in self.chained:
                futures.append(self.chained.pop(node_id)[0])
                del self.in_flight[node_id]
                self.dropped.add(node_id)
        if futures:
            missed = self.executor.cancel(futures)  # type: ignore[attr-defined]
            self.state.uncancelled.extend(s for s in missed if s not in self.state.uncancelled)

    def _record_what_ran(self) -> None:
        """On Ctrl-C with chained tasks in flight: record what the cluster already did.

        A chained task starts on the cluster as soon as its upstream tasks finish there,
        before their results reach the coordinator. So before everything is cancelled,
        the results that arrive within a grace of :data:`_INTERRUPT_GRACE_S` are recorded
        (a failure that would be retried stays open), and each chained node whose
        upstream nodes are then done has its start recorded: the run's end closes it as
        interrupted instead of listing it as never run. Nothing new is sent. A run with
        chained tasks in flight therefore takes up to the grace to stop, and then up to
        the executor's bound on a cancellation (``CANCEL_TIMEOUT_S`` of the Dask
        executor) to cancel the rest: the steps it could not cancel are named by the
        run's end (``RunState.uncancelled``).
        """
        if not self.chained:
            return
        from pipetrail.execution.executors.shipping import ChainBroken

        deadline = time.monotonic() + _INTERRUPT_GRACE_S
        while True:
            for node in [n for n in self.waiting.values() if n.id in self.chained]:
                if self.done.issuperset(self.upstream[node.id]):
                    del self.waiting[node.id]
                    self._start_chained(node)
            if not self.running or time.monotonic() >= deadline:
                return
            try:
                future = self.finished.get(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                continue
            prepared = self.running.pop(future, None)
            if prepared is None:
                continue
            result = future.result()
            node = prepared.node
            if (
                isinstance(result.error, ChainBroken)
                or not self._recorded_inputs(prepared, result)
                or retry(prepared, result)
            ):
                self.running[future] = prepared  # left open: closed as interrupted
                continue
            del self.in_flight[node.id]
            try:
                finish_step(self.state, prepared, result, self.observer)
            except StepFailedError:
                self.blocked.add(node.id)
            else:
                self.done.add(node.id)

    def _collect(self) -> None:
        """Wait for results (flushing queued events in time) and handle them."""
        # Imported here: a run on the inline executor does not load what ships tasks.
        from pipetrail.execution.executors.shipping import ChainBroken

        state = self.state
        timeout = MAX_DELAY_S
        if state.pending_since is not None:
            timeout = max(0.0, state.pending_since + MAX_DELAY_S - time.monotonic())
        finished: list[Future[TaskResult]] = []
        try:
            finished.append(self.finished.get(timeout=timeout))
            while True:
                finished.append(self.finished.get_nowait())
        except queue.Empty:
            pass
        for future in finished:
            prepared = self.running.pop(future, None)
            if prepared is None:
                continue  # not awaited any more
            result = future.result()
            node = prepared.node
            if isinstance(result.error, ChainBroken) or not self._recorded_inputs(prepared, result):
                # The chained task did not run the step (an upstream attempt failed...),
                # or ran it on other bytes than those recorded (its upstream task was
                # computed again on the cluster): it is sent now with the inputs loaded
                # here, as an unchained one.
                self._submit(prepared)
                continue
            # A result that measured nothing (a worker lost, a result not read back) does
            # not make the step known to be fast, for this run or the next ones.
            wall_ns = result.resources.get("wall_ns")
            state.step_times.record(
                speed_key(state, node.step), float("inf") if wall_ns is None else wall_ns / 1e9
            )
            if retry(prepared, result):
                self._submit(prepared)
                continue
            del self.in_flight[node.id]
            if state.quotas is not None:
                state.quotas.release()
            try:
                finish_step(state, prepared, result, self.observer)
            except StepFailedError as exc:
                self.failure = self.failure or exc
                self.blocked.add(node.id)
            else:
                self.done.add(node.id)
            self._resolved(node.id)
        if state.pending_since is not None and (
            time.monotonic() - state.pending_since >= MAX_DELAY_S
            or not (self.running or self.chained)
        ):
            flush(state)
