"""The artifacts' content in an audit bundle (``pipetrail audit bundle --with-data``).

:func:`plan_data` decides, before the bundle's checkpoint is signed, which stored objects
go in: the object of every artifact the scope's runs recorded (outputs, step code, logs,
environment snapshots), and for a folder artifact each of its files too. Each becomes a
member ``data/<hex>`` named by the stored object's digest.

Sensitive (sealed) content goes through the project's access gate
(:mod:`pipetrail.governance.access`), exactly as ``pipetrail get`` does: the caller must
hold the admin role or an open grant for its label, and each read is recorded as an
``access.read`` event with the action ``bundle`` (before the checkpoint, so the bundle
carries the record of its own reads). A caller who may not read one is refused (the
refusal recorded, :class:`~pipetrail.errors.PermissionDeniedError`, exit 7) unless
``skip_refused`` is set: then nothing of it is read or recorded, and it is listed as
left out. The bundle holds the *plaintext* of what it may include: the point of the
data is that an auditor can read it.

:func:`write_data` streams each object into the archive in bounded memory (1 MiB at a
time), hashing it on the way: SHA-256 for the manifest, BLAKE3 to tie it to the ledger.
A plain object must hash to the digest the ledger records for it; a sealed one is
authenticated chunk by chunk while it is decrypted, read once to learn its size and
digests, then again into the archive. What the verifier checks of each is in
:mod:`pipetrail.governance.bundle_data_check` and docs/audit.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from pipetrail.core.clock import utcnow
from pipetrail.errors import IntegrityError, NotFoundError, PermissionDeniedError
from pipetrail.governance.access import UNKNOWN_LABEL, ReadGate
from pipetrail.governance.grants import read_basis
from pipetrail.hashing import Hasher
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    import tarfile

    from pipetrail.execution.project import Project
    from pipetrail.ledger.events import Event
    from pipetrail.store import ContentStore

__all__ = ["DATA_DIR", "DataItem", "DataPlan", "plan_data", "write_data"]

DATA_DIR = "data/"
_READ = 1 << 20
_FOLDER = "folder"


@dataclass
class DataItem:
    """One stored object to put in the bundle.

    Attributes:
        blob: the stored object's digest (as the ledger records it).
        artifacts: the artifacts stored as that object (their recorded digests).
        store: the store to read it through (decrypting when sealed).
        sealed: whether the content is sensitive and stored encrypted.
        label: its classification label when sealed.
        folder: for a file of a folder artifact, the folder manifest's object digest.
        path: that file's path in the folder.
    """

    blob: str
    artifacts: list[str]
    store: ContentStore
    sealed: bool = False
    label: str | None = None
    folder: str | None = None
    path: str | None = None

    @property
    def member(self) -> str:
        """Its member name in the archive."""
        return DATA_DIR + self.blob.removeprefix("blake3:")

    @property
    def what(self) -> str:
        """How a message names it."""
        where = f" (file {self.path!r} of folder object {self.folder})" if self.path else ""
        return f"artifact {self.artifacts[0]}{where}"


@dataclass
class DataPlan:
    """What goes in, and what is left out and why."""

    items: list[DataItem] = field(default_factory=list)
    left_out: list[dict[str, str]] = field(default_factory=list)

    @property
    def digests(self) -> set[str]:
        """Every artifact digest the plan is about (included or not)."""
        found = {d for item in self.items for d in item.artifacts}
        return found | {entry["artifact"] for entry in self.left_out}


def _records(events: list[Event]) -> list[StoredArtifact]:
    """The artifact records of the scope, one per recorded digest, in ledger order."""
    seen: dict[str, StoredArtifact] = {}
    for event in events:
        if event.kind != "artifact.recorded":
            continue
        p = json.loads(event.payload_text)
        if p.get("digest") not in seen:
            seen[p["digest"]] = StoredArtifact.from_dict(p)
    return list(seen.values())


def plan_data(project: Project, events: list[Event], *, skip_refused: bool) -> DataPlan:
    """Decide which objects go in, passing each sensitive read through the access gate.

    Args:
        project: the project.
        events: the scope's run events (their ``artifact.recorded`` events are used).
        skip_refused: leave out, and list, the sensitive artifacts the caller may not
            read instead of refusing the whole bundle.

    Raises:
        PermissionDeniedError: the caller may not read a sensitive artifact (recorded;
            the message names it, its label and how to get a grant).
        StoreError: the keys cannot be opened.
    """
    gate = ReadGate(project)
    plan = DataPlan()
    by_blob: dict[str, DataItem] = {}
    records = _records(events)
    refused = [r for r in records if r.meta.get("sealed") and not _may_read(gate, r)]
    if refused and not skip_refused:
        first = refused[0]
        try:
            project.store_for(first, action="bundle", gate=gate)  # records the refusal
        except PermissionDeniedError as exc:
            more = f" ({len(refused) - 1} more sensitive artifacts as well)" if refused[1:] else ""
            raise PermissionDeniedError(
                f"the bundle cannot carry the data{more}: {exc}. Or leave out what you may "
                "not read with --skip-refused (the bundle then lists it)"
            ) from None
    skipped = {id(r) for r in refused}
    for record in records:
        if id(record) in skipped:
            plan.left_out.append(_left(record, gate.label_of(record), "no grant to read it"))
            continue
        if not project.store.exists(record.blob):
            reason = "its content is no longer in the store (collected or purged)"
            plan.left_out.append(_left(record, record.meta.get("classification"), reason))
            continue
        sealed = bool(record.meta.get("sealed"))
        store = project.store_for(record, action="bundle", gate=gate) if sealed else project.store
        label = gate.label_of(record) if sealed else None
        item = by_blob.get(record.blob)
        if item is not None:
            item.artifacts.append(record.digest)
            continue
        item = DataItem(record.blob, [record.digest], store, sealed, label)
        by_blob[record.blob] = item
        if record.serializer == _FOLDER:
            for path, entry in sorted(json.loads(store.get_bytes(record.blob)).items()):
                file = DataItem(
                    entry["digest"], [record.digest], store, sealed, label, record.blob, path
                )
                by_blob.setdefault(file.blob, file)
    plan.items = sorted(by_blob.values(), key=lambda item: item.blob)
    return plan


def _may_read(gate: ReadGate, record: StoredArtifact) -> bool:
    """Whether the gate would allow the read (asked without recording anything)."""
    state = gate.state()
    if not state.users:
        return True
    label = gate.label_of(record)
    return read_basis(state, gate.user, label, utcnow().date().isoformat()) is not None


def _left(record: StoredArtifact, label: Any, reason: str) -> dict[str, str]:
    return {"artifact": record.digest, "label": str(label or UNKNOWN_LABEL), "reason": reason}


class _Hashing:
    """Reads a stream, hashing what passes (SHA-256 and BLAKE3) and counting it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.blake3 = Hasher()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        while size > 0 and 0 < len(data) < size:  # a stream may return short reads
            more = self.raw.read(size - len(data))
            if not more:
                break
            data += more
        self.sha256.update(data)
        self.blake3.update(data)
        self.size += len(data)
        return data


