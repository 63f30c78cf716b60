"""The coordinator: plans a run, decides cache hits, dispatches steps, appends events.

Order of a run:

1. validate parameters and build the graph (errors here record nothing);
2. fingerprint every step's code; observe sources (missing ones record nothing);
3. capture git state and the environment, store them, append ``run.started``;
4. for each node in order: compute its key, reuse a previous result (``step.cached``)
   or execute it through the executor (``step.started`` then ``step.completed`` or
   ``step.failed``);
5. append ``run.completed`` or ``run.failed``.

Only this module appends to the ledger during a run.

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

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.capture import (
    StatCache,
    capture_environment,
    capture_git,
    current_host,
    current_owner,
    derive_seed,
    observe_source,
    process_identity,
    validate_seed,
)
from pipetrail.core.clock import format_ts, new_id, utcnow
from pipetrail.core.graph import Node, OutputRef, PipelineGraph, SourceRef
from pipetrail.core.version import VERSION
from pipetrail.errors import DefinitionError, PipetrailError, StepFailedError, UnhashableValueError
from pipetrail.execution.cache import CacheDecision, cache_key
from pipetrail.execution.contract_records import (
    REPORT_ROLE,
    StepContracts,
    cached_payload,
    plan_contracts,
    step_failure,
)
from pipetrail.execution.crash import reconcile_crashed_runs
from pipetrail.execution.executors import Executor, InlineExecutor
from pipetrail.execution.metrics import decode_series
from pipetrail.execution.observer import NullObserver, RunObserver
from pipetrail.execution.params_files import params_file_records, resolve_run_params
from pipetrail.execution.parity import check_parity
from pipetrail.execution.records import (
    blob_artifact,
    is_recorded_output,
    jsonable,
    recorded_artifacts,
    split_recorded,
    with_recorded,
)
from pipetrail.execution.run import Run
from pipetrail.execution.task import StepTask
from pipetrail.hashing import digest_value
from pipetrail.hashing.code import CodeFingerprint, code_fingerprint
from pipetrail.hashing.fingerprint import fingerprint_obj
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.capture import SourceObservation
    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.core.step import Step
    from pipetrail.execution.params_files import ParamsFile
    from pipetrail.execution.parity import ParityReport
    from pipetrail.execution.project import Project
    from pipetrail.execution.snapshots import SourceSnapshots

__all__ = ["RunOptions", "run_pipeline"]


@dataclass
class RunOptions:
    """How to run a pipeline (everything but its parameters).

    Attributes:
        cache: ``False`` executes every step (``--no-cache``).
        seed: the run seed; None uses the project's configured seed.
        executor: where steps execute (default: in-process).
        observer: receives live progress.
        source_file: the pipeline file, recorded for the run.
        argv: the command line, recorded for the run.
        snapshots: use these recorded sources instead of the live files (reproduce).
        reproduces: the run this one re-executes, recorded for the run.
        params_files: params files under ``params`` (later files win); their names and
            digests are recorded, their bytes stored (role ``params-file``).
        parity: environment parity mode (``off``, ``warn``, ``strict``); None uses the
            project's. See :mod:`pipetrail.execution.parity`.
        parity_reference: the parity reference run; None uses the project's.
        rehash: hash every source file again, ignoring the stat cache (``--rehash``).
    """

    cache: bool = True
    seed: int | None = None
    executor: Executor | None = None
    observer: RunObserver | None = None
    source_file: str | None = None
    argv: list[str] | None = None
    snapshots: SourceSnapshots | None = None
    reproduces: str | None = None
    params_files: tuple[ParamsFile, ...] = ()
    parity: str | None = None
    parity_reference: str | None = None
    rehash: bool = False


@dataclass
class _Output:
    digest: str
    record: StoredArtifact | None = None


@dataclass
class _RunState:
    run_id: str
    graph: PipelineGraph
    project: Project
    run_seed: int
    sources: dict[SourceRef, tuple[str, Path]] = field(default_factory=dict)
    outputs: dict[str, list[_Output]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    recorded: set[str] = field(default_factory=set)
    fingerprints: dict[int, CodeFingerprint] = field(default_factory=dict)
    code_sources: dict[int, str] = field(default_factory=dict)
    # id(step) -> its contracts' fingerprints (None: the step declares no contract).
    contracts: dict[int, StepContracts | None] = field(default_factory=dict)
    # Events wait here until the next flush: one ledger transaction per executed step.
    pending: list[EventDraft] = field(default_factory=list)
    # cache key -> (step run whose outputs to reuse, outputs) for keys finished this run.
    done_keys: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    # metric series digest -> its summary, for cache hits on series met earlier.
    series_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Captured by the parity check, before anything is recorded; reused for run.started.
    environment: dict[str, Any] | None = None
    parity: ParityReport | None = None


def _emit(state: _RunState, drafts: list[EventDraft]) -> None:
    state.pending.extend(drafts)


def _flush(state: _RunState) -> None:
    """Append every pending event in one transaction.

    The runner flushes before it hands control to user code and when the run ends, so
    everything that happened before a step starts is durable before the step can crash
    the process; cache hits in between cost no transaction of their own.
    """
    if state.pending:
        state.project.ledger.append(state.pending)
        state.pending = []


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
    state = _RunState(run_id=new_id(), graph=graph, project=project, run_seed=run_seed)
    for node in graph.nodes.values():
        _check_output_names(node)
        _fingerprint_step(state, node.step)
        if id(node.step) not in state.contracts:
            state.contracts[id(node.step)] = plan_contracts(node.step)
    pipeline_fp = _pipeline_fingerprint(definition, graph, state)
    _check_parity(state, options)
    source_events = _observe_sources(state, options.snapshots, rehash=options.rehash)

    ledger = project.ledger
    reconcile_crashed_runs(ledger)
    started = _run_started_events(state, definition, resolved, pipeline_fp, options)
    project.store.sync()
    ledger.append([*started, *source_events])
    observer.run_started(run_id=state.run_id, pipeline=graph.name, steps_total=len(graph.nodes))
    status = "failed"
    try:
        for node in graph.nodes.values():
            _run_node(state, node, options, executor, observer)
        status = "completed"
    except StepFailedError as exc:
        _end_run(state, EventKind.RUN_FAILED, error=str(exc))
        raise
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "aborted"
        _end_run(state, EventKind.RUN_FAILED, error=f"{reason}: {type(exc).__name__}: {exc}")
        raise
    finally:
        observer.run_finished(run_id=state.run_id, status=status)
    _end_run(state, EventKind.RUN_COMPLETED)
    return Run(
        state.run_id,
        project,
        pipeline=graph.name,
        status="completed",
        result=_result_digests(state, graph.result),
        values={k: v for k, v in state.values.items()},
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


def _fingerprint_step(state: _RunState, step: Step[..., Any]) -> CodeFingerprint:
    key = id(step)
    found = state.fingerprints.get(key)
    if found is None:
        found = code_fingerprint(step.func)
        state.fingerprints[key] = found
    return found


def _pipeline_fingerprint(
    definition: PipelineDefinition, graph: PipelineGraph, state: _RunState
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


def _check_parity(state: _RunState, options: RunOptions) -> None:
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


def _observe_sources(
    state: _RunState, snapshots: SourceSnapshots | None, *, rehash: bool = False
) -> list[EventDraft]:
    """Observe every source (files and folders), store their content, describe them.

    ``rehash`` hashes every file again instead of trusting the stat cache.

    With ``snapshots`` (reproducing a run) each source is the recorded run's: its stored
    copy put back on disk, or, if tracked by reference, the live data checked against
    the recorded digest.

    Raises:
        DefinitionError: a source is missing, escapes the project, contains the project's
            own state folder, or changed while it was read; nothing is recorded.
    """
    store = state.project.store
    state_dir = state.project.config.state_dir.resolve()
    drafts: list[EventDraft] = []
    sources = state.graph.sources()
    if not sources:
        return drafts
    with StatCache(state.project.config.state_dir / "cache" / "stat.db") as cache:
        for src in sources:
            full = Path(src.path)
            full = (full if full.is_absolute() else state.project.root / full).resolve()
            if full == state_dir or state_dir.is_relative_to(full):
                raise DefinitionError(
                    f"source {src.path!r} contains the project's own state folder {state_dir}; "
                    "point the source at the data folder instead"
                )
            if snapshots is not None:
                obs, record = snapshots.observe(src, root=state.project.root, store=store)
                state.sources[src] = (obs.digest, Path(obs.location))
                drafts.append(
                    EventDraft(
                        EventKind.SOURCE_OBSERVED,
                        {"run_id": state.run_id, **record},
                        run_id=state.run_id,
                    )
                )
                drafts.extend(_source_artifact_drafts(state, src, obs))
                continue
            try:
                obs = observe_source(
                    src.path,
                    root=state.project.root,
                    cache=cache,
                    # In batches: the store makes each batch durable with one flush.
                    store_files=None if src.by_reference else store.put_files,
                    by_reference=src.by_reference,
                    rehash=rehash,
                    allow_outside=src.allow_outside,
                )
            except DefinitionError as exc:
                users = [n.id for n in state.graph.nodes.values() if src in n.inputs.values()]
                if users:
                    exc.add_note(f"read by step(s): {', '.join(users)}")
                raise
            state.sources[src] = (obs.digest, Path(obs.location))
            drafts.append(
                EventDraft(
                    EventKind.SOURCE_OBSERVED,
                    {"run_id": state.run_id, **obs.to_record()},
                    run_id=state.run_id,
                )
            )
            drafts.extend(_source_artifact_drafts(state, src, obs))
    return drafts


def _source_artifact_drafts(
    state: _RunState, src: SourceRef, obs: SourceObservation
) -> list[EventDraft]:
    """Record a folder's manifest, or a copied file, as the artifact of the source digest."""
    meta = {"path": src.path, "file_count": obs.file_count, "size": obs.size}
    if obs.manifest_bytes is not None:
        # A folder: its manifest is the artifact named by the source digest.
        state.project.store.put_bytes(obs.manifest_bytes)
        record = blob_artifact(obs.digest, len(obs.manifest_bytes), "json", "source-manifest", meta)
        return _artifact_drafts(state, [(record, "source-manifest")], step_run_id=None)
    if not src.by_reference:
        record = blob_artifact(obs.digest, obs.size, "file", "source", {"path": src.path})
        return _artifact_drafts(state, [(record, "source")], step_run_id=None)
    return []


