"""Observing a sensitive source: its content sealed in the store, its digest keyed.

A source labelled sensitive (``source("data/patients.csv", classification="pii")``) is
observed like any other file, but its content never reaches the store in clear: it is
sealed (:class:`~pipetrail.store.sealed.SealedStore`), and the ``source.observed`` event
and the source's artifact record its keyed digest, so the ledger cannot confirm a guess
of the file (docs/adr/0023-keyed-digests.md). The event carries ``classification``.

Sensitive folders are recorded by reference only (``by_reference=True``: a keyed digest,
no content), and sensitive ``s3://`` sources are refused: sealing each file of a folder
is not supported yet, and copying them in clear is what the label forbids. Reproducing
a run decrypts its sealed copy of each sensitive file into the reproduction's work
folder, the one place a reproduction puts plaintext (it is removed after the run).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from pipetrail.capture import observe_source
from pipetrail.errors import DefinitionError, NotFoundError, NotReproducibleError, StoreError
from pipetrail.execution.records import blob_artifact
from pipetrail.execution.run_events import artifact_drafts
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.store.sealed import SealedStore
from pipetrail.store.serializers.base import StoredArtifact

if TYPE_CHECKING:
    from pipetrail.core.graph import SourceRef
    from pipetrail.execution.run_state import RunState
    from pipetrail.execution.snapshots import SourceSnapshots

__all__ = ["observe_sensitive"]


def observe_sensitive(
    state: RunState,
    src: SourceRef,
    snapshots: SourceSnapshots | None,
    *,
    rehash: bool,
) -> list[EventDraft]:
    """Observe one sensitive source; store it sealed; describe it under its keyed digest.

    With ``snapshots`` (reproducing a run), the recorded run's sealed copy is decrypted
    into the reproduction's work folder (which its caller removes) and checked against
    the recorded keyed digest.

    Raises:
        DefinitionError: an ``s3://`` source, or a folder not tracked by reference;
            nothing is stored.
        NotReproducibleError: reproducing, the sealed copy cannot be read or does not
            match the record.
    """
    where = f"source({src.path!r}, classification={src.classification!r})"
    if src.path.startswith("s3://"):
        raise DefinitionError(f"{where}: sensitive s3:// sources are not supported yet")
    if snapshots is not None:
        return _observe_snapshot(state, src, snapshots)
    config = state.project.config
    obs = observe_source(
        src.path,
        root=state.project.root,
        # No stat cache: it would keep the file's plain digest on disk, which confirms a
        # guess of its content; a sensitive source is hashed again on every run.
        cache=None,
        # Digests only: the plaintext never goes to the store; the file is sealed below.
        by_reference=True,
        rehash=rehash,
        allow_outside=src.allow_outside,
        protected=(config.state_dir.resolve(), config.artifacts),
    )
    if obs.kind == "folder" and not src.by_reference:
        raise DefinitionError(
            f"{where} is a folder: sensitive folders can only be tracked by reference for "
            "now (add by_reference=True); their files are not copied into the store"
        )
    keys = state.project.sealing_keys(create=True)
    keyed = keys.keyed_digest(obs.digest)
    state.sources[src] = (keyed, Path(obs.location))
    record = {
        **obs.to_record(),
        "digest": keyed,
        "by_reference": src.by_reference,
        "classification": src.classification,
    }
    drafts = [
        EventDraft(
            EventKind.SOURCE_OBSERVED, {"run_id": state.run_id, **record}, run_id=state.run_id
        )
    ]
    if not src.by_reference:
        sealed = SealedStore(state.project.store, keys)
        blob, size = sealed.put_file(Path(obs.location), digest=obs.digest)
        artifact = dataclasses.replace(
            blob_artifact(
                keyed,
                size,
                "file",
                "source",
                {"path": src.path, "sealed": 1, "classification": src.classification},
            ),
            blob=blob,
        )
        drafts.extend(artifact_drafts(state, [(artifact, "source")], step_run_id=None))
    return drafts


def _observe_snapshot(
    state: RunState, src: SourceRef, snapshots: SourceSnapshots
) -> list[EventDraft]:
    """A sensitive source as the recorded run saw it: its sealed copy, or the live file."""
    recorded = snapshots.sources.get(src.path)
    run_id = snapshots.run_id
    if recorded is None:
        raise NotReproducibleError(
            f"cannot reproduce run {run_id}: the pipeline now reads source {src.path!r}, "
            "which that run did not observe; check out the code the run was made with",
            run_id=run_id,
        )
    keys = state.project.sealing_keys()
    row = None if recorded.by_reference else state.project.reader().artifact(recorded.digest)
    if recorded.by_reference:
        location = None
    elif row is None:
        raise NotReproducibleError(
            f"cannot reproduce run {run_id}: no sealed copy of source {src.path!r} "
            f"({recorded.digest}) is recorded",
            run_id=run_id,
        )
    else:
        location = snapshots.workdir / f"{len(list(snapshots.workdir.iterdir())):03d}"
        location = location / (Path(src.path).name or "source")
        location.parent.mkdir(parents=True)
        sealed = SealedStore(state.project.store, keys)
        try:
            with sealed.open(str(row["blob"])) as reader, location.open("xb") as out:
                while block := reader.read(1 << 20):
                    out.write(block)
        except (NotFoundError, StoreError) as exc:  # IntegrityError included
            location.unlink(missing_ok=True)
            raise NotReproducibleError(
                f"cannot reproduce run {run_id}: the sealed copy of source {src.path!r} "
                f"({recorded.digest}) cannot be read: {exc}",
                run_id=run_id,
            ) from exc
    where = src.path if location is None else str(location)
    obs = observe_source(
        where,
        root=state.project.root,
        by_reference=True,
        allow_outside=location is not None or src.allow_outside,
    )
    keyed = keys.keyed_digest(obs.digest)
    if keyed != recorded.digest:
        raise NotReproducibleError(
            f"cannot reproduce run {run_id}: sensitive source {src.path!r} is not what was "
            f"recorded (recorded {recorded.digest}, now {keyed})",
            run_id=run_id,
        )
    state.sources[src] = (keyed, Path(obs.location))
    record = {
        **obs.to_record(),
        "path": src.path,
        "digest": keyed,
        "by_reference": recorded.by_reference,
        "snapshot_of": run_id,
        "classification": src.classification,
    }
    drafts = [
        EventDraft(
            EventKind.SOURCE_OBSERVED, {"run_id": state.run_id, **record}, run_id=state.run_id
        )
    ]
    if row is not None:
        artifact = StoredArtifact.from_dict(dict(row))
        drafts.extend(artifact_drafts(state, [(artifact, "source")], step_run_id=None))
    return drafts
