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

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.execution.interrupts import deferred_interrupts
from pipetrail.store.serializers.kept_bytes import KeptBytes

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pipetrail.core.graph import PipelineGraph, SourceRef
    from pipetrail.execution.contract_records import StepContracts
    from pipetrail.execution.executors import Executor
    from pipetrail.execution.observer import RunObserver
    from pipetrail.execution.params_files import ParamsFile
    from pipetrail.execution.parity import ParityReport
    from pipetrail.execution.project import Project
    from pipetrail.execution.snapshots import SourceSnapshots
    from pipetrail.hashing.code import CodeFingerprint
    from pipetrail.ledger import EventDraft
    from pipetrail.store import StoredArtifact

__all__ = ["InputCopies", "NodeOutput", "RunOptions", "RunState", "emit", "flush"]


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
        name: the run's name, recorded with it (``--name``).
        tags: the run's first tags, recorded with it (``--tag KEY=VALUE``).
        purpose: what starts the run: ``run`` (an ordinary run), ``reproduce`` or
            ``check``; only ordinary runs are what ``latest`` means.
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
    name: str | None = None
    tags: Mapping[str, Any] | None = None
    purpose: str = "run"


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
            self._folder = tempfile.mkdtemp(prefix="pipetrail-inputs-")
        return self._folder

    def clear(self) -> None:
        """Remove the folder and every copy in it (a no-op when none was made)."""
        if self._folder is not None:
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
    code_sources: dict[int, str] = field(default_factory=dict)
    # id(step) -> its contracts' fingerprints (None: the step declares no contract).
    contracts: dict[int, StepContracts | None] = field(default_factory=dict)
    # Events wait here until the next flush: one ledger transaction per executed step.
    pending: list[EventDraft] = field(default_factory=list)
    # cache key -> (step run whose outputs to reuse, outputs, their readings) for keys
    # finished this run.
    done_keys: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=dict)
    # metric series digest -> its summary, for cache hits on series met earlier.
    series_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Captured by the parity check, before anything is recorded; reused for run.started.
    environment: dict[str, Any] | None = None
    parity: ParityReport | None = None

    def __post_init__(self) -> None:
        self.consumers_left = Counter(
            up for node in self.graph.nodes.values() for up in node.upstream()
        )


def emit(state: RunState, drafts: list[EventDraft]) -> None:
    """Queue events for the next :func:`flush`."""
    state.pending.extend(drafts)


def flush(state: RunState) -> None:
    """Append every pending event in one transaction.

    The runner flushes before it hands control to user code and when the run ends, so
    everything that happened before a step starts is durable before the step can crash
    the process; cache hits in between cost no transaction of their own.
    """
    if state.pending:
        # A signal must not fall between the append and forgetting what was appended.
        with deferred_interrupts():
            state.project.ledger.append(state.pending)
            state.pending = []
