"""What one run knows while it runs, and the queue of events it has yet to append.

Shared by the runner (:mod:`pipetrail.execution.runner`) and the modules it delegates to
(:mod:`~pipetrail.execution.run_sources`, :mod:`~pipetrail.execution.run_node`,
:mod:`~pipetrail.execution.run_events`). Events are queued with :func:`emit` and appended
by :func:`flush`; nothing else appends to the ledger during a run. Imports no other
runner module, so that they can all import it.

Step output *values* are not kept: downstream steps load each output from the store (or
from the bytes just written, held in :attr:`RunState.kept` until the output's last
consumer has run), so an executed step and a cache hit hand them the same value. Copies
that loading makes on disk (folder outputs) go to :attr:`RunState.copies`, removed once
the step that received them has run.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.errors import StoreError
from pipetrail.execution.flushing import (
    MAX_DELAY_S,
    PROCESS_STEP_TIMES,
    FlushTimer,
    StepTimes,
    commit_small_writes,
    must_flush_before,
)
from pipetrail.execution.interrupts import deferred_interrupts
from pipetrail.execution.node_identity import NodeIdentities
from pipetrail.ledger.ledger import Ledger
from pipetrail.store.serializers.kept_bytes import KeptBytes

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from types import TracebackType

    from pipetrail.core.graph import PipelineGraph, SourceRef
    from pipetrail.core.step import Step
    from pipetrail.execution.cache_ahead import CacheAhead
    from pipetrail.execution.contract_records import StepContracts
    from pipetrail.execution.executors import Executor
    from pipetrail.execution.observer import RunObserver
    from pipetrail.execution.params_files import ParamsFile
    from pipetrail.execution.parity import ParityReport
    from pipetrail.execution.project import Project
    from pipetrail.execution.snapshots import SourceSnapshots
    from pipetrail.execution.telemetry import TelemetrySettings
    from pipetrail.hashing.code import CodeFingerprint
    from pipetrail.ledger import EventDraft
    from pipetrail.store import StoredArtifact

__all__ = [
    "InputCopies",
    "NodeOutput",
    "RunOptions",
    "RunState",
    "close_flush_timer",
    "emit",
    "flush",
    "flush_before_code",
    "speed_key",
    "step_code",
]


@dataclass
class RunOptions:
    """How to run a pipeline (everything but its parameters).

    Attributes:
        cache: ``False`` executes every step (``--no-cache``).
        seed: the run seed; None uses the project's configured seed.
        executor: where steps execute: an executor, or its name (``inline``,
            ``processes``, ``dask``, ``dask=tcp://HOST:PORT``); None uses the project's.
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
        name: the run's name, recorded with it (``--name``).
        tags: the run's first tags, recorded with it (``--tag KEY=VALUE``).
        purpose: what starts the run: ``run`` (an ordinary run), ``reproduce`` or
            ``check``; only ordinary runs are what ``latest`` means.
        retries: how many times a failed step that declares no ``retries`` of its own
            is executed again.
        keep_going: when a step fails, still run the steps that do not depend on it
            (the run is failed all the same; ``--keep-going``).
        sweep: the run's place in a sweep, ``{"id", "index", "size"}``, recorded as the
            ``sweep`` field of ``run.started`` (see :mod:`pipetrail.execution.sweep`).
        resources: what each step that declares no ``resources`` asks for
            (normalized, see :mod:`pipetrail.core.resources`).
    """

    cache: bool = True
    seed: int | None = None
    executor: Executor | str | None = None
    observer: RunObserver | None = None
    source_file: str | None = None
    argv: list[str] | None = None
    snapshots: SourceSnapshots | None = None
    reproduces: str | None = None
    params_files: tuple[ParamsFile, ...] = ()
    parity: str | None = None
    parity_reference: str | None = None
    rehash: bool = False
    name: str | None = None
    tags: Mapping[str, Any] | None = None
    purpose: str = "run"
    retries: int = 0
    keep_going: bool = False
    sweep: Mapping[str, Any] | None = None
    resources: tuple[tuple[str, float], ...] = ()


@dataclass
class NodeOutput:
    """One output of a finished node: its digest, and how it is read.

    Attributes:
        digest: the artifact's digest.
        record: the record to load it with: the one its step stored, or the one its step
            event's reading gives (a cache hit). None only when neither is known (the
            artifact's own record is read then).
        reading: how it is read, as step events record it (see
            :meth:`~pipetrail.store.SerializerRegistry.reading`).
        stored: whether this run stored it (its bytes may be held in :attr:`RunState.kept`).
        label: its reading's label in the cache keys of its consumers (set on first use).
    """

    digest: str
    record: StoredArtifact | None = None
    reading: dict[str, Any] | None = None
    stored: bool = False
    label: str | None = None


class InputCopies:
    """The temp folder holding the on-disk copies of one step's inputs, made on demand."""

    def __init__(self) -> None:
        self._folder: str | None = None

    def folder(self) -> str:
        """Return the folder, creating it on first use."""
        if self._folder is None:
            import tempfile  # here: most steps (and every cached one) need no copy

            self._folder = tempfile.mkdtemp(prefix="pipetrail-inputs-")
        return self._folder

    def clear(self) -> None:
        """Remove the folder and every copy in it (a no-op when none was made)."""
        if self._folder is not None:
            import shutil

            folder, self._folder = self._folder, None
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class RunState:
    """Everything a run has planned, observed and produced so far.

    Steps are keyed by ``id(step)``: one step object may back several nodes.
    ``consumers_left`` counts, per node id, the nodes reading its outputs that have not
    run yet; ``kept`` holds the bytes just written for outputs that still have readers;
    ``copies`` holds what loading the running step's inputs wrote to disk.
    """

    run_id: str
    graph: PipelineGraph
    project: Project
    run_seed: int
    sources: dict[SourceRef, tuple[str, Path]] = field(default_factory=dict)
    outputs: dict[str, list[NodeOutput]] = field(default_factory=dict)
    kept: KeptBytes = field(default_factory=KeptBytes)
    copies: InputCopies = field(default_factory=InputCopies)
    consumers_left: Counter[str] = field(init=False)
    recorded: set[str] = field(default_factory=set)
    fingerprints: dict[int, CodeFingerprint] = field(default_factory=dict)
    # Each node's identity (its seed derives from it) and its plain arguments' fingerprints.
    identities: NodeIdentities = field(default_factory=NodeIdentities)
    code_sources: dict[int, str] = field(default_factory=dict)
    # id(step) -> its contracts' fingerprints (None: the step declares no contract).
    contracts: dict[int, StepContracts | None] = field(default_factory=dict)
    # Events wait here until the next flush (see pipetrail.execution.flushing); `since`
    # is when the oldest of them was queued (time.monotonic()).
    pending: list[EventDraft] = field(default_factory=list)
    pending_since: float | None = None
    # Which steps ran fast the last time: shared by the runs of the process, keyed by
    # speed_key (see pipetrail.execution.flushing).
    step_times: StepTimes = field(default=PROCESS_STEP_TIMES)
    flush_timer: FlushTimer | None = None
    # cache key -> (step run whose outputs to reuse, outputs, their readings) for keys
    # finished this run.
    done_keys: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=dict)
    # step name -> whether the ledger recorded any step run of it when the run first
    # looked up a key of the step (False: no key of it could be found; see
    # run_node._decide).
    steps_ran: dict[str, bool] = field(default_factory=dict)
    # The step runs and stored objects cache hits may reuse, looked up ahead
    # (execution.cache_ahead); made at the first lookup in the ledger.
    cache_ahead: CacheAhead | None = None
    # metric series digest -> its summary, for cache hits on series met earlier.
    series_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # step run id -> what its step.completed says of its resources (node_id, step,
    # resources, resource_requests), for every step this run executed, in start order
    # (None until it completes): the run's end compares them with their history
    # (execution.resource_profile) without reading the run's step runs back.
    executed: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    # id(step) -> the components of its keys that are plain (hashing.canonical.is_plain),
    # the same for every node of the step, so walked once per run; and these with those
    # of flat inputs (execution.run_node._plain_components).
    plain_parts: dict[int, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)
    # Captured by the parity check, before anything is recorded; reused for run.started.
    environment: dict[str, Any] | None = None
    parity: ParityReport | None = None
    # Undone when the last node has run: held small writes, output capture kept ready.
    exits: ExitStack = field(default_factory=ExitStack)
    capture_ready: bool = False
    # The nodes' classification labels and the sealing keys (execution.run_privacy).
    privacy: Any = None
    # Where the run's trace is exported (None: it is not; see execution.telemetry).
    telemetry: TelemetrySettings | None = None
    # The project's quotas for this run (None: it has none; see execution.quotas).
    quotas: Any = None
    # Steps whose tasks the executor could not cancel (they may still run on a cluster);
    # a run that does not complete says so in its end's error.
    uncancelled: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.consumers_left = Counter(
            up for node in self.graph.nodes.values() for up in node.upstream()
        )


