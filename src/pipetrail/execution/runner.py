"""The coordinator: plans a run, decides cache hits, dispatches steps, appends events.

Order of a run:

1. validate parameters and build the graph (errors here record nothing);
2. fingerprint every step's code; observe sources (missing ones record nothing; see
   :mod:`pipetrail.execution.run_sources`);
3. capture git state and the environment, store them, append ``run.started`` (built in
   :mod:`pipetrail.execution.run_events`);
4. for each node (:mod:`pipetrail.execution.scheduler`: in order on the inline
   executor, every ready node at once on a concurrent one): compute its key, reuse a
   previous result (``step.cached``) or execute it through the executor (``step.started``
   then ``step.completed`` or ``step.failed``; see
   :func:`~pipetrail.execution.run_node.run_node`);
5. append ``run.completed``; or, when the run does not complete, ``run.failed`` (a step
   failed, an input could not be loaded, a store failed) or ``run.interrupted`` (SIGINT,
   SIGTERM), closing the step runs still running and listing the nodes that never
   started (see :mod:`pipetrail.execution.crash`). Appends to the ledger are shielded
   from signals (:mod:`pipetrail.execution.interrupts`), so a signal never leaves one
   half-remembered.

Only the runner appends to the ledger during a run: this module appends ``run.started``
and the sources; step and run-end events are queued on the run's state
(:mod:`pipetrail.execution.run_state`) and appended by its ``flush``, or by the run's flush
timer when a fast step runs long (:mod:`pipetrail.execution.flushing`).

Step events reference, besides inputs and outputs: ``code_source`` (the digest of the
step's stored source text), ``metrics`` (name -> ``{"digest", "count", "min", "max",
"last"}``, plus ``"timestamps"`` and ``"timestamps_at"`` in the event of the step run
that logged them: the step run's one timestamps object, and where the series' points
start in it) and ``reports`` (name -> digest) and, when the step sampled or split
tables, ``data_ops`` (see :mod:`pipetrail.data.ops`). Metric series and reports are
also listed in ``outputs`` as ``metric:NAME`` and ``report:NAME`` (see
:func:`~pipetrail.execution.records.with_recorded`), so lineage edges and cache hits cover
them; a failed step references its metrics and reports but has no outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import TYPE_CHECKING, Any

from pipetrail.capture import capture_environment, validate_seed
from pipetrail.capture.distributions import cached_module_distributions
from pipetrail.capture.log_context import LogContext, bound
from pipetrail.capture.seeds import held_states
from pipetrail.core.clock import new_id
from pipetrail.core.graph import Node, OutputRef, PipelineGraph
from pipetrail.core.run_end import run_ended
from pipetrail.errors import DefinitionError, PipetrailError, RunInterruptedError, StoreError
from pipetrail.execution.contract_records import plan_contracts, register_contract_fingerprints
from pipetrail.execution.crash import reconcile_crashed_runs
from pipetrail.execution.executors import is_concurrent, resolve_executor
from pipetrail.execution.flushing import commit_small_writes, hold_small_writes
from pipetrail.execution.heap import frozen_heap
from pipetrail.execution.interrupts import (
    deferred_interrupts,
    handling_interrupts,
    python_default_sigint,
)
from pipetrail.execution.loader import pipeline_module_files, pipeline_modules
from pipetrail.execution.node_identity import node_identities
from pipetrail.execution.observer import NullObserver
from pipetrail.execution.records import is_recorded_output
from pipetrail.execution.run import Run
from pipetrail.execution.run_events import end_run, run_started_events
from pipetrail.execution.run_params import resolve_run_params
from pipetrail.execution.run_sources import observe_sources
from pipetrail.execution.run_state import RunOptions, RunState, close_flush_timer
from pipetrail.execution.scheduler import run_nodes
from pipetrail.execution.telemetry_config import telemetry_settings
from pipetrail.hashing.code import CodeFingerprint, code_fingerprint
from pipetrail.hashing.code_analysis import using_code_cache
from pipetrail.hashing.code_cache import CodeCache
from pipetrail.hashing.digest import digest_plain
from pipetrail.hashing.locality import using_module_distributions
from pipetrail.ledger import EventKind
from pipetrail.ledger.annotations import validate_name, validate_tags
from pipetrail.store.gc_lock import run_lease

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.core.step import Step
    from pipetrail.execution.project import Project

__all__ = ["RunOptions", "run_pipeline"]


def run_pipeline(
    definition: PipelineDefinition,
    params: Mapping[str, Any],
    project: Project,
    options: RunOptions | None = None,
) -> Run:
    """Run a pipeline and record everything about it.

    While it runs, the modules of a pipeline loaded from a file are registered
    (:func:`~pipetrail.execution.loader.pipeline_modules`), and, when called from the main
    thread with Python's default SIGINT handler, Ctrl-C is handled as described in
    :mod:`pipetrail.execution.interrupts`.

    Args:
        definition: the pipeline.
        params: parameter values (Python values or text to parse).
        project: the project whose stores record the run.
        options: cache, seed, executor and observer settings.

    Returns:
        The finished run (its outputs load on access).

    Raises:
        ParamError: invalid parameters (nothing recorded).
        DefinitionError: the pipeline is wired wrongly or a source is missing (nothing
            recorded).
        StepFailedError: a step raised; the run is recorded as failed.
        RunInterruptedError: SIGINT or SIGTERM; the run (if it was recorded yet) is
            recorded as interrupted.
    """
    guard = (
        handling_interrupts(("SIGINT",), exit_on_second=False)
        if python_default_sigint()
        else contextlib.nullcontext()
    )
    # The objects alive before the run are left out of the collector's full passes
    # while it runs (see pipetrail.execution.heap); the random generators' states are
    # saved once for the run, not around each step (see capture.seeds.held_states).
    with guard, pipeline_modules(definition), frozen_heap(), held_states():
        return _run(definition, params, project, options or RunOptions())


def _run(
    definition: PipelineDefinition,
    params: Mapping[str, Any],
    project: Project,
    options: RunOptions,
) -> Run:
    if options.name is not None:
        validate_name(options.name)  # refused before anything is recorded
    if options.tags:
        validate_tags(options.tags)
    resolved = resolve_run_params(definition, params, options.params_files)
    run_seed = validate_seed(project.config.seed if options.seed is None else options.seed)
    graph = definition.build(resolved)
    state = RunState(run_id=new_id(), graph=graph, project=project, run_seed=run_seed)
    # What code fingerprints read from unchanged source files comes from the project's
    # code cache (see pipetrail.hashing.code_analysis); values are always read live. The
    # distributions providing the libraries they use come from the distributions cache.
    cache_dir = project.config.state_dir / "cache"
    code_cache = CodeCache(cache_dir / "code.db")
    modules = functools.cache(functools.partial(cached_module_distributions, cache_dir))
    register_contract_fingerprints()
    with code_cache, using_code_cache(code_cache), using_module_distributions(modules):
        for node in graph.nodes.values():
            if id(node.step) in state.fingerprints:
                continue  # a step called again: its outputs, code and contracts are known
            _check_output_names(node)
            _fingerprint_step(state, node.step)
            state.contracts[id(node.step)] = plan_contracts(node.step)
        state.identities = node_identities(graph)
        pipeline_fp = _pipeline_fingerprint(definition, graph, state)
    _check_parity(state, options)
    # A bad executor name is refused before anything is recorded.
    options = dataclasses.replace(
        options, executor=resolve_executor(options.executor, project.config)
    )
    # The store lease keeps garbage collection out from the first object stored to the
    # run's final record (store.gc_lock); bad input above fails before it is taken.
    with run_lease(project.store):
        return _record(state, definition, resolved, pipeline_fp, options)


def _export_trace(state: RunState) -> None:
    """Export the ended run's trace when the project exports traces.

    Most projects do not (``state.telemetry`` is None): the exporter is then not imported.
    """
    if state.telemetry is None:
        return
    from pipetrail.execution.telemetry import export_run_trace

    export_run_trace(state.project, state.run_id, state.telemetry)


def _record(
    state: RunState,
    definition: PipelineDefinition,
    resolved: dict[str, Any],
    pipeline_fp: str,
    options: RunOptions,
) -> Run:
    """Store and record the run, its steps and its end (the run is valid by now)."""
    project, graph = state.project, state.graph
    observer = options.observer or NullObserver()
    executor = options.executor
    if executor is None or isinstance(executor, str):  # resolved by _run
        raise TypeError("the run's executor must be resolved before it is recorded")
    state.telemetry = telemetry_settings(project.root)
    try:
        source_events = observe_sources(state, options.snapshots, rehash=options.rehash)
        ledger = project.ledger
        reconcile_crashed_runs(ledger)
        started = run_started_events(state, definition, resolved, pipeline_fp, options)
        project.store.sync()
    except StoreError as exc:  # the store failed before the run was recorded: record it
        from pipetrail.execution.store_failure import record_store_failure

        record_store_failure(state, definition, resolved, pipeline_fp, options, exc)
        raise
    recorded = False
    try:
        with deferred_interrupts():
            ledger.append([*started, *source_events])
            recorded = True
        observer.run_started(run_id=state.run_id, pipeline=graph.name, steps_total=len(graph.nodes))
        try:
            # Small outputs wait in memory and are committed together just before the
            # events naming them are appended (run_state.flush), not one transaction each;
            # after the last node, what is held is committed and holding stops.
            hold_small_writes(project.store)
            state.exits.callback(commit_small_writes, project.store, release=True)
            state.exits.enter_context(bound(LogContext.for_run(state.run_id)))
            if is_concurrent(executor):
                # Workers open the store and load the pipeline's modules themselves; an
                # unreachable cluster fails the run here, recorded with the reason.
                from pipetrail.execution.executors.shipping import worker_context

                state.exits.callback(executor.shutdown)
                executor.start(worker_context(project, pipeline_module_files(definition)))
            run_nodes(state, options, executor, observer)
        finally:
            state.exits.close()  # held small writes, output capture's logging
    except BaseException as exc:
        if not recorded:
            if isinstance(exc, KeyboardInterrupt):
                raise _interrupted(exc, None) from exc
            raise
        status = "failed"
        try:
            status = _end_unfinished(state, exc)
        finally:
            observer.run_finished(run_id=state.run_id, status=status)
            run_ended(project, state.run_id, status)
            _export_trace(state)
        if isinstance(exc, KeyboardInterrupt):
            raise _interrupted(exc, state.run_id) from exc
        raise
    try:
        _end(state, EventKind.RUN_COMPLETED)
    finally:
        observer.run_finished(run_id=state.run_id, status="completed")
        run_ended(project, state.run_id, "completed")
        _export_trace(state)
    return Run(
        state.run_id,
        project,
        pipeline=graph.name,
        status="completed",
        result=_result_digests(state, graph.result),
        result_outputs=_result_outputs(graph.result),
    )


# -- ending ----------------------------------------------------------------------------
def _interrupted(exc: KeyboardInterrupt, run_id: str | None) -> RunInterruptedError:
    name = exc.signal_name if isinstance(exc, RunInterruptedError) else "SIGINT"
    return RunInterruptedError(name, run_id=run_id)


def _end_unfinished(state: RunState, exc: BaseException) -> str:
    """Record how a run that did not complete ended; return its status.

    ``KeyboardInterrupt`` (SIGINT, or SIGTERM through the CLI) ends it ``interrupted``;
    anything else (a step failed, an input could not be loaded, a store failed) ends it
    ``failed``. Either way its unfinished step runs are closed (see
    :func:`~pipetrail.execution.run_events.end_run`).
    """
    if isinstance(exc, KeyboardInterrupt):
        name = _interrupted(exc, None).signal_name
        error = f"interrupted by {name}{_uncancelled(state)}"
        _end(state, EventKind.RUN_INTERRUPTED, error=error, signal_name=name)
        return "interrupted"
    error = str(exc) if isinstance(exc, PipetrailError) else f"{type(exc).__name__}: {exc}"
    _end(state, EventKind.RUN_FAILED, error=error + _uncancelled(state))
    return "failed"


def _uncancelled(state: RunState) -> str:
    """What the run's end says of the steps the executor could not cancel ('' for none)."""
    if not state.uncancelled:
        return ""
    steps = ", ".join(repr(step) for step in state.uncancelled)
    return (
        f"; the executor could not cancel step(s) {steps} in time: they may still run on "
        "the cluster, and nothing they store is recorded"
    )