def _run_started_events(
    state: _RunState,
    definition: PipelineDefinition,
    params: dict[str, Any],
    pipeline_fp: str,
    options: RunOptions,
) -> list[EventDraft]:
    project = state.project
    store = project.store
    artifacts: list[tuple[StoredArtifact, str]] = []
    git = capture_git(project.root)
    git_record: dict[str, Any] | None = None
    if git is not None:
        git_record = git.to_record()
        if git.diff:
            diff_digest = store.put_bytes(git.diff)
            artifacts.append(
                (blob_artifact(diff_digest, len(git.diff), "bytes", "git-diff", {}), "git-diff")
            )
    environment = state.environment or capture_environment(
        cache_dir=project.config.state_dir / "cache"
    )
    env_record = project.registry.dump(environment, store)
    artifacts.append((env_record, "environment"))
    payload = {
        "run_id": state.run_id,
        "pipeline": state.graph.name,
        "pipeline_fingerprint": pipeline_fp,
        "owner": current_owner(),
        "host": current_host(),
        "process": process_identity(os.getpid()),
        "params": jsonable(params),
        "seed": state.run_seed,
        "git": git_record,
        "environment": env_record.digest,
        "started_at": format_ts(utcnow()),
        "steps_total": len(state.graph.nodes),
        "cache": options.cache,
        "executor": (options.executor or InlineExecutor()).name,
        "pipeline_file": options.source_file,
        "pipeline_path": _project_relative(options.source_file, project.root),
        "argv": options.argv if options.argv is not None else list(sys.argv),
        "pipetrail_version": VERSION,
        "reproduces": options.reproduces,
        "nodes": {
            node.id: {"step": node.step.name, "upstream": node.upstream()}
            for node in state.graph.nodes.values()
        },
    }
    contracts = {
        node.id: planned.fingerprints
        for node in state.graph.nodes.values()
        if (planned := state.contracts.get(id(node.step))) is not None
    }
    if contracts:
        payload["contracts"] = contracts
    if options.params_files:
        files_payload, file_artifacts = params_file_records(
            options.params_files, store, root=project.root
        )
        payload["params_files"] = files_payload
        artifacts.extend(file_artifacts)
    if state.parity is not None:
        payload["parity"] = state.parity.to_record()
    drafts = [EventDraft(EventKind.RUN_STARTED, payload, run_id=state.run_id)]
    drafts.extend(_artifact_drafts(state, artifacts, step_run_id=None))
    return drafts


