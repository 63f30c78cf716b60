"""The coordinator: plans a run, decides cache hits, dispatches steps, appends events.

Order of a run:

1. validate parameters and build the graph (errors here record nothing);
2. fingerprint every step's code; observe sources (missing ones record nothing; see
   :mod:`pipetrail.execution.run_sources`);
3. capture git state and the environment, store them, append ``run.started`` (built in
   :mod:`pipetrail.execution.run_events`);
4. for each node in order (:func:`~pipetrail.execution.run_node.run_node`): compute its
   key, reuse a previous result (``step.cached``) or execute it through the executor
   (``step.started`` then ``step.completed`` or ``step.failed``);
5. append ``run.completed`` or ``run.failed``.

Only the runner appends to the ledger during a run: this module appends ``run.started``
and the sources; step and run-end events are queued on the run's state
(:mod:`pipetrail.execution.run_state`) and appended by its ``flush``.

Step events reference, besides inputs and outputs: ``code_source`` (the digest of the
step's stored source text), ``metrics`` (name -> ``{"digest", "count", "min", "max",
"last"}``, plus ``"timestamps"`` in the event of the step run that logged them) and
``reports`` (name -> digest) and, when the step sampled or split tables, ``data_ops``
(see :mod:`pipetrail.data.ops`). Metric series and reports are also listed in ``outputs``
as ``metric:NAME`` and ``report:NAME`` (see
:func:`~pipetrail.execution.records.with_recorded`), so lineage edges and cache hits cover
them; a failed step references its metrics and reports but has no outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.capture import capture_environment, validate_seed
from pipetrail.core.clock import new_id
from pipetrail.core.graph import Node, OutputRef, PipelineGraph
from pipetrail.errors import DefinitionError, StepFailedError
from pipetrail.execution.contract_records import plan_contracts
from pipetrail.execution.crash import reconcile_crashed_runs
from pipetrail.execution.executors import InlineExecutor
from pipetrail.execution.observer import NullObserver
from pipetrail.execution.params_files import resolve_run_params
from pipetrail.execution.parity import check_parity
from pipetrail.execution.records import is_recorded_output
from pipetrail.execution.run import Run
from pipetrail.execution.run_events import end_run, run_started_events
from pipetrail.execution.run_node import run_node
from pipetrail.execution.run_sources import observe_sources
from pipetrail.execution.run_state import RunOptions, RunState
from pipetrail.hashing import digest_value
from pipetrail.hashing.code import CodeFingerprint, code_fingerprint
from pipetrail.ledger import EventKind

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
    """
    options = options or RunOptions()
    observer = options.observer or NullObserver()
    executor = options.executor or InlineExecutor()
    resolved = resolve_run_params(definition, params, options.params_files)
    run_seed = validate_seed(project.config.seed if options.seed is None else options.seed)
    graph = definition.build(resolved)
    state = RunState(run_id=new_id(), graph=graph, project=project, run_seed=run_seed)
    for node in graph.nodes.values():
        _check_output_names(node)
        _fingerprint_step(state, node.step)
        if id(node.step) not in state.contracts:
            state.contracts[id(node.step)] = plan_contracts(node.step)
    pipeline_fp = _pipeline_fingerprint(definition, graph, state)
    _check_parity(state, options)
    source_events = observe_sources(state, options.snapshots, rehash=options.rehash)

    ledger = project.ledger
    reconcile_crashed_runs(ledger)
    started = run_started_events(state, definition, resolved, pipeline_fp, options)
    project.store.sync()
    ledger.append([*started, *source_events])
    observer.run_started(run_id=state.run_id, pipeline=graph.name, steps_total=len(graph.nodes))
    status = "failed"
    try:
        for node in graph.nodes.values():
            run_node(state, node, options, executor, observer)
        status = "completed"
    except StepFailedError as exc:
        end_run(state, EventKind.RUN_FAILED, error=str(exc))
        raise
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "aborted"
        end_run(state, EventKind.RUN_FAILED, error=f"{reason}: {type(exc).__name__}: {exc}")
        raise
    finally:
        observer.run_finished(run_id=state.run_id, status=status)
    end_run(state, EventKind.RUN_COMPLETED)
    return Run(
        state.run_id,
        project,
        pipeline=graph.name,
        status="completed",
        result=_result_digests(state, graph.result),
    )


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
    return digest_value({"pipeline": code_fingerprint(definition.func).digest, "graph": structure})


def _check_parity(state: RunState, options: RunOptions) -> None:
    """Compare the environment with the parity reference run's, before anything is stored.

    Raises:
        ParityError: parity is strict and the environments differ.
    """
    config = state.project.config
    if (options.parity or config.parity) == "off":
        return
    state.environment = capture_environment(cache_dir=config.state_dir / "cache")
    state.parity = check_parity(
        state.project,
        mode=options.parity,
        reference=options.parity_reference,
        current=state.environment,
    )


def _result_digests(state: RunState, result: Any) -> Any:
    if isinstance(result, OutputRef):
        return state.outputs[result.node_id][result.index].digest
    if isinstance(result, list | tuple):
        return [_result_digests(state, item) for item in result]
    if isinstance(result, dict):
        return {k: _result_digests(state, v) for k, v in result.items()}
    return None
