"""Source snapshots: re-run a recorded pipeline on the data it saw, not on today's files.

A run copies each source's content into the store unless the source is tracked by
reference. To reproduce the run, :class:`SourceSnapshots` puts that content back on disk
(in a work folder the caller owns) and hands the runner the materialized path instead of
the live one; the runner records the source as observed again, under the same digest,
with ``snapshot_of`` naming the original run. A source tracked by reference has no copy:
it is observed where it lives and must still have its recorded digest.

Whatever cannot be honoured raises :class:`~pipetrail.errors.NotReproducibleError` before
the run records anything: a by-reference source that changed ("cannot reproduce: source
X changed", which is not a mismatch of results), a snapshot missing from the store, or a
source the recorded run never observed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.capture import SourceObservation, observe_source
from pipetrail.errors import DefinitionError, NotFoundError, NotReproducibleError, StoreError
from pipetrail.ledger.event_reads import source_events

if TYPE_CHECKING:
    from pipetrail.core.graph import SourceRef
    from pipetrail.ledger.queries import Reader
    from pipetrail.store import ContentStore

__all__ = ["RecordedSource", "SourceSnapshots"]

# Objects up to this size are read into memory; larger ones are copied file to file.
# Up to 1 MiB an object may live in the store's pack or a segment, where asking for its
# path would first write a loose copy of it (ADR 0009).
_SMALL = 1024 * 1024


@dataclass(frozen=True)
class RecordedSource:
    """A source as a recorded run observed it.

    Attributes:
        path: the path as the pipeline gave it to ``source()``.
        kind: ``file`` or ``folder``.
        digest: the source digest (a folder's: its manifest's).
        by_reference: whether only digests were recorded (no copy in the store).
    """

    path: str
    kind: str
    digest: str
    by_reference: bool


class SourceSnapshots:
    """The sources of one recorded run, to be used in place of the live files.

    Args:
        run_id: the recorded run.
        sources: its sources by path.
        workdir: an empty folder (owned by the caller, who removes it after the run) to
            materialize snapshots into.
    """

    def __init__(self, run_id: str, sources: dict[str, RecordedSource], workdir: Path) -> None:
        self.run_id = run_id
        self.sources = sources
        self.workdir = workdir

    @classmethod
    def of_run(cls, reader: Reader, run_id: str, workdir: Path) -> SourceSnapshots:
        """Read the sources ``run_id`` observed from its ``source.observed`` events."""
        found: dict[str, RecordedSource] = {}
        for event in source_events(reader, run_id):
            found[event.path] = RecordedSource(
                path=event.path,
                kind=event.source_kind or "file",
                digest=event.digest,
                by_reference=event.by_reference,
            )
        return cls(run_id, found, workdir)

    def observe(
        self, src: SourceRef, *, root: Path, store: ContentStore
    ) -> tuple[SourceObservation, dict[str, Any]]:
        """Observe ``src`` as the recorded run saw it.

        Returns:
            The observation (its ``location`` is where steps read the data) and the
            ``source.observed`` record to append for it.

        Raises:
            NotReproducibleError: see the module docs.
        """
        recorded = self.sources.get(src.path)
        if recorded is None:
            known = ", ".join(repr(p) for p in sorted(self.sources)) or "none"
            raise NotReproducibleError(
                f"cannot reproduce run {self.run_id}: the pipeline now reads source "
                f"{src.path!r}, which that run did not observe (it observed: {known}); "
                "check out the code the run was made with",
                run_id=self.run_id,
            )
        if recorded.by_reference:
            obs = self._observe_live(src, root)
        else:
            obs = self._observe_snapshot(src, recorded, root, store)
        if obs.digest != recorded.digest:
            raise NotReproducibleError(
                f"cannot reproduce run {self.run_id}: source {src.path!r} changed since it "
                f"was recorded (recorded {recorded.digest}, now {obs.digest}). It was tracked "
                "by reference, so its old content is not in the store: restore the data the "
                "run saw, or record sources with by_reference=False",
                run_id=self.run_id,
            )
        record = {**obs.to_record(), "path": src.path, "snapshot_of": self.run_id}
        return obs, record

    def _observe_live(self, src: SourceRef, root: Path) -> SourceObservation:
        try:
            return observe_source(
                src.path, root=root, by_reference=True, allow_outside=src.allow_outside
            )
        except DefinitionError as exc:
            raise NotReproducibleError(
                f"cannot reproduce run {self.run_id}: source {src.path!r} (tracked by "
                f"reference) cannot be observed: {exc}",
                run_id=self.run_id,
            ) from exc

    def _observe_snapshot(
        self, src: SourceRef, recorded: RecordedSource, root: Path, store: ContentStore
    ) -> SourceObservation:
        target = self.workdir / f"{len(list(self.workdir.iterdir())):03d}"
        name = Path(src.path).name or "source"
        location = target / name
        try:
            if recorded.kind == "folder":
                manifest = json.loads(store.get_bytes(recorded.digest))
                for rel, entry in manifest["files"].items():
                    _materialize(store, entry["digest"], entry["size"], location / rel)
                location.mkdir(parents=True, exist_ok=True)  # an empty folder
            else:
                _materialize(store, recorded.digest, None, location)
        except (NotFoundError, StoreError, KeyError, ValueError) as exc:
            raise NotReproducibleError(
                f"cannot reproduce run {self.run_id}: the snapshot of source {src.path!r} "
                f"({recorded.digest}) cannot be read from the store: {exc}. Run "
                "`pipetrail store verify`, and restore the store from a backup",
                run_id=self.run_id,
            ) from exc
        # Hashed again: a damaged copy shows up as a changed digest, not as a result.
        obs = observe_source(str(location), root=root, by_reference=True, allow_outside=True)
        return dataclasses.replace(obs, path=src.path, by_reference=False)


def _materialize(store: ContentStore, digest: str, size: int | None, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if size is not None and size <= _SMALL:
        dest.write_bytes(store.get_bytes(digest))
        return
    local = store.local_path(digest)
    if local is not None:
        shutil.copyfile(local, dest)
        return
    with store.open(digest) as reader, dest.open("wb") as out:
        shutil.copyfileobj(reader, out, 1024 * 1024)
