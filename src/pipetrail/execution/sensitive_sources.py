"""Observing a sensitive source: its content sealed in the store, its digest keyed.

A source labelled sensitive (``source("data/patients.csv", classification="pii")``) is
observed like any other file, but its content never reaches the store in clear: it is
sealed (:class:`~pipetrail.store.sealed.SealedStore`), and the ``source.observed`` event
and the source's artifact record its keyed digest, so the ledger cannot confirm a guess
of the file (docs/adr/0023-keyed-digests.md). The event carries ``classification``.

Sensitive folders are recorded by reference only (``by_reference=True``: a keyed digest,
no content), and sensitive ``s3://`` sources are refused: sealing each file of a folder
is not supported yet, and copying them in clear is what the label forbids.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from pipetrail.capture import observe_source
from pipetrail.errors import DefinitionError
from pipetrail.execution.records import blob_artifact
from pipetrail.execution.run_events import artifact_drafts
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.store.sealed import SealedStore

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

    Raises:
        DefinitionError: an ``s3://`` source, a folder not tracked by reference, or a
            reproduction of a run (not supported for sensitive sources yet); nothing is
            stored.
    """
    where = f"source({src.path!r}, classification={src.classification!r})"
    if src.path.startswith("s3://"):
        raise DefinitionError(f"{where}: sensitive s3:// sources are not supported yet")
    if snapshots is not None:
        raise DefinitionError(
            f"{where}: reproducing a run from its stored copy of a sensitive source is not "
            "supported yet; run the pipeline again on the data"
        )
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
