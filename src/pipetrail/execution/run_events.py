"""The run-level records of a run: ``run.started``, ``artifact.recorded`` and the run's end.

Builds the ``run.started`` event (git state, environment, params files, parity, nodes),
the ``artifact.recorded`` events for what a run stores (each digest once per run, and
only if the ledger does not know it yet), the stored source text of each step, metric
series summaries for cache hits, and the closing ``run.completed``, ``run.failed`` or
``run.interrupted`` (which also closes the run's unfinished step runs).
Step events are built by :mod:`pipetrail.execution.run_node`; the order of a run is
described in :mod:`pipetrail.execution.runner`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.capture import (
    capture_environment,
    current_host,
    current_owner,
    process_identity,
)
from pipetrail.capture.git_probe import git_state
from pipetrail.capture.log_context import trace_id_for
from pipetrail.core.clock import format_ts, utcnow
from pipetrail.core.version import VERSION
from pipetrail.execution.crash import closing_fields
from pipetrail.execution.environment_record import stored_environment
from pipetrail.execution.executors import InlineExecutor, executor_settings
from pipetrail.execution.metric_format import decode_series
from pipetrail.execution.records import blob_artifact, jsonable
from pipetrail.execution.run_state import emit, flush
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.annotations import validate_name, validate_tags
from pipetrail.ledger.events import encoded_draft

if TYPE_CHECKING:
    from collections.abc import Container

    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.core.step import Step
    from pipetrail.execution.run_state import RunOptions, RunState
    from pipetrail.hashing.code import CodeFingerprint
    from pipetrail.store import StoredArtifact

__all__ = [
    "artifact_drafts",
    "code_drafts",
    "end_run",
    "run_started_events",
    "series_summary",
]


def run_started_events(
    state: RunState,
    definition: PipelineDefinition,
    params: dict[str, Any],
    pipeline_fp: str,
    options: RunOptions,
) -> list[EventDraft]:
    """Store the run's git diff, environment and params files; describe the run's start.

    Returns:
        The ``run.started`` event followed by the ``artifact.recorded`` events of what
        was stored.
    """
    project = state.project
    store = project.store
    executor = options.executor if not isinstance(options.executor, str | None) else None
    executor = executor or InlineExecutor()
    settings = executor_settings(executor)
    artifacts: list[tuple[StoredArtifact, str]] = []
    git = git_state(project.root)
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
    env_record = stored_environment(environment, project.registry, store)
    artifacts.append((env_record, "environment"))
    payload = {
        "run_id": state.run_id,
        "pipeline": state.graph.name,
        "pipeline_fingerprint": pipeline_fp,
        "owner": current_owner(),
        "host": current_host(),
        "process": _own_process(),
        "params": jsonable(params),
        "seed": state.run_seed,
        "git": git_record,
        "environment": env_record.digest,
        "started_at": format_ts(utcnow()),
        "steps_total": len(state.graph.nodes),
        "cache": options.cache,
        "executor": executor.name,
        **({"executor_settings": settings} if settings else {}),
        "pipeline_file": options.source_file,
        "pipeline_path": _project_relative(options.source_file, project.root),
        "argv": options.argv if options.argv is not None else list(sys.argv),
        "pipetrail_version": VERSION,
        "reproduces": options.reproduces,
        "purpose": options.purpose,
        "trace_id": trace_id_for(state.run_id),
        "nodes": {
            node.id: {
                "step": node.step.name,
                "upstream": node.upstream(),
                **({} if node.name is None else {"name": node.name}),
            }
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
        from pipetrail.execution.params_files import params_file_records

        files_payload, file_artifacts = params_file_records(
            options.params_files, store, root=project.root
        )
        payload["params_files"] = files_payload
        artifacts.extend(file_artifacts)
    if state.parity is not None:
        payload["parity"] = state.parity.to_record()
    if options.name is not None:
        payload["name"] = validate_name(options.name)
    if options.tags:
        payload["tags"] = validate_tags(options.tags)
    if options.sweep is not None:
        payload["sweep"] = dict(options.sweep)
    # Its nodes (a member per node: ids, step names, node names, all text) are encoded
    # without a walk over them; the rest of the payload is checked as ever.
    drafts = [
        encoded_draft(EventKind.RUN_STARTED, payload, run_id=state.run_id, plain=_PLAIN_NODES)
    ]
    drafts.extend(artifact_drafts(state, artifacts, step_run_id=None))
    return drafts


# The run.started members known to be plain (see run_started_events).
_PLAIN_NODES = frozenset({"nodes"})
_own: list[Any] = [None, None]  # [pid, its process identity]


def _own_process() -> str:
    """This process's :func:`~pipetrail.capture.process_identity`, read once per process.

    A process's start time never changes; a forked child (another pid) reads its own.
    """
    pid = os.getpid()
    if _own[0] != pid:
        _own[:] = [pid, process_identity(pid)]
    return str(_own[1])


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


def artifact_drafts(
    state: RunState,
    records: list[tuple[StoredArtifact, str]],
    *,
    step_run_id: str | None,
    queued: bool = False,
    plain_meta: Container[int] = (),
) -> list[EventDraft]:
    """Describe stored artifacts (record, role) that neither this run nor the ledger knows.

    Every digest counts as recorded for the rest of the run, so it is described once.
    With ``queued`` (drafts for the run's queue) the ledger is not asked here: the flush
    leaves out those it records already, with one query per batch in its transaction
    (``new_artifacts_only`` of :meth:`~pipetrail.ledger.ledger.Ledger.append`).
    ``plain_meta``: the ``id`` of records (of ``records``) whose ``meta`` was shown plain
    (:func:`~pipetrail.hashing.canonical.is_plain`; a step's metric series and their
    timestamps, see :class:`~pipetrail.execution.metrics.StoredSeries`): their events
    are encoded now, without walking ``meta`` again.
    """
    fresh = [(r, role) for r, role in records if r.digest not in state.recorded]
    if not fresh:
        return []
    known = (
        set()
        if queued
        else state.project.ledger.reader().known_artifacts([r.digest for r, _ in fresh])
    )
    drafts: list[EventDraft] = []
    for record, role in fresh:
        state.recorded.add(record.digest)
        if record.digest in known:
            continue
        payload = {
            "digest": record.digest,
            "blob": record.blob,
            "serializer": record.serializer,
            "type_name": record.type_name,
            "size": record.size,
            "meta": record.meta,
            "role": role,
            "run_id": state.run_id,
            "step_run_id": step_run_id,
        }
        if id(record) in plain_meta:
            drafts.append(
                encoded_draft(
                    EventKind.ARTIFACT_RECORDED, payload, run_id=state.run_id, plain=_META
                )
            )
        else:
            drafts.append(EventDraft(EventKind.ARTIFACT_RECORDED, payload, run_id=state.run_id))
    return drafts


# The member of an artifact's payload that plain_meta (of artifact_drafts) vouches for.
_META = frozenset({"meta"})


def code_drafts(state: RunState, step: Step[..., Any], fp: CodeFingerprint) -> list[EventDraft]:
    """Store a step's source text once per run so later diffs can show it."""
    if id(step) in state.code_sources or not fp.source:
        return []
    data = fp.source.encode("utf-8")
    digest = state.project.store.put_bytes(data)
    state.code_sources[id(step)] = digest
    record = blob_artifact(digest, len(data), "bytes", "code", {"step": step.name})
    return artifact_drafts(state, [(record, "code")], step_run_id=None, queued=True)


def series_summary(state: RunState, digest: str) -> dict[str, Any]:
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


_RUN_ENDS = frozenset({EventKind.RUN_COMPLETED, EventKind.RUN_FAILED, EventKind.RUN_INTERRUPTED})


def end_run(
    state: RunState, kind: EventKind, *, error: str | None = None, signal_name: str | None = None
) -> None:
    """Append the run's closing event and everything still pending.

    ``kind`` is ``run.completed``, ``run.failed`` or ``run.interrupted``. The store is made
    durable first, so the ledger never references missing blobs. A run that did not
    complete first appends what is pending (the step runs that did finish), then closes
    its step runs still ``running`` and lists the nodes that never started
    (``closed_steps``, ``not_run``: see :mod:`pipetrail.execution.crash`);
    ``run.interrupted`` also names the signal (``signal``); ``run.completed`` lists the
    steps whose resource use deviates from their history (``resource_deviations``, see
    :mod:`pipetrail.execution.resource_profile`).
    """
    if any(draft.kind in _RUN_ENDS for draft in state.pending):
        flush(state)  # an earlier attempt queued the end and was cut off before appending
        return
    payload: dict[str, Any] = {"run_id": state.run_id, "ended_at": format_ts(utcnow())}
    if error is not None:
        payload["error"] = error
    state.project.store.sync()
    if kind == EventKind.RUN_COMPLETED:
        from pipetrail.execution.resource_profile import resource_deviations

        flagged = resource_deviations(state)
        if flagged:  # only a run with a deviation carries the key
            payload["resource_deviations"] = flagged
    else:
        flush(state)
        status = "interrupted" if kind == EventKind.RUN_INTERRUPTED else "failed"
        steps = state.project.ledger.reader().step_runs(state.run_id)
        payload.update(closing_fields(state.graph.nodes, steps, status))
        if signal_name is not None:
            payload["signal"] = signal_name
    emit(state, [EventDraft(kind, payload, run_id=state.run_id)])
    flush(state)
