"""Observing a sensitive source: its content sealed in the store, its digest keyed.

A source labelled sensitive (``source("data/patients.csv", classification="pii")``) is
observed like any other file, but its content never reaches the store in clear: it is
sealed (:class:`~pipetrail.store.sealed.SealedStore`), and the ``source.observed`` event
and the source's artifact record its keyed digest, so the ledger cannot confirm a guess
of the file (docs/adr/0023-keyed-digests.md). The event carries ``classification``.

A sensitive folder is sealed file by file: each file under its keyed digest (no name),
then its manifest (names and plain digests, sealed), whose record lists the files' keyed
digests so that whatever keeps the folder keeps its files. Sensitive ``s3://`` sources
are refused (see :data:`S3_REFUSAL`). Reproducing a run decrypts its sealed copy of each
sensitive file or folder into the reproduction's work folder, the one place a
reproduction puts plaintext (it is removed after the run).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.capture import observe_source
from pipetrail.errors import DefinitionError, NotFoundError, NotReproducibleError, StoreError
from pipetrail.execution.records import blob_artifact
from pipetrail.execution.run_events import artifact_drafts
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.references import resealed_blobs
from pipetrail.store.sealed import SealedStore
from pipetrail.store.serializers.base import StoredArtifact

if TYPE_CHECKING:
    from pipetrail.capture.sources import SourceObservation
    from pipetrail.core.graph import SourceRef
    from pipetrail.execution.run_state import RunState
    from pipetrail.execution.snapshots import SourceSnapshots
    from pipetrail.ledger import Reader

__all__ = ["S3_REFUSAL", "observe_sensitive"]

#: Why a sensitive ``s3://`` source is refused (docs/data-handling.md).
S3_REFUSAL = (
    "a sensitive s3:// source is refused: a step reads a source from a local path, so "
    "pipetrail would have to write the object's plaintext under .pipetrail/cache for every "
    "run, and its object cache keeps plain digests that confirm a guess of the content; "
    "download it yourself and declare the local file or folder with the label (it is "
    "then sealed into the store)"
)


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
        DefinitionError: an ``s3://`` source; nothing is stored.
        NotReproducibleError: reproducing, the sealed copy cannot be read or does not
            match the record.
    """
    where = f"source({src.path!r}, classification={src.classification!r})"
    if src.path.startswith("s3://"):
        raise DefinitionError(f"{where}: {S3_REFUSAL}")
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
        label = str(src.classification)
        if obs.kind == "folder":
            records = _seal_folder(sealed, src.path, obs, label)
        else:
            blob, size = sealed.put_file(Path(obs.location), digest=obs.digest)
            records = [_sealed_source(keyed, blob, size, "file", src.path, label)]
        drafts.extend(artifact_drafts(state, [(r, "source") for r in records], step_run_id=None))
    return drafts


def _sealed_source(
    keyed: str, blob: str, size: int, serializer: str, path: str, label: str, **meta: Any
) -> StoredArtifact:
    """The record of a sealed copy of a source (a file, a folder's file, or its manifest)."""
    described = {"path": path, "sealed": 1, "classification": label, **meta}
    return dataclasses.replace(
        blob_artifact(keyed, size, serializer, "source", described), blob=blob
    )


def _seal_folder(
    sealed: SealedStore, path: str, obs: SourceObservation, label: str
) -> list[StoredArtifact]:
    """Seal each file of a folder source, then its manifest; return their records.

    Each file is recorded under its keyed digest, with no name (file names can be
    personal too: they are in the manifest, which is sealed). The folder's record is its
    sealed manifest, and lists its files' keyed digests so that whatever keeps the
    folder keeps its files (garbage collection cannot open a sealed manifest).
    """
    keys = sealed.keys
    root = Path(obs.location)
    files: dict[str, StoredArtifact] = {}
    for rel, entry in sorted((obs.manifest or {}).items()):
        keyed = keys.keyed_digest(entry["digest"])
        if keyed in files:
            continue  # the same content twice in the folder: one sealed object
        blob, size = sealed.put_file(root / rel, digest=entry["digest"])
        files[keyed] = _sealed_source(keyed, blob, size, "file", path, label, folder_file=1)
    manifest = obs.manifest_bytes or b""
    blob = sealed.put_bytes(manifest)
    folder = _sealed_source(
        keys.keyed_digest(obs.digest),
        blob,
        sealed.size(blob),
        "json",
        path,
        label,
        folder=1,
        files=sorted(files),
    )
    return [*files.values(), folder]


def _unseal_folder(
    sealed: SealedStore, reader: Reader, row: dict[str, Any], location: Path
) -> None:
    """Decrypt a sealed folder source (its manifest, then each file) under ``location``.

    Raises:
        NotFoundError: a file's sealed copy is not recorded or not stored.
        StoreError: a sealed object does not decrypt (IntegrityError included).
    """
    import json

    manifest = json.loads(sealed.get_bytes(str(row["blob"])))
    location.mkdir(parents=True)
    for rel, entry in manifest["files"].items():
        keyed = sealed.keys.keyed_digest(entry["digest"])
        found = reader.artifact(keyed)
        if found is None:
            raise NotFoundError(f"no sealed copy of a file of the folder is recorded ({keyed})")
        target = location / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _unseal(sealed, str(found["blob"]), target)


def _unseal(sealed: SealedStore, blob: str, target: Path) -> None:
    """Decrypt one sealed object into a new file."""
    with sealed.open(blob) as reader, target.open("xb") as out:
        while block := reader.read(1 << 20):
            out.write(block)


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
    reader = state.project.reader()
    row = None if recorded.by_reference else reader.artifact(recorded.digest)
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
        sealed = SealedStore(state.project.store, keys, moved=resealed_blobs(reader))
        try:
            if (row.get("meta") or {}).get("folder"):
                _unseal_folder(sealed, reader, row, location)
            else:
                _unseal(sealed, str(row["blob"]), location)
        except (NotFoundError, StoreError, KeyError, ValueError) as exc:
            # IntegrityError included: what was decrypted so far goes at once.
            import shutil  # only here: a cached run imports no shutil

            shutil.rmtree(location.parent, ignore_errors=True)
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