def _end(
    state: RunState, kind: EventKind, *, error: str | None = None, signal_name: str | None = None
) -> None:
    """Append the run's closing event once, shielded from signals.

    A signal arriving while the end is written is dropped (the run is ending anyway). One
    raised just outside the shield (before it is entered, or after it is left) is
    caught here too, so the end is written exactly once.
    """
    close_flush_timer(state)  # the events it did not append are still queued: end_run does
    done = False
    for _ in range(2):
        try:
            with deferred_interrupts(deliver=False):
                end_run(state, kind, error=error, signal_name=signal_name)
                done = True
        except KeyboardInterrupt:
            if not done:
                continue
        return
    with deferred_interrupts(deliver=False):
        end_run(state, kind, error=error, signal_name=signal_name)


# -- planning --------------------------------------------------------------------------
def _check_output_names(node: Node) -> None:
    reserved = [name for name in node.output_names if is_recorded_output(name)]
    if reserved:
        raise DefinitionError(
            f"step {node.step.name!r} declares outputs {reserved!r}; output names starting "
            "with 'metric:' or 'report:' are reserved for logged metrics and reports, "
            "rename them"
        )


def _fingerprint_step(state: RunState, step: Step[..., Any]) -> CodeFingerprint:
    key = id(step)
    found = state.fingerprints.get(key)
    if found is None:
        found = code_fingerprint(step.func)
        state.fingerprints[key] = found
    return found