def emit(state: RunState, drafts: list[EventDraft]) -> None:
    """Queue events for the next :func:`flush`."""
    if drafts and not state.pending:
        state.pending_since = time.monotonic()
    state.pending.extend(drafts)


def flush(
    state: RunState,
    extra: Sequence[EventDraft] = (),
    *,
    precondition: Callable[[Any], None] | None = None,
) -> None:
    """Append every pending event, then ``extra``, in one transaction.

    The runner flushes before it hands control to the code of a step that is not known to
    be fast (:func:`flush_before_code`), and when the run ends, so everything that happened before
    such a step starts is durable before the step can crash the process; cache hits and
    fast steps in between cost no transaction of their own.

    ``precondition`` is called inside the transaction, under the ledger's write lock,
    before anything is written (a quota's check, :mod:`pipetrail.execution.quotas`):
    should it raise, nothing is appended, the pending events stay queued and ``extra``
    is dropped.
    """
    if state.pending or extra:
        # A signal must not fall between the append and forgetting what was appended.
        with deferred_interrupts():
            commit_small_writes(state.project.store)  # objects before events naming them
            # The artifacts the run queued without asking the ledger are left out when it
            # records them already (run_events.artifact_drafts).
            state.project.ledger.append(
                [*state.pending, *extra], precondition=precondition, new_artifacts_only=True
            )
            state.pending = []
            state.pending_since = None


