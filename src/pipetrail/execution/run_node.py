"""Running one node of a run: its cache key, the cache decision, and its step events.

For each node the runner calls :func:`run_node`, which describes the node's inputs
(digests of upstream outputs and sources, fingerprints of plain parameters), computes its
cache key and decides (:func:`_decide`): a hit queues ``step.cached`` and reuses the
recorded outputs; otherwise ``step.started`` is flushed (at once, or within a bounded
delay for a step known to be fast: see :mod:`pipetrail.execution.flushing`), the inputs
are loaded, the step executes through the executor, and ``step.completed`` (or ``step.failed``, then
:class:`~pipetrail.errors.StepFailedError`) is queued with the artifacts it stored. The
payload keys of step events are described in :mod:`pipetrail.execution.runner`.

Inputs are loaded from the store for every consumer (each gets its own value), whether
the producer executed in this run or was a cache hit, so both hand it the same value.
For an output executed in this run, the bytes just written are read from memory while
the output still has consumers to run (:attr:`RunState.kept`).

How an output is read is recorded with the step run that stored it, not taken from the
artifact (one record per digest): ``step.completed`` and ``step.cached`` carry, next to
``outputs``, ``output_formats`` (name -> its reading: format, type, the meta its load
reads, and the stored object when it is not the digest's), and a consumer's key covers the
reading of each input it loads (``input_formats``), as well as the step's own output names
(``output_names``). See docs/adr/0013-how-an-output-is-read.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.capture import derive_seed
from pipetrail.capture.log_context import StepTrace
from pipetrail.core.clock import new_id, now_ts
from pipetrail.core.graph import OutputRef, SourceRef
from pipetrail.core.resources import resources_dict
from pipetrail.errors import QuotaExceededError, SerializationError
from pipetrail.execution.cache import CacheDecision, checked_cache_key
from pipetrail.execution.contract_records import cached_payload
from pipetrail.execution.executors import InlineExecutor
from pipetrail.execution.node_inputs import describe_inputs, flat_inputs, recorded_record
from pipetrail.execution.recompute import hit_metrics, load_inputs
from pipetrail.execution.records import (
    is_recorded_output,
    split_recorded,
)
from pipetrail.execution.run_events import code_drafts
from pipetrail.execution.run_privacy import run_privacy
from pipetrail.execution.run_state import (
    InputCopies,
    NodeOutput,
    emit,
    flush,
    flush_before_code,
    speed_key,
    step_code,
)
from pipetrail.execution.step_result import PreparedStep, finish_step, release_inputs, retry
from pipetrail.hashing.canonical import is_plain
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.events import encoded_draft
from pipetrail.store.serializers.base import copies_under
from pipetrail.store.serializers.kept_bytes import kept_view
from pipetrail.store.serializers.registry import record_from_reading

if TYPE_CHECKING:
    from pipetrail.core.graph import Node
    from pipetrail.execution.executors import Executor
    from pipetrail.execution.observer import RunObserver
    from pipetrail.execution.run_state import RunOptions, RunState
    from pipetrail.execution.task import StepTask
    from pipetrail.store.serializers.base import StoredArtifact

__all__ = ["prepare_node", "run_node"]

# The members of a step event's payload the key's encoding checked: its components, and
# the inputs they give (flat_inputs of its input digests: their names and digests).
_PLAIN_KEYED = frozenset({"components", "inputs"})
_NOTHING_KNOWN: frozenset[str] = frozenset()
_NOTHING_UNHASHABLE: list[str] = []


def _decide(
    state: RunState,
    node: Node,
    key: str,
    unhashable: list[str],
    options: RunOptions,
    rerun_reason: str | None = None,
) -> CacheDecision:
    if rerun_reason is not None:
        # Its output was found corrupt when a later step read it (recompute.load_inputs).
        return CacheDecision("miss", rerun_reason)
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
            formats=earlier[2],
        )
    name = node.step.name
    ran = state.steps_ran.get(name)
    if ran is None:
        ran = state.steps_ran[name] = state.project.ledger.reader().step_ran(name)
    if not ran:
        # No step run of the step was recorded when the run first looked up one of its
        # keys (the key covers the step's name), so a lookup could only find one of this
        # run's own since, each in done_keys, or one a concurrent run recorded since: a
        # hit no lookup is owed (that run might as well have been a moment later). A
        # first run of a step so spares one query per node.
        return CacheDecision("miss", "no earlier step run has this cache key")
    ahead = state.cache_ahead
    if ahead is None:
        from pipetrail.execution.cache_ahead import CacheAhead  # a run that looks up

        # Twice the run's nodes: a re-run reads each of its step runs ahead about once.
        ahead = state.cache_ahead = CacheAhead(
            state.run_id,
            2 * len(state.graph.nodes) + 64,
            reader=state.project.ledger.reader(),
        )
    found = ahead.hit(ahead.reader or state.project.ledger.reader(), key)
    if found is None:
        return CacheDecision("miss", "no earlier step run has this cache key")
    origin, recorded, readings = found
    outputs: dict[str, str] = recorded or {}
    formats: dict[str, Any] = readings or {}
    records: dict[str, StoredArtifact] = {}
    problem = _unusable(state, node, origin, outputs, formats, records)
    if problem is not None:
        return CacheDecision("miss", problem)
    return CacheDecision(
        "hit",
        f"same key as step run {origin}",
        reused_step_run_id=origin,
        outputs=outputs,
        formats=formats,
        records=records,
    )


def _unusable(
    state: RunState,
    node: Node,
    origin: str,
    outputs: dict[str, str],
    formats: dict[str, Any],
    records: dict[str, StoredArtifact],
) -> str | None:
    """Say why the outputs a cache hit would reuse cannot be used, or return None.

    Each output the node declares must be recorded, with how it is read, and its object
    must be in the store; so must every metric series and report. The record each
    declared output is loaded with is added to ``records``.
    """
    blobs: dict[str, str | None] = {}
    for name in node.output_names:
        if name not in outputs:
            recorded = ", ".join(repr(n) for n in outputs if not is_recorded_output(n))
            return (
                f"the cached step run {origin} recorded no output {name!r} (its outputs: "
                f"{recorded or 'none'}); executing again"
            )
        if name not in formats:
            return (
                f"the cached step run {origin} does not record how its output {name!r} is "
                "read (it was recorded by an older pipetrail); executing again"
            )
        try:
            record = records[name] = record_from_reading(outputs[name], formats[name])
        except SerializationError as exc:
            return f"the cached step run {origin} cannot be reused: {exc} Executing again."
        blobs[name] = record.blob
    if len(outputs) > len(blobs):  # a metric series or report: read through its artifact
        reader = state.project.ledger.reader()
        for name, digest in outputs.items():
            if name not in blobs:
                row = reader.artifact(digest)
                blobs[name] = None if row is None else row["blob"]
    store = state.project.store
    # Found in the store with the step runs read ahead, while nothing has left it since.
    stored = state.cache_ahead.stored(store) if state.cache_ahead is not None else ()
    for name, blob in blobs.items():
        if blob is None or (blob not in stored and not store.exists(blob)):
            return (
                f"the cached output {name!r} ({outputs[name][:19]}) is missing from the "
                "store; executing again"
            )
    return None


def _queue_hit(
    state: RunState,
    node: Node,
    decision: CacheDecision,
    base: dict[str, Any],
    metrics: dict[str, Any],
    planned: Any,
    code_events: list[EventDraft],
    plain: frozenset[str],
) -> None:
    """Record a hit's outputs in ``state`` and queue its ``step.cached`` event.

    The event's payload is ``base`` (the step event's common members, not used after),
    completed here.
    """
    outputs = decision.outputs or {}
    readings = decision.formats or {}
    made = decision.records or {}
    formats: dict[str, Any] = {}
    reused: list[NodeOutput] = []
    for name in node.output_names:
        reading = formats[name] = readings[name]
        record = made.get(name)
        reused.append(
            NodeOutput(
                outputs[name],
                record_from_reading(outputs[name], reading) if record is None else record,
                reading=reading,
            )
        )
    state.outputs[node.id] = reused
    base["decision"] = "hit"
    base["reason"] = decision.reason
    base["reused_step_run_id"] = decision.reused_step_run_id
    base["outputs"] = outputs
    base["output_formats"] = formats
    # Timestamps describe the executed step run; its event has them.
    base["metrics"] = metrics
    base["reports"] = split_recorded(outputs)[1] if len(outputs) > len(formats) else {}
    base["ended_at"] = now_ts()
    if planned is not None:
        base["contracts"] = cached_payload(planned, decision.reused_step_run_id)
    hit = encoded_draft(EventKind.STEP_CACHED, base, run_id=state.run_id, plain=plain)
    emit(state, [*code_events, hit] if code_events else [hit])


# The key components describe_inputs gives, plain when the node's inputs are flat.
_FLAT_INPUTS = frozenset({"inputs", "input_formats"})


def _plain_components(
    state: RunState, step: Any, fp: Any, planned: Any
) -> tuple[frozenset[str], frozenset[str]]:
    """The components of ``step``'s keys that are plain, the same for its every node.

    Computed on the step's first node, remembered in ``state.plain_parts``.

    Each is the same object for every node of the step (its code fingerprint's parts and
    distributions, its declared version and output names, its contracts' fingerprints),
    so walked once per run (:func:`~pipetrail.hashing.canonical.is_plain`): the keys'
    encoding need not walk them again. The second set adds the components of flat
    inputs (:attr:`~pipetrail.execution.node_inputs.NodeInputs.flat`).
    """
    options = step.options
    shared = {
        "code_parts": fp.parts,
        "distributions": fp.distributions,
        "version": options.version,
        "output_names": options.outputs,
    }
    if planned is not None:
        shared["contracts"] = planned.fingerprints
    known = frozenset(name for name, value in shared.items() if is_plain(value))
    found = state.plain_parts[id(step)] = (known, known | _FLAT_INPUTS)
    return found


def _load_value(state: RunState, output: NodeOutput, *, by_digest: bool = False) -> Any:
    """Load one upstream output, a new value on every call (see the module docstring).

    ``by_digest``: the step runs on a worker that reaches the store; a large input is
    then handed over as its record, for the worker to load (see
    :mod:`pipetrail.execution.executors.shipping`).
    """
    stored = output.record
    if stored is None:
        stored = output.record = recorded_record(state, output.digest)
    if by_digest:
        from pipetrail.execution.executors.shipping import StoredInput, ships_by_digest

        if ships_by_digest(stored):
            return StoredInput(stored)
    # decrypts a sensitive output, when the access gate allows the read (and records it)
    store = state.project.store_for(stored, action="run", run_id=state.run_id)
    data = state.kept.get(stored.blob)
    if data is not None:
        store = kept_view(store, {stored.blob: data})
    with copies_under(state.copies.folder):
        return state.project.registry.load(stored, store)


def _input_value(state: RunState, value: Any, by_digest: bool = False) -> Any:
    if isinstance(value, OutputRef):
        output = state.outputs[value.node_id][value.index]
        return _load_value(state, output, by_digest=by_digest)
    if isinstance(value, SourceRef):
        return state.sources[value][1]
    if isinstance(value, list):
        return [_input_value(state, v, by_digest) for v in value]
    if isinstance(value, tuple):
        return tuple(_input_value(state, v, by_digest) for v in value)
    if isinstance(value, dict):
        return {k: _input_value(state, v, by_digest) for k, v in value.items()}
    return value


def run_node(
    state: RunState,
    node: Node,
    options: RunOptions,
    executor: Executor,
    observer: RunObserver,
    *,
    rerun_reason: str | None = None,
) -> None:
    """Reuse or execute one node, queue its step events, and record its outputs in ``state``.

    ``step.started`` is flushed before the step executes, unless the step's code ran fast
    the last time it ran in this process (then within a bounded delay: see
    :mod:`pipetrail.execution.flushing`); the other events wait for the next flush. An
    input whose stored object is corrupt is recomputed by executing its producer again
    (``rerun_reason`` is then the reason its step event records; see
    :mod:`pipetrail.execution.recompute`). A failed attempt is executed again while the
    step's retries last (:func:`~pipetrail.execution.step_result.retry`).

    Raises:
        StepFailedError: the step raised (its ``step.failed`` event is queued).
        IntegrityError: a corrupt input could not be recomputed.
    """
    prepared = prepare_node(state, node, options, executor, observer, rerun_reason=rerun_reason)
    if prepared is None:
        return
    step_key = prepared.speed_key
    while True:
        with step_code(state, step_key):  # appends what is queued should the code run long
            result = executor.run(
                prepared.task, store=state.project.store, registry=state.project.registry
            )
        if not retry(prepared, result):
            break
    if state.quotas is not None:
        state.quotas.release()
    finish_step(state, prepared, result, observer)


def prepare_node(
    state: RunState,
    node: Node,
    options: RunOptions,
    executor: Executor,
    observer: RunObserver,
    *,
    rerun_reason: str | None = None,
    flush_first: bool = True,
    step_run_id: str | None = None,
    chained: bool = False,
) -> PreparedStep | None:
    """Decide one node: queue ``step.cached``, or ``step.started`` and load its inputs.

    ``flush_first=False`` leaves the queued events to the caller: a step running in
    another process cannot take the coordinator down with what is queued (see
    :mod:`pipetrail.execution.scheduler`). ``chained=True`` records the start of a step
    whose task was already submitted, chained on its upstream tasks (its
    ``step_run_id`` given): its inputs are not loaded here (the task's stay empty, see
    :func:`load_task_inputs`), and the step executes whatever its inputs, since only a
    step whose cache is off is chained.

    Returns:
        None for a cache hit (its events are queued, its outputs known), else the step
        to execute, with its task.

    Raises:
        IntegrityError: a corrupt input could not be recomputed.
        LoadError: an input could not be loaded.
    """
    step = node.step
    step_id = id(step)
    step_name = step.name  # a property: read once
    fp = state.fingerprints[step_id]
    inputs = describe_inputs(state, node)
    identity = state.identities.identity[node.id]
    seed = derive_seed(state.run_seed, identity)
    components: dict[str, Any] = {
        "step": step_name,
        "code": fp.digest,
        "code_parts": fp.parts,
        "version": step.options.version,
        "output_names": list(node.output_names),
        "inputs": inputs.digests,
        "input_formats": inputs.formats,
        "params": inputs.params,
        "distributions": fp.distributions,
        "seed": seed,
        "allow_pickle": step.options.allow_pickle,
        "formats": state.project.registry.formats_label(),
    }
    planned = state.contracts.get(step_id)
    if planned is not None:
        # Only steps with contracts have the component: other keys stay as they were.
        components["contracts"] = planned.fingerprints
    labels = run_privacy(state).labels[node.id]
    classification = labels.recorded()
    if classification:
        # Only labelled steps have the component: other keys stay as they were.
        components["classification"] = classification
    shared = state.plain_parts.get(step_id) or _plain_components(state, step, fp, planned)
    known = shared[inputs.flat]
    if node.output_names is not step.options.outputs:
        known = known - {"output_names"}  # the node's own names: walked
    key, key_plain = checked_cache_key(components, known)
    # The key's encoding checked every component but code_parts: when the parts are plain
    # too, the step events' encoding need not walk the components again, nor the inputs
    # flattened from them (encoded_draft).
    plain = _PLAIN_KEYED if key_plain and "code_parts" in known else _NOTHING_KNOWN
    unhashable = (
        [*fp.unhashable, *inputs.unhashable, *(planned.unhashable if planned else ())]
        if fp.unhashable or inputs.unhashable or (planned is not None and planned.unhashable)
        else _NOTHING_UNHASHABLE
    )
    decision = _decide(state, node, key, unhashable, options, rerun_reason)
    step_run_id = step_run_id or new_id()
    started_at = now_ts()
    code_source = state.code_sources.get(step_id)
    if code_source is None:  # the step's first node in this run: its source is stored
        code_events = code_drafts(state, step, fp)
        code_source = state.code_sources.get(step_id)
    else:
        code_events = []
    base = {
        "step_run_id": step_run_id,
        "run_id": state.run_id,
        "node_id": node.id,
        "step": step_name,
        "pipeline": state.graph.name,
        # What the node computes, whatever its position (its seed derives from it), and
        # the name given at the call site: see pipetrail.execution.node_identity.
        "identity": identity,
        "cache_key": key,
        "code_digest": fp.digest,
        "code_source": code_source,
        "components": components,
        "inputs": dict(inputs.digests) if inputs.flat else flat_inputs(inputs.digests),
        "seed": seed,
        "started_at": started_at,
    }
    # Members only some steps have (the payload is encoded with its keys sorted).
    if node.name is not None:
        base["name"] = node.name
    if classification:
        base["classification"] = classification
    requested = step.options.resources or options.resources
    if requested:  # only steps that request resources carry the key
        base["resource_requests"] = resources_dict(requested)
    metrics: dict[str, Any] = {}
    if (
        decision.decision == "hit"
        and decision.outputs
        and len(decision.outputs) > len(node.output_names)
    ):  # a corrupt metric series makes it a miss (a hit with only its outputs has none)
        decision, metrics = hit_metrics(state, decision)
    if decision.decision == "hit" and decision.outputs is not None:
        _queue_hit(state, node, decision, base, metrics, planned, code_events, plain)
        observer.step_finished(node_id=node.id, status="cached", seconds=0.0)
        release_inputs(state, node, ())
        return None

    started_payload = {
        "step_run_id": step_run_id,
        "run_id": state.run_id,
        "node_id": node.id,
        "step": step_name,
        "pipeline": base["pipeline"],
        "identity": identity,
        **({} if node.name is None else {"name": node.name}),
        "code_source": base["code_source"],
        "seed": seed,
        "started_at": started_at,
    }
    if requested:  # what it asks for shows while it runs (only steps that ask)
        started_payload["resource_requests"] = base["resource_requests"]
    started = [*code_events, EventDraft(EventKind.STEP_STARTED, started_payload, state.run_id)]
    if state.quotas is None:
        emit(state, started)
    else:
        # The check and the step's start share one write transaction (execution.quotas):
        # refused here, before the step starts.
        try:
            state.quotas.admit(node.id, lambda check: flush(state, started, precondition=check))
        except QuotaExceededError:
            emit(state, code_events)  # the code is recorded all the same
            raise
    step_key = speed_key(state, step)
    if flush_first:
        flush_before_code(state, step_key)
    observer.step_started(node_id=node.id)
    state.executed[step_run_id] = None  # its place in start order (finish_step fills it)
    prepared = PreparedStep(
        node=node,
        task=node_task(state, node, options, step_run_id, {}, seed=seed),
        step_run_id=step_run_id,
        base=base,
        decision=decision,
        key=key,
        retries=step.options.retries or options.retries,
        loaded=False,
        plain=plain,
        speed_key=step_key,
    )
    if not chained:
        load_task_inputs(state, prepared, options, executor, observer)
    return prepared


def node_task(
    state: RunState,
    node: Node,
    options: RunOptions,
    step_run_id: str,
    kwargs: dict[str, Any],
    input_digests: dict[str, str] | None = None,
    *,
    seed: int | None = None,
) -> StepTask:
    """The task executing ``node`` with the arguments ``kwargs``.

    ``seed``: the node's derived seed, when the caller has it (derived here otherwise).
    """
    step = node.step
    fp = state.fingerprints[id(step)]
    planned = state.contracts.get(id(step))
    return _step_task_class()(
        node_id=node.id,
        step_name=step.name,
        func=step.func,
        kwargs=kwargs,
        output_names=node.output_names,
        seed=(
            derive_seed(state.run_seed, state.identities.identity[node.id])
            if seed is None
            else seed
        ),
        allow_pickle=step.options.allow_pickle,
        uses=tuple(fp.distributions),
        contracts=planned.boundaries if planned is not None else (),
        contract_fingerprints=planned.fingerprints if planned is not None else {},
        input_digests=dict(input_digests or {}),
        privacy=run_privacy(state).task_privacy(node.id),
        trace=StepTrace(state.run_id, node.id, step_run_id, otel=state.telemetry is not None),
        resources=dict(step.options.resources or options.resources),
    )


_TASK_CLASS: list[type[StepTask]] = []


def _step_task_class() -> type[StepTask]:
    """:class:`~pipetrail.execution.task.StepTask`, imported on first use.

    A run whose steps are all cache hits executes nothing, so the module is not imported
    with this one; remembered here, since an import statement in :func:`node_task` would
    cost an import lookup for every step.
    """
    if not _TASK_CLASS:
        from pipetrail.execution.task import StepTask

        _TASK_CLASS.append(StepTask)
    return _TASK_CLASS[0]


def load_task_inputs(
    state: RunState,
    prepared: PreparedStep,
    options: RunOptions,
    executor: Executor,
    observer: RunObserver,
) -> None:
    """Load the inputs of a prepared step into its task (on the coordinator).

    An input found corrupt is recomputed first (its producer executes again), and the
    step's key and inputs recorded are then computed again.

    Raises:
        IntegrityError: a corrupt input could not be recomputed.
        LoadError: an input could not be loaded.
    """
    node = prepared.node
    # Each executing node has its own folder of input copies: several may be in flight.
    copies = state.copies = InputCopies()
    # Workers of pipetrail's own executors open the store: large inputs go as digests.
    by_digest = getattr(executor, "loads_stored_inputs", False) is True
    kwargs, rerun = load_inputs(
        state,
        node,
        lambda value: _input_value(state, value, by_digest),
        lambda producer, reason: run_node(
            state, producer, options, executor, observer, rerun_reason=reason
        ),
    )
    components = prepared.base["components"]
    if rerun:  # a producer executed again: its outputs, so this step's key, may differ now
        inputs = describe_inputs(state, node)
        components["inputs"] = inputs.digests
        components["input_formats"] = inputs.formats
        prepared.key, key_plain = checked_cache_key(components)
        if not key_plain:  # the step events' encoding walks the components again
            prepared.plain = _NOTHING_KNOWN
        prepared.base.update(cache_key=prepared.key, inputs=flat_inputs(inputs.digests))
    if state.copies is not copies:  # a producer ran again meanwhile, with its own copies
        prepared.copies = (copies, state.copies)
    else:
        prepared.copies = (copies,)
    if not state.capture_ready and isinstance(executor, InlineExecutor):
        # Install output capture's logging once for the steps of the run, not per step.
        from pipetrail.capture.output import logging_ready

        state.exits.enter_context(logging_ready())
        state.capture_ready = True
    prepared.task.kwargs = kwargs
    prepared.task.input_digests = {
        k: v for k, v in components["inputs"].items() if isinstance(v, str)
    }
    prepared.loaded = True
