"""Observing a run's sources: the files and folders its steps read.

Before anything is recorded, the runner observes every source once: it hashes the data
(trusting the stat cache unless asked to rehash), stores its content unless the source
is tracked by reference, and describes it with a ``source.observed`` event and, for a
folder's manifest or a copied file, an ``artifact.recorded`` event. When a run is
reproduced, the recorded run's sources are used instead (see
:mod:`pipetrail.execution.snapshots`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipetrail.capture import StatCache, observe_source
from pipetrail.core.classification import is_sensitive
from pipetrail.errors import DefinitionError
from pipetrail.execution.records import blob_artifact
from pipetrail.execution.run_events import artifact_drafts
from pipetrail.ledger import EventDraft, EventKind

if TYPE_CHECKING:
    from pipetrail.capture import SourceObservation
    from pipetrail.core.graph import SourceRef
    from pipetrail.execution.run_state import RunState
    from pipetrail.execution.snapshots import SourceSnapshots

__all__ = ["observe_sources"]


def observe_sources(
    state: RunState, snapshots: SourceSnapshots | None, *, rehash: bool = False
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
            if is_sensitive(src.classification):
                from pipetrail.execution.sensitive_sources import observe_sensitive

                drafts.extend(observe_sensitive(state, src, snapshots, rehash=rehash))
                continue
            if src.path.startswith("s3://") and snapshots is None:
                obs = _observe_s3(state, src, rehash=rehash)
                state.sources[src] = (obs.digest, Path(obs.location))
                drafts.append(
                    EventDraft(
                        EventKind.SOURCE_OBSERVED,
                        {"run_id": state.run_id, **obs.to_record()},
                        run_id=state.run_id,
                    )
                )
                drafts.extend(_source_artifact_drafts(state, src, obs))
                continue
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
                    # One lookup for the files the stat cache vouches for (a local store),
                    # none for those it saw stored at the store's generation (ADR 0032).
                    stored_sizes=getattr(store, "stored_sizes", None),
                    store_generation=_generation(store, src.by_reference),
                    by_reference=src.by_reference,
                    rehash=rehash,
                    allow_outside=src.allow_outside,
                    protected=(state_dir, state.project.config.artifacts),
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


def _generation(store: object, by_reference: bool) -> str | None:
    """The store's generation token, read before the observation; None if it has none."""
    read = getattr(store, "generation", None)
    if by_reference or read is None:
        return None
    token: str | None = read()
    return token


def _observe_s3(state: RunState, src: SourceRef, *, rehash: bool) -> SourceObservation:
    """Observe an ``s3://`` source with the project's S3 settings (``[store.s3]``)."""
    from pipetrail.capture.s3_source import observe_s3_source
    from pipetrail.execution.store_open import s3_settings

    config = state.project.config
    return observe_s3_source(
        src.path,
        store=state.project.store,
        state_dir=config.state_dir,
        settings=s3_settings(config),
        rehash=rehash,
    )


def _source_artifact_drafts(
    state: RunState, src: SourceRef, obs: SourceObservation
) -> list[EventDraft]:
    """Record a folder's manifest, or a copied file, as the artifact of the source digest."""
    meta = {"path": src.path, "file_count": obs.file_count, "size": obs.size}
    if obs.manifest_bytes is not None:
        # A folder: its manifest is the artifact named by the source digest.
        state.project.store.put_bytes(obs.manifest_bytes)
        record = blob_artifact(obs.digest, len(obs.manifest_bytes), "json", "source-manifest", meta)
        return artifact_drafts(state, [(record, "source-manifest")], step_run_id=None)
    if not src.by_reference:
        record = blob_artifact(obs.digest, obs.size, "file", "source", {"path": src.path})
        return artifact_drafts(state, [(record, "source")], step_run_id=None)
    return []