def _pipeline_fingerprint(
    definition: PipelineDefinition, graph: PipelineGraph, state: RunState
) -> str:
    structure = [
        {
            "node": node.id,
            "step": node.step.name,
            "code": state.fingerprints[id(node.step)].digest,
            "upstream": node.upstream(),
        }
        for node in graph.nodes.values()
    ]
    # Node ids, step names, code digests: text, by how they are made (digest_value's digest).
    return digest_plain({"pipeline": code_fingerprint(definition.func).digest, "graph": structure})


def _check_parity(state: RunState, options: RunOptions) -> None:
    """Compare the environment with the parity reference run's, before anything is stored.

    Raises:
        ParityError: parity is strict and the environments differ.
    """
    config = state.project.config
    if (options.parity or config.parity) == "off":
        return
    # Imported here: a run with parity off (the default) does not load the comparison.
    from pipetrail.execution.parity import check_parity

    state.environment = capture_environment(cache_dir=config.state_dir / "cache")
    state.parity = check_parity(
        state.project,
        mode=options.parity,
        reference=options.parity_reference,
        current=state.environment,
    )


def _result_outputs(result: Any) -> Any:
    """``result`` with each step output as ``[node id, output name]`` (see :class:`Run`)."""
    if isinstance(result, OutputRef):
        return [result.node_id, result.name]
    if isinstance(result, list | tuple):
        return [_result_outputs(item) for item in result]
    if isinstance(result, dict):
        return {k: _result_outputs(v) for k, v in result.items()}
    return None


def _result_digests(state: RunState, result: Any) -> Any:
    if isinstance(result, OutputRef):
        return state.outputs[result.node_id][result.index].digest
    if isinstance(result, list | tuple):
        return [_result_digests(state, item) for item in result]
    if isinstance(result, dict):
        return {k: _result_digests(state, v) for k, v in result.items()}
    return None
