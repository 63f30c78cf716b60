"""One step execution: seed, capture output, measure, call user code, store outputs.

:func:`execute_task` is what an executor runs, in-process or on a worker. It only writes
content-addressed blobs; it never touches the ledger (only the coordinator appends
events), so it can run anywhere the store is reachable. User code runs inside one error
boundary; its exception is returned, with the traceback text, for the coordinator to
record and re-raise as :class:`~pipetrail.errors.StepFailedError`.

While user code runs, a :class:`~pipetrail.execution.metrics.StepRecorder` is bound to the
context so that ``log_metric`` and ``attach_report`` reach it. Metric series are stored
when the call returns, also when it raised: the coordinator references them from
``step.failed`` too, while a failed step's outputs are never stored.

Contracts (:mod:`pipetrail.execution.boundaries`) are checked on the inputs before the
call and on the returned values before they are stored; a violation is the step's error
and nothing of its outputs is stored.

The values a step returned are not handed back: downstream steps get each output as it
loads from the store, exactly as on a cache hit. What comes back instead are the bytes
just written for each output (up to a size limit, see
:mod:`pipetrail.store.serializers.kept_bytes`), so the coordinator can load those values
without reading the store again.
"""

from __future__ import annotations

import logging
import traceback as traceback_module
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.capture import capture_output, measure, seeded
from pipetrail.capture.log_context import CURRENT_CONTEXT, StepTrace, otel_attached
from pipetrail.capture.log_lines import encode_log
from pipetrail.errors import PipetrailError, SerializationError
from pipetrail.execution.boundaries import ContractChecker
from pipetrail.execution.classification import store_outputs
from pipetrail.execution.metrics import ACTIVE_RECORDER, StepRecorder, StoredSeries

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.core.contract import Boundary
    from pipetrail.execution.classification import OutputPrivacy
    from pipetrail.store import ContentStore, SerializerRegistry, StoredArtifact

__all__ = ["ShippedError", "StepTask", "TaskResult", "error_type_name", "execute_task"]

_log = logging.getLogger(__name__)


@dataclass
class StepTask:
    """Everything needed to execute one node.

    Attributes:
        node_id: the node's id in the run.
        step_name: the step's name.
        func: the user function.
        kwargs: argument values, already loaded.
        output_names: expected outputs (a tuple of that length when several).
        seed: the derived seed applied before the call.
        allow_pickle: whether outputs may fall back to pickle.
        uses: distributions the step's code refers to (NumPy and PyTorch among them are
            seeded even if not imported yet).
        contracts: the step's contracts, checked on inputs before the call and on
            outputs before they are stored.
        contract_fingerprints: boundary label (``input:df``) -> the contract's digest.
        input_digests: input name -> the digest of its artifact (when it is one).
        privacy: the outputs' labels and the keys to seal sensitive ones (None: all
            public); see :mod:`pipetrail.execution.classification`.
        trace: the run, step run and trace the step's log lines and spans belong to.
        resources: what the step requests (``cpu``, ``memory`` in bytes, ``gpu``; empty:
            nothing declared); executors schedule by it (see
            :mod:`pipetrail.core.resources`).
    """

    node_id: str
    step_name: str
    func: Callable[..., Any]
    kwargs: dict[str, Any]
    output_names: tuple[str, ...]
    seed: int
    allow_pickle: bool = False
    uses: tuple[str, ...] = ()
    contracts: tuple[Boundary, ...] = ()
    contract_fingerprints: dict[str, str] = field(default_factory=dict)
    input_digests: dict[str, str] = field(default_factory=dict)
    privacy: OutputPrivacy | None = None
    trace: StepTrace | None = None
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class TaskResult:
    """What an execution produced.

    Attributes:
        outputs: output name -> stored artifact (empty when the step failed).
        kept: blob digest -> the bytes just stored for an output (outputs up to
            :data:`~pipetrail.store.serializers.kept_bytes.KEEP_LIMIT` bytes), to load
            the output for downstream steps without reading the store.
        logs: the captured stdout/stderr/logging lines, as stored (JSON lines, see
            :mod:`pipetrail.capture.log_lines`; "" when nothing was written).
        resources: wall time, CPU time and memory of the call.
        error: the exception user code (or output storage) raised, if any.
        traceback: the formatted traceback of ``error``.
        seeded: libraries the seed was applied to.
        metrics: metric name -> its stored series (also when the step failed).
        reports: report name -> the stored report (also when the step failed).
        contracts: the contract results for the step event (None without contracts).
        contract_report: the stored contract report (None without contracts).
        data_ops: records of the data operations (``pipetrail.data``) the step ran.
        worker: where it ran, when not in the coordinator's process (``host``, ``pid``,
            and the Dask worker's ``address``).
        small_objects: small objects a worker process stored but did not write
            (``{digest: bytes}``); the coordinator puts them in the store before it
            records anything naming them.
        chained_inputs: for a chained task, ``"SLOT/NAME"`` -> the digest of each
            upstream output it loaded (the coordinator checks they are the recorded ones).
    """

    outputs: dict[str, StoredArtifact] = field(default_factory=dict)
    kept: dict[str, bytes] = field(default_factory=dict)
    logs: str = ""
    resources: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    traceback: str = ""
    seeded: list[str] = field(default_factory=list)
    metrics: dict[str, StoredSeries] = field(default_factory=dict)
    reports: dict[str, StoredArtifact] = field(default_factory=dict)
    contracts: dict[str, Any] | None = None
    contract_report: StoredArtifact | None = None
    data_ops: list[dict[str, Any]] = field(default_factory=list)
    worker: dict[str, Any] | None = None
    small_objects: dict[str, bytes] = field(default_factory=dict)
    chained_inputs: dict[str, str] = field(default_factory=dict)


