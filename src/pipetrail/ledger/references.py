"""What the record still needs: every digest the events of kept runs name.

Owns :func:`scan_references` and its result :class:`References`, the ledger's half of
garbage collection (docs/adr/0014-deleting-runs-and-gc.md). The rule is deliberately
blunt: any string of the form ``blake3:<64 hex>`` anywhere in the payload of an event
of a run that is not deleted (or of no run at all: a collection's own record) is a
root. A digest that names no stored object (a cache key, a code fingerprint) costs
nothing; a digest recorded under a key this module has never heard of is kept all the
same, so a new event kind can never make garbage collection remove what it names.

Two kinds of reference do not sit in a kept run's own events, and are returned for the
caller to follow:

* an artifact is described once, by the ``artifact.recorded`` event of the run that
  stored it first; a later run names only the artifact's digest. :attr:`References.artifacts`
  maps each artifact digest to every digest its description names (its blob, digests in
  its meta) when a deleted run recorded it;
* a folder (a folder artifact, a folder source's manifest) is an object listing the
  digests of its files. :attr:`References.manifests` holds the objects that are such
  lists; only the content store can open them.

The deleted runs come from the ``run.deleted`` events themselves, not from the
``run_deletions`` table: a row slipped into that table must not make garbage collection
remove a kept run's objects. Imports only the ledger's own modules; never the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from pipetrail.ledger.events import EventKind

if TYPE_CHECKING:
    from pipetrail.ledger.queries import Reader


__all__ = [
    "DIGEST_PATTERN",
    "References",
    "digests_in",
    "resealed_blobs",
    "scan_references",
    "superseded_blobs",
]

DIGEST_PATTERN = re.compile(r"blake3:[0-9a-f]{64}")
_BATCH = 50000  # events per page (by sequence number)
_DELETED = "SELECT DISTINCT run_id FROM events WHERE kind = :k AND run_id IS NOT NULL"
_DELETED_IDS = "SELECT d.run_id FROM events d WHERE d.kind = :k AND d.run_id IS NOT NULL"
_LAST = "SELECT MAX(seq) AS n FROM events"
# A page's payloads come back as one text (the database joins them): one string to
# decode and search instead of 50,000 rows. ``{join}`` is the backend's aggregate.
_KEPT = (
    "SELECT {join} AS payloads"  # noqa: S608 - constants and the aggregate's name
    " FROM events WHERE seq > :lo AND seq <= :hi "
    f"AND (run_id IS NULL OR run_id NOT IN ({_DELETED_IDS}))"
)
_DROPPED = (
    "SELECT kind, payload FROM events WHERE seq > :lo AND seq <= :hi "  # noqa: S608
    f"AND run_id IN ({_DELETED_IDS})"
)
_JOIN = {"sqlite": "group_concat(payload, char(10))", "postgresql": "string_agg(payload, E'\\n')"}
_RESEALED = "SELECT payload FROM events WHERE kind = :a AND payload LIKE :r ORDER BY seq"
_RESEAL = '%"resealed_from":%'
_LISTS = "SELECT payload FROM events WHERE kind = :a AND (payload LIKE :f OR payload LIKE :m)"
_FOLDER = '%"serializer":"folder"%'
_MANIFEST = '%"role":"source-manifest"%'
# Objects whose bytes list more objects: a folder artifact, a folder source's manifest.
_LIST_SERIALIZERS = frozenset({"folder"})
_LIST_ROLES = frozenset({"source-manifest"})


def digests_in(text: str) -> list[str]:
    """Return every digest written in ``text`` (a payload, a manifest), in order."""
    return DIGEST_PATTERN.findall(text)


@dataclass
class References:
    """The outcome of :func:`scan_references`.

    Attributes:
        roots: digests named by the events of runs that are not deleted, and of events
            of no run.
        artifacts: artifact digest -> the digests its ``artifact.recorded`` event names,
            for the artifacts deleted runs recorded (a kept run's description is a root
            as a whole).
        manifests: digests of objects that list further objects (folder manifests).
        deleted_runs: the runs a ``run.deleted`` event marks deleted.
        deleted_only: digests named by deleted runs' events and by no kept one (what a
            collection may have removed on purpose).
        events: how many events were read.
    """

    roots: set[str] = field(default_factory=set)
    artifacts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    manifests: set[str] = field(default_factory=set)
    deleted_runs: set[str] = field(default_factory=set)
    deleted_only: set[str] = field(default_factory=set)
    events: int = 0

    def reachable(self, expand: Any = None) -> set[str]:
        """Close :attr:`roots` over artifact descriptions (and manifests, with ``expand``).

        Args:
            expand: called with the digest of each reachable manifest; returns the
                digests that object lists. Without it, manifests are not opened.

        Returns:
            Every digest a kept run needs, directly or through an artifact or a folder.
        """
        found = set(self.roots)
        todo = list(found)
        while todo:
            digest = todo.pop()
            more: list[str] = list(self.artifacts.get(digest, ()))
            if expand is not None and digest in self.manifests:
                more.extend(expand(digest))
            for item in more:
                if item not in found:
                    found.add(item)
                    todo.append(item)
        return found


def scan_references(reader: Reader) -> References:
    """Read every event once and gather what kept runs reference (see the module doc).

    The database splits the events (kept or deleted runs; folder descriptions) so that
    Python only runs the digest pattern over each page of payloads at once.

    Raises:
        LedgerError: the database failed.
    """
    refs = References()
    kind = {"k": str(EventKind.RUN_DELETED)}
    refs.deleted_runs = {str(row["run_id"]) for row in reader.fetch(_DELETED, kind)}
    last = reader.fetch(_LAST)
    refs.events = int(last[0]["n"] or 0) if last else 0
    kept_sql = _KEPT.format(join=_JOIN[_dialect(reader)])
    for low in range(0, refs.events, _BATCH):
        page = {**kind, "lo": low, "hi": low + _BATCH}
        joined = reader.fetch(kept_sql, page)
        # One pass of the pattern over a page's payloads: much faster than one per event.
        refs.roots.update(digests_in(str(joined[0]["payloads"] or "") if joined else ""))
        if not refs.deleted_runs:
            continue
        dropped = reader.fetch(_DROPPED, page)
        refs.deleted_only.update(digests_in("\n".join(str(row["payload"]) for row in dropped)))
        for row in dropped:
            if row["kind"] == EventKind.ARTIFACT_RECORDED:
                _describe(refs, str(row["payload"]))
    # A kept run's description is a root as a whole: only whether its blob lists more
    # objects matters. Canonical JSON has no spaces, so a substring test finds folders.
    folders = {"a": str(EventKind.ARTIFACT_RECORDED), "f": _FOLDER, "m": _MANIFEST}
    for row in reader.fetch(_LISTS, folders):
        _describe(refs, str(row["payload"]))
    # A sealed object sealed again under a new data key is replaced by its new object
    # (docs/adr/0025-reencryption.md): the old ciphertext is needed by nothing.
    superseded = superseded_blobs(reader)
    if superseded:
        refs.roots -= superseded
        refs.artifacts = {
            d: tuple(x for x in named if x not in superseded) for d, named in refs.artifacts.items()
        }
    refs.deleted_only -= refs.roots
    return refs


def superseded_blobs(reader: Reader) -> set[str]:
    """The sealed objects a re-encryption replaced (``resealed_from`` of its events)."""
    return set(resealed_blobs(reader))


def resealed_blobs(reader: Reader) -> dict[str, str]:
    """Each sealed object a re-encryption replaced -> the object that holds it now.

    A step event records the object its output was read from; after a re-encryption
    that object is replaced, and a reader follows this map to the current one.
    """
    moved: dict[str, str] = {}
    for row in reader.fetch(_RESEALED, {"a": str(EventKind.ARTIFACT_RECORDED), "r": _RESEAL}):
        payload = orjson.loads(str(row["payload"]))
        old, new = payload.get("resealed_from"), payload.get("blob")
        if isinstance(old, str) and isinstance(new, str):
            moved[old] = new
    for old, new in list(moved.items()):  # several re-encryptions: follow to the last
        seen = {old}
        while new in moved and new not in seen:
            seen.add(new)
            new = moved[new]
        moved[old] = new
    return moved


def _dialect(reader: Reader) -> str:
    """``sqlite`` or ``postgresql``: which aggregate joins text on this reader's backend."""
    url = str(getattr(reader, "url", "") or "")
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def _describe(refs: References, text: str) -> None:
    """Note what an ``artifact.recorded`` payload names, and whether its blob is a list."""
    # orjson: the scan parses every artifact description of the ledger.
    payload: dict[str, Any] = orjson.loads(text)
    digest = payload.get("digest")
    if not isinstance(digest, str):
        return
    named = tuple(d for d in dict.fromkeys(digests_in(text)) if d != digest)
    if named:
        refs.artifacts[digest] = (*refs.artifacts.get(digest, ()), *named)
    blob = payload.get("blob")
    if isinstance(blob, str) and (
        payload.get("serializer") in _LIST_SERIALIZERS or payload.get("role") in _LIST_ROLES
    ):
        refs.manifests.add(blob)