def _project_relative(file: str | None, root: Path) -> str | None:
    """``file`` relative to the project root (POSIX), if it lies inside; else None.

    Recorded next to the absolute ``pipeline_file`` so that another checkout of the
    project (a CI job, a colleague) can find the pipeline to reproduce a run.
    """
    if not file:
        return None
    try:
        return Path(file).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def _artifact_drafts(
    state: _RunState, records: list[tuple[StoredArtifact, str]], *, step_run_id: str | None
) -> list[EventDraft]:
    fresh = [(r, role) for r, role in records if r.digest not in state.recorded]
    if not fresh:
        return []
    known = state.project.ledger.reader().known_artifacts([r.digest for r, _ in fresh])
    drafts: list[EventDraft] = []
    for record, role in fresh:
        state.recorded.add(record.digest)
        if record.digest in known:
            continue
        drafts.append(
            EventDraft(
                EventKind.ARTIFACT_RECORDED,
                {
                    "digest": record.digest,
                    "blob": record.blob,
                    "serializer": record.serializer,
                    "type_name": record.type_name,
                    "size": record.size,
                    "meta": record.meta,
                    "role": role,
                    "run_id": state.run_id,
                    "step_run_id": step_run_id,
                },
                run_id=state.run_id,
            )
        )
    return drafts