def _drain(item: DataItem) -> _Hashing:
    with item.store.open(item.blob) as raw:
        reader = _Hashing(raw)
        while reader.read(_READ):
            pass
    return reader


def write_data(archive: tarfile.TarFile, plan: DataPlan, mtime: int) -> dict[str, dict[str, Any]]:
    """Stream every planned object into ``archive``; return each member's manifest entry.

    Each entry: ``sha256`` and ``size`` of the member, and under ``data`` what ties it to
    the ledger (``blob``, ``artifacts``, ``sealed``, ``label``, ``blake3`` of the member,
    ``folder`` and ``path`` for a folder's file).

    Raises:
        IntegrityError: a stored object does not hash to its recorded digest, or a sealed
            one does not decrypt (the message names the artifact).
        NotFoundError: an object vanished from the store meanwhile.
    """
    import tarfile

    archive.copybufsize = _READ  # type: ignore[attr-defined]
    entries: dict[str, dict[str, Any]] = {}
    for item in plan.items:
        try:
            size = _drain(item).size if item.sealed else item.store.size(item.blob)
            info = tarfile.TarInfo(item.member)
            info.size, info.mtime, info.mode = size, mtime, 0o644
            with item.store.open(item.blob) as raw:
                reader = _Hashing(raw)
                archive.addfile(info, reader)
        except OSError as exc:
            if "unexpected end of data" not in str(exc):
                raise
            raise IntegrityError(f"the stored content of {item.what} is cut short") from None
        except NotFoundError:
            raise NotFoundError(
                f"the stored content of {item.what} vanished while the bundle was written"
            ) from None
        content = reader.blake3.digest()
        if not item.sealed and content != item.blob:
            raise IntegrityError(
                f"the stored content of {item.what} hashes to {content}, not to {item.blob} "
                "as recorded: the store is corrupt; run `pipetrail store verify`"
            )
        entries[item.member] = {
            "sha256": reader.sha256.hexdigest(),
            "size": reader.size,
            "data": {
                "blob": item.blob,
                "artifacts": sorted(item.artifacts),
                "sealed": item.sealed,
                "label": item.label,
                "blake3": content,
                "folder": item.folder,
                "path": item.path,
            },
        }
    return entries