def speed_key(state: RunState, step: Step[..., Any]) -> str:
    """The key of ``step`` in the run's step times: its code fingerprint digest.

    Keyed by the code rather than the step object, what a step's code did in an earlier
    run of the process counts only while the code is the same (a changed function, or
    one it calls, starts with no history), and a key is never reused by another object.
    """
    found = state.fingerprints.get(id(step))
    return found.digest if found is not None else f"id:{id(step)}"


def flush_before_code(state: RunState, step_key: str) -> None:
    """Flush before a step's code runs, unless the step is fast and the queue young.

    See :func:`~pipetrail.execution.flushing.must_flush_before`; ``step_key`` is the
    step's :func:`speed_key`. Called before the step's inputs are loaded.
    """
    if must_flush_before(state.step_times, step_key, len(state.pending), state.pending_since):
        flush(state)


class step_code:
    """Surround one call of a step's code: arm the flush timer, time the call.

    When events are still queued (:func:`flush_before_code` let them wait), the run's
    :class:`~pipetrail.execution.flushing.FlushTimer` appends them should the code run
    past their deadline. Records how long the code took (``step_key`` is the step's
    :func:`speed_key`), also when it raised. A class rather than a generator: every
    executed step enters one.
    """

    __slots__ = ("_key", "_started", "_state", "_timer")

    def __init__(self, state: RunState, step_key: str) -> None:
        self._state = state
        self._key = step_key
        self._timer: FlushTimer | None = None
        self._started = 0.0

    def __enter__(self) -> None:
        state = self._state
        if state.pending and state.pending_since is not None:
            timer = self._timer = _timer(state)
            timer.arm(state.pending_since + MAX_DELAY_S)
        self._started = time.monotonic()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.disarm()
        self._state.step_times.record(self._key, time.monotonic() - self._started)


def close_flush_timer(state: RunState) -> None:
    """Stop the run's flush timer, if it was started (its queue is left to :func:`flush`)."""
    if state.flush_timer is not None:
        state.flush_timer.close()
        state.flush_timer = None


def _timer(state: RunState) -> FlushTimer:
    if state.flush_timer is None:
        ledger = state.project.ledger

        def take() -> list[EventDraft]:
            try:
                commit_small_writes(state.project.store)  # objects before events naming them
            except StoreError:
                return []  # left queued: the main thread's next flush meets the error again
            drafts, state.pending, state.pending_since = state.pending, [], None
            return drafts

        def put_back(drafts: list[EventDraft]) -> None:
            state.pending[:0] = drafts
            state.pending_since = time.monotonic()

        state.flush_timer = FlushTimer(
            lambda: Ledger(ledger.url, actor=ledger.actor), take, put_back
        )
    return state.flush_timer