class ShippedError(Exception):
    """An exception a step raised that could not be sent back as itself.

    Attributes:
        type_name: the original exception's class name.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (ShippedError, (self.type_name, str(self)))


def error_type_name(error: BaseException) -> str:
    """The class name to record for a step's error (the original one when shipped)."""
    if isinstance(error, ShippedError):
        return error.type_name
    return type(error).__name__


def _split_outputs(task: StepTask, value: Any) -> dict[str, Any]:
    names = task.output_names
    if len(names) == 1:
        return {names[0]: value}
    if not isinstance(value, tuple | list) or len(value) != len(names):
        got = f"a {type(value).__name__}"
        if isinstance(value, tuple | list):
            got += f" of {len(value)} items"
        raise SerializationError(
            f"step {task.step_name!r} declares {len(names)} outputs ({', '.join(names)}) but "
            f"returned {got}; return a tuple with one value per output"
        )
    return dict(zip(names, value, strict=True))


def _fail(result: TaskResult, task: StepTask, what: str, exc: Exception) -> None:
    """Record ``exc`` (raised while storing ``what``) as the step's error."""
    if not isinstance(exc, PipetrailError):
        wrapped = SerializationError(
            f"step {task.step_name!r}: storing its {what} failed: {type(exc).__name__}: {exc}"
        )
        wrapped.__cause__ = exc
        exc = wrapped
    result.error = exc
    result.traceback = "".join(traceback_module.format_exception(exc))


def _store_recorded(task: StepTask, recorder: StepRecorder, result: TaskResult) -> None:
    """Store the logged metric series; keep what the step attached."""
    result.reports = dict(recorder.reports)
    result.data_ops = list(recorder.data_ops)
    try:
        result.metrics = recorder.store_series()
    except Exception as exc:  # noqa: BLE001 - store backends may raise library errors
        if result.error is None:
            _fail(result, task, "metrics", exc)
        else:
            # The step's own error is the one to report; its metrics are lost.
            _log.warning(
                "step %r failed, and storing its metrics failed too: %s", task.step_name, exc
            )


def execute_task(task: StepTask, store: ContentStore, registry: SerializerRegistry) -> TaskResult:
    """Run one step and store its outputs; never raises for errors in user code.

    The global random generators are seeded for the step and put back as they were
    afterwards (:func:`~pipetrail.capture.seeded`).
    """
    with seeded(task.seed, uses=task.uses) as names:
        return _execute_seeded(task, store, registry, names)


def _execute_seeded(
    task: StepTask, store: ContentStore, registry: SerializerRegistry, seeded_names: list[str]
) -> TaskResult:
    result = TaskResult()
    result.seeded = seeded_names
    # Most steps declare no contract: they make no checker (its calls would do nothing).
    contracts = ContractChecker(task) if task.contracts else None
    if contracts is not None and not contracts.inputs_hold(task.kwargs):
        # Input contracts are checked before the call: the step function never runs.
        contracts.finish(result, store, registry)
        return result
    trace = task.trace
    context = trace.log_context() if trace is not None else None
    # What ``bound(context)`` and ``recording(recorder)`` do, without their calls: the
    # step's log context and its recorder are bound for the call, and put back after.
    bound = CURRENT_CONTEXT.set(context) if context is not None else None
    try:
        with otel_attached(trace), capture_output() as captured, measure() as usage:
            # Created last, so metric timestamps count from (just before) the call.
            recorder = StepRecorder(task.step_name, store, registry, seed=task.seed)
            active = ACTIVE_RECORDER.set(recorder)
            try:
                value = task.func(**task.kwargs)
            except Exception as exc:  # noqa: BLE001 - the boundary around user code
                result.error = exc
                result.traceback = "".join(traceback_module.format_exception(exc))
            finally:
                ACTIVE_RECORDER.reset(active)
    finally:
        if bound is not None:
            CURRENT_CONTEXT.reset(bound)
    if not captured.is_empty:
        result.logs = encode_log(captured.lines(), context)
    result.resources = usage.to_record()
    _store_recorded(task, recorder, result)
    if result.error is not None:
        if contracts is not None:
            contracts.finish(result, store, registry)
        return result
    try:
        values = _split_outputs(task, value)
        if contracts is not None and not contracts.outputs_hold(values):
            contracts.finish(result, store, registry)
            return result
        result.outputs, result.kept = store_outputs(
            task.step_name,
            values,
            store,
            registry,
            allow_pickle=task.allow_pickle,
            privacy=task.privacy,
            data_ops=result.data_ops,
        )
    except Exception as exc:  # noqa: BLE001 - serializers may raise library errors
        # Nothing is recorded for outputs of a failed step; stored blobs are orphans that
        # garbage collection may remove.
        result.outputs = {}
        result.kept = {}
        _fail(result, task, "output", exc)
    if contracts is not None:
        contracts.finish(result, store, registry, result.outputs)
    return result