def _end_run(state: _RunState, kind: EventKind, *, error: str | None = None) -> None:
    payload: dict[str, Any] = {"run_id": state.run_id, "ended_at": format_ts(utcnow())}
    if error is not None:
        payload["error"] = error
    _emit(state, [EventDraft(kind, payload, run_id=state.run_id)])
    state.project.store.sync()
    _flush(state)


# -- one node --------------------------------------------------------------------------
@dataclass
class _Inputs:
    digests: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    unhashable: list[str] = field(default_factory=list)


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, OutputRef | SourceRef):
        return True
    if isinstance(value, list | tuple):
        return any(_holds_placeholder(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_placeholder(v) for v in value.values())
    return False


def _input_digest(state: _RunState, value: Any) -> Any:
    if isinstance(value, OutputRef):
        return state.outputs[value.node_id][value.index].digest
    if isinstance(value, SourceRef):
        return state.sources[value][0]
    if isinstance(value, list | tuple):
        return [_input_digest(state, v) for v in value]
    if isinstance(value, dict):
        return {k: _input_digest(state, v) for k, v in value.items()}
    return fingerprint_obj(value)


def _describe_inputs(state: _RunState, node: Node) -> _Inputs:
    found = _Inputs()
    for name, value in node.inputs.items():
        if _holds_placeholder(value):
            found.digests[name] = _input_digest(state, value)
        else:
            try:
                found.params[name] = fingerprint_obj(value)
            except UnhashableValueError as exc:
                found.params[name] = {"$unhashable": type(value).__qualname__}
                found.unhashable.append(f"parameter {name!r}: {exc}")
    return found


def _flat_inputs(digests: dict[str, Any]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for name, value in digests.items():
        if isinstance(value, str):
            flat[name] = value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                flat.update(_flat_inputs({f"{name}[{i}]": item}))
        elif isinstance(value, dict):
            for key, item in value.items():
                flat.update(_flat_inputs({f"{name}.{key}": item}))
    return flat


def _decide(
    state: _RunState, node: Node, key: str, unhashable: list[str], options: RunOptions
) -> CacheDecision:
    if not options.cache:
        return CacheDecision("disabled", "caching disabled for this run (--no-cache)")
    if not node.step.options.cache:
        return CacheDecision("disabled", f"step {node.step.name!r} is declared with cache=False")
    if unhashable:
        return CacheDecision("forced-miss", "cannot fingerprint " + "; ".join(unhashable))
    earlier = state.done_keys.get(key)
    if earlier is not None:
        return CacheDecision(
            "hit",
            f"same key as step run {earlier[0]} earlier in this run",
            reused_step_run_id=earlier[0],
            outputs=earlier[1],
        )
    found = state.project.ledger.reader().cache_lookup(key)
    if found is None:
        return CacheDecision("miss", "no earlier step run has this cache key")
    outputs: dict[str, str] = found["outputs"] or {}
    reader = state.project.ledger.reader()
    for name, digest in outputs.items():
        record = reader.artifact(digest)
        if record is None or not state.project.store.exists(record["blob"]):
            return CacheDecision(
                "miss",
                f"the cached output {name!r} ({digest[:19]}) is missing from the store; "
                "executing again",
            )
    origin = found["reused_step_run_id"] or found["step_run_id"]
    return CacheDecision(
        "hit", f"same key as step run {origin}", reused_step_run_id=origin, outputs=outputs
    )


def _load_value(state: _RunState, digest: str) -> Any:
    if digest in state.values:
        return state.values[digest]
    record = state.project.ledger.reader().artifact(digest)
    if record is None:
        raise PipetrailError(f"artifact {digest} is not recorded; run `pipetrail audit verify`")
    stored = StoredArtifact.from_dict(record)
    value = state.project.registry.load(stored, state.project.store)
    state.values[digest] = value
    return value


def _input_value(state: _RunState, value: Any) -> Any:
    if isinstance(value, OutputRef):
        return _load_value(state, state.outputs[value.node_id][value.index].digest)
    if isinstance(value, SourceRef):
        return state.sources[value][1]
    if isinstance(value, list):
        return [_input_value(state, v) for v in value]
    if isinstance(value, tuple):
        return tuple(_input_value(state, v) for v in value)
    if isinstance(value, dict):
        return {k: _input_value(state, v) for k, v in value.items()}
    return value


def _run_node(
    state: _RunState,
    node: Node,
    options: RunOptions,
    executor: Executor,
    observer: RunObserver,
) -> None:
    step = node.step
    fp = state.fingerprints[id(step)]
    inputs = _describe_inputs(state, node)
    seed = derive_seed(state.run_seed, node.id)
    components: dict[str, Any] = {
        "step": step.name,
        "code": fp.digest,
        "code_parts": fp.parts,
        "version": step.options.version,
        "inputs": inputs.digests,
        "params": inputs.params,
        "distributions": fp.distributions,
        "seed": seed,
        "allow_pickle": step.options.allow_pickle,
    }
    planned = state.contracts.get(id(step))
    if planned is not None:
        # Only steps with contracts have the component: other keys stay as they were.
        components["contracts"] = planned.fingerprints
    key = cache_key(components)
    unhashable = [*fp.unhashable, *inputs.unhashable, *(planned.unhashable if planned else ())]
    decision = _decide(state, node, key, unhashable, options)
    step_run_id = new_id()
    started_at = format_ts(utcnow())
    code_drafts = _code_drafts(state, step, fp)
    base = {
        "step_run_id": step_run_id,
        "run_id": state.run_id,
        "node_id": node.id,
        "step": step.name,
        "pipeline": state.graph.name,
        "cache_key": key,
        "code_digest": fp.digest,
        "code_source": state.code_sources.get(id(step)),
        "components": components,
        "inputs": _flat_inputs(inputs.digests),
        "seed": seed,
        "started_at": started_at,
    }
    if decision.decision == "hit" and decision.outputs is not None:
        outputs = decision.outputs
        state.outputs[node.id] = [_Output(outputs[name]) for name in node.output_names]
        metric_digests, report_digests = split_recorded(outputs)
        _emit(
            state,
            [
                *code_drafts,
                EventDraft(
                    EventKind.STEP_CACHED,
                    {
                        **base,
                        "decision": "hit",
                        "reason": decision.reason,
                        "reused_step_run_id": decision.reused_step_run_id,
                        "outputs": outputs,
                        # Timestamps describe the executed step run; its event has them.
                        "metrics": {
                            name: {"digest": digest, **_series_summary(state, digest)}
                            for name, digest in metric_digests.items()
                        },
                        "reports": report_digests,
                        "ended_at": format_ts(utcnow()),
                        **(
                            {"contracts": cached_payload(planned, decision.reused_step_run_id)}
                            if planned is not None
                            else {}
                        ),
                    },
                    run_id=state.run_id,
                ),
            ],
        )
        observer.step_finished(node_id=node.id, status="cached", seconds=0.0)
        return

    _emit(
        state,
        [
            *code_drafts,
            EventDraft(
                EventKind.STEP_STARTED,
                {
                    k: base[k]
                    for k in (
                        "step_run_id",
                        "run_id",
                        "node_id",
                        "step",
                        "pipeline",
                        "code_source",
                        "seed",
                        "started_at",
                    )
                },
                run_id=state.run_id,
            ),
        ],
    )
    _flush(state)
    observer.step_started(node_id=node.id)
    kwargs = {name: _input_value(state, value) for name, value in node.inputs.items()}
    task = StepTask(
        node_id=node.id,
        step_name=step.name,
        func=step.func,
        kwargs=kwargs,
        output_names=node.output_names,
        seed=seed,
        allow_pickle=step.options.allow_pickle,
        uses=tuple(fp.distributions),
        contracts=planned.boundaries if planned is not None else (),
        contract_fingerprints=planned.fingerprints if planned is not None else {},
        input_digests={k: v for k, v in inputs.digests.items() if isinstance(v, str)},
    )
    result = executor.run(task, store=state.project.store, registry=state.project.registry)
    extra = recorded_artifacts(result.metrics, result.reports)
    if result.contract_report is not None:
        extra.append((result.contract_report, REPORT_ROLE))
    for stored in result.metrics.values():
        state.series_summaries[stored.series.digest] = stored.summary
    logs_digest = None
    if result.logs:
        data = result.logs.encode("utf-8")
        logs_digest = state.project.store.put_bytes(data)
        extra.append((blob_artifact(logs_digest, len(data), "bytes", "logs", {}), "logs"))
    common: dict[str, Any] = {
        **base,
        "decision": decision.decision,
        "reason": decision.reason,
        "resources": result.resources,
        "logs": logs_digest,
        "seeded": result.seeded,
        "metrics": {name: stored.reference() for name, stored in result.metrics.items()},
        "reports": {name: record.digest for name, record in result.reports.items()},
        "ended_at": format_ts(utcnow()),
    }
    if result.data_ops:
        # Only steps that sampled or split carry the key, so other events keep their shape.
        common["data_ops"] = result.data_ops
    if result.contracts is not None:
        common["contracts"] = result.contracts
    seconds = result.resources.get("wall_ns", 0) / 1e9
    if result.error is not None:
        error = f"{type(result.error).__name__}: {result.error}"
        _emit(
            state,
            [
                *_artifact_drafts(state, extra, step_run_id=step_run_id),
                EventDraft(
                    EventKind.STEP_FAILED,
                    {**common, "error": error, "traceback": result.traceback},
                    run_id=state.run_id,
                ),
            ],
        )
        observer.step_finished(node_id=node.id, status="failed", seconds=seconds)
        raise step_failure(
            result.error,
            f"step {node.id!r} failed in run {state.run_id}: {error}",
            step=node.id,
            run_id=state.run_id,
            step_run_id=step_run_id,
        ) from result.error
    records = [result.outputs[name] for name in node.output_names]
    state.outputs[node.id] = [_Output(r.digest, r) for r in records]
    for name, record in zip(node.output_names, records, strict=True):
        state.values.setdefault(record.digest, result.values[name])
    outputs_payload = with_recorded(
        {name: r.digest for name, r in zip(node.output_names, records, strict=True)},
        result.metrics,
        result.reports,
    )
    state.done_keys[key] = (step_run_id, outputs_payload)
    _emit(
        state,
        [
            *_artifact_drafts(
                state, [(r, "output") for r in records] + extra, step_run_id=step_run_id
            ),
            EventDraft(
                EventKind.STEP_COMPLETED,
                {**common, "outputs": outputs_payload},
                run_id=state.run_id,
            ),
        ],
    )
    observer.step_finished(node_id=node.id, status="completed", seconds=seconds)


def _code_drafts(state: _RunState, step: Step[..., Any], fp: CodeFingerprint) -> list[EventDraft]:
    """Store a step's source text once per run so later diffs can show it."""
    if id(step) in state.code_sources or not fp.source:
        return []
    data = fp.source.encode("utf-8")
    digest = state.project.store.put_bytes(data)
    state.code_sources[id(step)] = digest
    record = blob_artifact(digest, len(data), "bytes", "code", {"step": step.name})
    return _artifact_drafts(state, [(record, "code")], step_run_id=None)


def _series_summary(state: _RunState, digest: str) -> dict[str, Any]:
    """Return a metric series' summary (``count``, ``min``, ``max``, ``last``)."""
    found = state.series_summaries.get(digest)
    if found is None:
        record = state.project.ledger.reader().artifact(digest)
        found = ((record or {}).get("meta") or {}).get("summary")
        if found is None:
            # Recorded first by something else with equal bytes: compute it from them.
            blob = record["blob"] if record is not None else digest
            _, values = decode_series(state.project.store.get_bytes(blob))
            found = {"count": len(values), "min": min(values), "max": max(values)}
            found["last"] = values[-1]
        state.series_summaries[digest] = found
    return dict(found)


def _result_digests(state: _RunState, result: Any) -> Any:
    if isinstance(result, OutputRef):
        return state.outputs[result.node_id][result.index].digest
    if isinstance(result, list | tuple):
        return [_result_digests(state, item) for item in result]
    if isinstance(result, dict):
        return {k: _result_digests(state, v) for k, v in result.items()}
    return None
