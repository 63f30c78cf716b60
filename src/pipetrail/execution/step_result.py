"""What the coordinator does with a step's result: retries, step events, outputs.

The second half of executing a node (the first is
:func:`~pipetrail.execution.run_node.prepare_node`): a failed attempt is executed again
while the step's retries last (:func:`retry`, each failure recorded under ``attempts``
in the step's event), then :func:`finish_step` stores the captured logs, queues
``step.completed`` (or ``step.failed`` and raises
:class:`~pipetrail.errors.StepFailedError`) and records the outputs in the run's state.
Runs on the coordinator only, whichever executor ran the step: it queues events, never
appends them (see :mod:`pipetrail.execution.run_state`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import now_ts
from pipetrail.errors import IntegrityError, ResourceError, WorkerLostError
from pipetrail.execution.classification import declassified
from pipetrail.execution.contract_records import REPORT_ROLE, step_failure
from pipetrail.execution.records import recorded_artifacts, with_recorded
from pipetrail.execution.run_events import artifact_drafts
from pipetrail.execution.run_privacy import run_privacy
from pipetrail.execution.run_state import NodeOutput, emit
from pipetrail.ledger import EventKind
from pipetrail.ledger.events import encoded_draft
from pipetrail.store.serializers.parquet_format import linked_profiles

if TYPE_CHECKING:
    from pipetrail.core.graph import Node
    from pipetrail.execution.cache import CacheDecision
    from pipetrail.execution.observer import RunObserver
    from pipetrail.execution.run_state import InputCopies, RunState
    from pipetrail.execution.task import StepTask, TaskResult

__all__ = ["PreparedStep", "finish_step", "release_inputs", "retry"]


@dataclass
class PreparedStep:
    """A node about to execute: its task and what its step events need.

    Attributes:
        node: the node.
        task: what the executor runs.
        step_run_id: the step run's id (its ``step.started`` is queued).
        base: the payload keys every event of the step run carries.
        decision: why it executes (miss, forced miss, disabled).
        key: its cache key.
        copies: the folders of its inputs' disk copies, removed when it has run.
        retries: how many failed attempts may be executed again.
        attempts: the failed attempts so far (recorded in its event when not empty).
        loaded: whether ``task`` holds its inputs (a chained step's task, submitted
            before its inputs existed, does not: see :mod:`pipetrail.execution.scheduler`).
        plain: the members of ``base`` its key's encoding showed to be plain
            (``components`` and ``inputs`` when orjson encoded them all; see
            :func:`~pipetrail.ledger.events.encoded_draft`): its end event's encoding
            does not walk them again.
        speed_key: the step's key in the run's step times
            (:func:`~pipetrail.execution.run_state.speed_key`).
    """

    node: Node
    task: StepTask
    step_run_id: str
    base: dict[str, Any]
    decision: CacheDecision
    key: str
    copies: tuple[InputCopies, ...] = ()
    retries: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    loaded: bool = True
    plain: frozenset[str] = frozenset()
    speed_key: str = ""


def retry(prepared: PreparedStep, result: TaskResult) -> bool:
    """Record a failed attempt and say whether to execute the step again.

    Returns False for a success, or for a failure once the retries are used up (the
    failure is then the step's, recorded by :func:`finish_step`), and for a step no
    worker has the resources for (:class:`~pipetrail.errors.ResourceError`).
    """
    if result.error is None or len(prepared.attempts) >= prepared.retries:
        return False
    if isinstance(result.error, ResourceError):  # no worker can run it: again would not help
        return False
    prepared.attempts.append(
        {
            "attempt": len(prepared.attempts) + 1,
            "error": _error_text(result.error),
            "worker_lost": isinstance(result.error, WorkerLostError),
            "ended_at": now_ts(),
        }
    )
    return True


def _put_small_objects(state: RunState, objects: dict[str, bytes]) -> None:
    """Store the small objects a worker handed back (held until the next flush)."""
    store = state.project.store
    for digest, data in objects.items():
        if store.put_bytes(data) != digest:
            raise IntegrityError(
                f"a worker sent object {digest} with bytes that do not hash to it; "
                "nothing was stored under that digest"
            )


def _error_text(error: BaseException) -> str:
    """How a step's error is recorded: its class name (as raised, on any executor) and text."""
    from pipetrail.execution.task import error_type_name

    return f"{error_type_name(error)}: {error}"


def release_inputs(state: RunState, node: Node, copies: tuple[InputCopies, ...]) -> None:
    """Count ``node`` as run for its producers; drop bytes no later node reads.

    Also removes the disk copies its inputs were loaded into (folders).
    """
    for held in copies:
        held.clear()
    for up in node.upstream():
        state.consumers_left[up] -= 1
        if state.consumers_left[up] <= 0:
            for output in state.outputs.get(up, ()):
                if output.stored and output.record is not None:
                    state.kept.release(output.record.blob)


# Members of a step's end payload that pipetrail makes of strings and integers alone,
# whatever the step did: ``inputs`` (input name -> digest, see
# execution.node_inputs.flat_inputs), ``resources`` (ResourceUsage.to_record) and
# ``seeded`` (library names). orjson writes such a member as the reference encoder does,
# or refuses it (a str subclass), so its encoding need not walk them (encoded_draft).
_MADE_PLAIN = frozenset({"inputs", "resources", "seeded"})
# (PreparedStep.plain, metrics shown plain) -> it with _MADE_PLAIN, and ``metrics`` when
# shown plain (a step has one of a few).
_END_PLAIN: dict[tuple[frozenset[str], bool], frozenset[str]] = {}
_METRICS = frozenset({"metrics"})


def _end_plain(plain: frozenset[str], metrics: bool = False) -> frozenset[str]:
    """The members of a step's end payload its encoding need not walk.

    ``metrics``: every logged series' reference is plain (``StoredSeries.plain``; no
    series at all is an empty dict, plain too).
    """
    found = _END_PLAIN.get((plain, metrics))
    if found is None:
        found = plain | _MADE_PLAIN
        if metrics:
            found |= _METRICS
        _END_PLAIN[(plain, metrics)] = found
    return found


def finish_step(
    state: RunState, prepared: PreparedStep, result: TaskResult, observer: RunObserver
) -> None:
    """Queue the step's end event and record its outputs in ``state``.

    Raises:
        StepFailedError: the step failed (its ``step.failed`` event is queued).
        IntegrityError: a small object a worker sent does not hash to its digest.
    """
    if result.small_objects:
        _put_small_objects(state, result.small_objects)
    node, base, decision, key = prepared.node, prepared.base, prepared.decision, prepared.key
    step_run_id = prepared.step_run_id
    release_inputs(state, node, prepared.copies)
    recorded = bool(result.metrics or result.reports)  # most steps log and attach nothing
    extra = recorded_artifacts(result.metrics, result.reports) if recorded else []
    # The series (and timestamps) whose meta and reference were shown plain when stored:
    # their events' encoding does not walk them again (by identity: these very records).
    plain_meta: set[int] = set()
    metrics_plain = True
    for stored in result.metrics.values():
        plain_meta.add(id(stored.timestamps))
        if stored.plain:
            plain_meta.add(id(stored.series))
        else:
            metrics_plain = False
    if result.contract_report is not None:
        extra.append((result.contract_report, REPORT_ROLE))
    for stored in result.metrics.values():
        state.series_summaries[stored.series.digest] = stored.summary
    logs_digest = None
    privacy = run_privacy(state)
    if result.logs:
        data = result.logs.encode("utf-8")
        logs_record = privacy.stored_logs(node.id, data)  # sealed if sensitive
        logs_digest = logs_record.digest
        extra.append((logs_record, "logs"))
    common: dict[str, Any] = {
        **base,
        "decision": decision.decision,
        "reason": decision.reason,
        "resources": result.resources,
        "logs": logs_digest,
        "seeded": result.seeded,
        "metrics": (
            {name: stored.reference() for name, stored in result.metrics.items()}
            if result.metrics
            else {}
        ),
        "reports": (
            {name: record.digest for name, record in result.reports.items()}
            if result.reports
            else {}
        ),
        "ended_at": now_ts(),
    }
    if prepared.attempts:
        # Only a step executed more than once carries the key.
        common["attempts"] = prepared.attempts
    if result.worker is not None:
        common["worker"] = result.worker
    if result.data_ops:
        # Only steps that sampled or split carry the key, so other events keep their shape.
        common["data_ops"] = privacy.recorded_ops(node.id, result.data_ops)
    if result.contracts is not None:
        common["contracts"] = result.contracts
    seconds = result.resources.get("wall_ns", 0) / 1e9
    if result.error is not None:
        error = _error_text(result.error)
        emit(
            state,
            [
                *artifact_drafts(
                    state, extra, step_run_id=step_run_id, queued=True, plain_meta=plain_meta
                ),
                encoded_draft(
                    EventKind.STEP_FAILED,
                    {**common, "error": error, "traceback": result.traceback},
                    run_id=state.run_id,
                    plain=_end_plain(prepared.plain, metrics_plain),
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
    registry = state.project.registry
    state.outputs[node.id] = [
        NodeOutput(r.digest, r, reading=registry.reading(r), stored=True) for r in records
    ]
    formats = {
        name: output.reading
        for name, output in zip(node.output_names, state.outputs[node.id], strict=True)
    }
    if state.consumers_left[node.id] > 0:
        for record in records:
            written = result.kept.get(record.blob)
            if written is not None:
                state.kept.add(record.blob, written)
    outputs_payload = {name: r.digest for name, r in zip(node.output_names, records, strict=True)}
    if recorded:
        outputs_payload = with_recorded(outputs_payload, result.metrics, result.reports)
    state.done_keys[key] = (step_run_id, outputs_payload, formats)
    # The failure path is behind: the end event's payload is ``common`` itself, completed.
    completed = common
    completed["outputs"] = outputs_payload
    completed["output_formats"] = formats
    labels = privacy.labels[node.id]
    if labels.lowered:
        completed["declassified"] = declassified(labels, result.data_ops)
    # Imported here: a run whose steps are all cache hits never loads the metric recorder.
    from pipetrail.execution.metrics import output_metrics

    found = output_metrics(
        state.project.store,
        # A sensitive output's numbers would show its content: none are recorded.
        {n: r for n, r in zip(node.output_names, records, strict=True) if not r.meta.get("sealed")},
    )
    if found:  # only steps returning numbers in a dict carry the key
        completed["output_metrics"] = found
    if result.resources:  # what the run's end compares with the step's history
        state.executed[step_run_id] = {
            "node_id": node.id,
            "step": base["step"],
            "resources": result.resources,
            **(
                {"resource_requests": base["resource_requests"]}
                if "resource_requests" in base
                else {}
            ),
        }
    emit(
        state,
        [
            *artifact_drafts(
                state,
                [(r, "output") for r in records] + linked_profiles(records) + extra,
                step_run_id=step_run_id,
                queued=True,
                plain_meta=plain_meta,
            ),
            encoded_draft(
                EventKind.STEP_COMPLETED,
                completed,
                run_id=state.run_id,
                plain=_end_plain(prepared.plain, metrics_plain),
            ),
        ],
    )
    observer.step_finished(node_id=node.id, status="completed", seconds=seconds)
