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
    from collections.abc import Collection, Mapping

    from pipetrail.ledger.queries import Reader


__all__ = [
    "CONTENT_CLASSES",
    "DIGEST_PATTERN",
    "References",
    "content_of",
    "digests_in",
    "recorded_content_purges",
    "head_seq",
    "resealed_blobs",
    "resealed_since",
    "scan_references",
    "superseded_blobs",
]

#: What a content rule removes from runs that stay: their step outputs, or the copies of
#: the sources they read (docs/gc.md).
CONTENT_CLASSES = ("step_outputs", "sources")

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
# The same page, one joined text per run (and per "is it a description"), for a scan that
# treats some runs as deleted without a ``run.deleted`` event (a retention dry run).
_KEPT_BY_RUN = (
    "SELECT run_id, kind = :a AS described, {join} AS payloads"  # noqa: S608 - constants
    " FROM events WHERE seq > :lo AND seq <= :hi "
    f"AND (run_id IS NULL OR run_id NOT IN ({_DELETED_IDS})) GROUP BY 1, 2"
)
_DROPPED = (
    "SELECT kind, payload FROM events WHERE seq > :lo AND seq <= :hi "  # noqa: S608
    f"AND run_id IN ({_DELETED_IDS})"
)
_JOIN = {"sqlite": "group_concat(payload, char(10))", "postgresql": "string_agg(payload, E'\\n')"}
_RESEALED = "SELECT payload FROM events WHERE kind = :a AND payload LIKE :r ORDER BY seq"
_RESEAL = '%"resealed_from":%'
# Only the events after a sequence number: ``kind || ''`` keeps the planner on the
# primary key's range instead of every artifact event the kind index would give.
_RESEALED_SINCE = (
    "SELECT payload FROM events WHERE seq > :s AND kind || '' = :a AND payload LIKE :r ORDER BY seq"
)
_HEAD = "SELECT seq FROM ledger_head WHERE id = 1"
_LISTS = "SELECT payload FROM events WHERE kind = :a AND (payload LIKE :f OR payload LIKE :m)"
_FOLDER = '%"serializer":"folder"%'
_MANIFEST = '%"role":"source-manifest"%'
# Objects whose bytes list more objects: a folder artifact, a folder source's manifest.
_LIST_SERIALIZERS = frozenset({"folder"})
_LIST_MARK = re.compile(r'"serializer":"folder"|"role":"source-manifest"')
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
        purged_by_run: run id -> the digests a content rule removes from that run (its
            step outputs, its source copies; see :func:`content_of`), for runs that stay.
        dropped_by_run: for each run :func:`scan_references` was asked to treat as
            deleted, the digests its own events name (its artifact descriptions are in
            :attr:`artifacts`, as for a deleted run).
    """

    roots: set[str] = field(default_factory=set)
    artifacts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    manifests: set[str] = field(default_factory=set)
    deleted_runs: set[str] = field(default_factory=set)
    deleted_only: set[str] = field(default_factory=set)
    events: int = 0
    dropped_by_run: dict[str, set[str]] = field(default_factory=dict)
    purged_by_run: dict[str, set[str]] = field(default_factory=dict)

    def reachable(self, expand: Any = None) -> set[str]:
        """Close :attr:`roots` over artifact descriptions (and manifests, with ``expand``).

        Args:
            expand: called with the digest of each reachable manifest; returns the
                digests that object lists. Without it, manifests are not opened.

        Returns:
            Every digest a kept run needs, directly or through an artifact or a folder.
        """
        return self.closure(self.roots, expand)

    def closure(self, seeds: Collection[str], expand: Any = None) -> set[str]:
        """``seeds`` and every digest they lead to through descriptions (and manifests)."""
        found = set(seeds)
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


def scan_references(
    reader: Reader,
    *,
    also_deleted: Collection[str] = (),
    content_purged: Mapping[str, Collection[str]] | None = None,
) -> References:
    """Read every event once and gather what kept runs reference (see the module doc).

    The database splits the events (kept or deleted runs; folder descriptions) so that
    Python only runs the digest pattern over each page of payloads at once.

    Args:
        reader: the ledger.
        also_deleted: runs to treat as deleted although no event says so (what a
            retention policy would delete): their digests are not roots, and
            :attr:`References.dropped_by_run` lists them per run. Nothing is recorded.
        content_purged: run id -> content classes (``step_outputs``, ``sources``) a
            retention rule removes from runs that stay (see :func:`content_of`), besides
            those the ``store.collected`` events already record: the run's other
            digests stay roots; :attr:`References.purged_by_run` lists the removed ones.

    Raises:
        LedgerError: the database failed.
    """
    refs = References()
    kind = {"k": str(EventKind.RUN_DELETED)}
    refs.deleted_runs = {str(row["run_id"]) for row in reader.fetch(_DELETED, kind)}
    last = reader.fetch(_LAST)
    refs.events = int(last[0]["n"] or 0) if last else 0
    join = _JOIN[_dialect(reader)]
    kept_sql = _KEPT.format(join=join)
    by_run_sql = _KEPT_BY_RUN.format(join=join)
    gone = {str(run_id) for run_id in also_deleted} - refs.deleted_runs
    purged = recorded_content_purges(reader)
    for run_id, classes in (content_purged or {}).items():
        purged.setdefault(str(run_id), set()).update(classes)
    purged = {r: c for r, c in purged.items() if r not in gone and r not in refs.deleted_runs}
    extra = gone | set(purged)
    for low in range(0, refs.events, _BATCH):
        page = {**kind, "lo": low, "hi": low + _BATCH}
        if extra:
            _split_page(refs, reader.fetch(by_run_sql, {**page, "a": _ARTIFACT}), extra)
        else:
            joined = reader.fetch(kept_sql, page)
            # One pass of the pattern over a page's payloads: much faster than per event.
            refs.roots.update(digests_in(str(joined[0]["payloads"] or "") if joined else ""))
        if not refs.deleted_runs:
            continue
        dropped = reader.fetch(_DROPPED, page)
        refs.deleted_only.update(digests_in("\n".join(str(row["payload"]) for row in dropped)))
        for row in dropped:
            if row["kind"] == EventKind.ARTIFACT_RECORDED:
                _describe(refs, str(row["payload"]))
    for run_id in purged:
        refs.dropped_by_run.pop(run_id, None)
    _scan_purged(reader, refs, purged)
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


_ARTIFACT = str(EventKind.ARTIFACT_RECORDED)


def _split_page(refs: References, groups: list[Any], extra: set[str]) -> None:
    """Route a page's per-run texts: roots, or the digests of a run treated as deleted."""
    for group in groups:
        text = str(group["payloads"] or "")
        run_id = group["run_id"]
        if run_id is None or str(run_id) not in extra:
            refs.roots.update(digests_in(text))
            continue
        refs.dropped_by_run.setdefault(str(run_id), set()).update(digests_in(text))
        if group["described"]:
            # Canonical JSON has no raw newline: the joined text splits back into events.
            for payload in text.split("\n"):
                # One digest and no list: the description adds nothing (skip the parse).
                if len(set(digests_in(payload))) > 1 or _LIST_MARK.search(payload):
                    _describe(refs, payload)


def superseded_blobs(reader: Reader) -> set[str]:
    """The sealed objects a re-encryption replaced (``resealed_from`` of its events)."""
    return set(resealed_blobs(reader))


def resealed_blobs(reader: Reader) -> dict[str, str]:
    """Each sealed object a re-encryption replaced -> the object that holds it now.

    A step event records the object its output was read from; after a re-encryption
    that object is replaced, and a reader follows this map to the current one.
    """
    rows = reader.fetch(_RESEALED, {"a": str(EventKind.ARTIFACT_RECORDED), "r": _RESEAL})
    return _followed({}, rows)


def head_seq(reader: Reader) -> int:
    """The sequence number of the ledger's newest event (0: none); one indexed row."""
    rows = reader.fetch(_HEAD)
    return int(rows[0]["seq"]) if rows else 0


def resealed_since(reader: Reader, moved: Mapping[str, str], after: int) -> dict[str, str]:
    """``moved`` (a :func:`resealed_blobs` map as of event ``after``) brought up to date.

    Reads only the events after ``after``: what a long-lived reader runs when the
    ledger's head moved, so that a re-encryption made by another process is followed
    without a restart.
    """
    params = {"s": after, "a": str(EventKind.ARTIFACT_RECORDED), "r": _RESEAL}
    rows = reader.fetch(_RESEALED_SINCE, params)
    return _followed(dict(moved), rows) if rows else dict(moved)


def _followed(moved: dict[str, str], rows: Collection[Mapping[str, Any]]) -> dict[str, str]:
    """``moved`` with the replacements ``rows`` (reseal payloads, oldest first) record."""
    for row in rows:
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


_PURGES = "SELECT payload FROM events WHERE kind = :k AND payload LIKE :p"
_RUN_EVENTS = "SELECT run_id, kind, payload FROM events WHERE run_id IN ({marks})"
_CHUNK = 500
_STEP_ENDS = frozenset({str(EventKind.STEP_COMPLETED), str(EventKind.STEP_CACHED)})


def recorded_content_purges(reader: Reader) -> dict[str, set[str]]:
    """Run id -> the content classes ``store.collected`` events say were purged from it."""
    found: dict[str, set[str]] = {}
    params = {"k": str(EventKind.STORE_COLLECTED), "p": '%"purged_content":%'}
    for row in reader.fetch(_PURGES, params):
        payload = orjson.loads(str(row["payload"]))
        for run_id, classes in (payload.get("purged_content") or {}).items():
            found.setdefault(str(run_id), set()).update(str(c) for c in classes)
    return found


def content_of(kind: str, payload: dict[str, Any], classes: Collection[str]) -> list[str]:
    """The digests of the ``classes`` an event names (what a content rule removes).

    ``step_outputs``: the outputs of ``step.completed`` and ``step.cached`` events (the
    values steps returned; metric series and reports, named ``KIND:NAME``, stay);
    ``sources``: the stored copy of a ``source.observed`` source (a folder's manifest,
    whose files go with it), unless it was tracked by reference.
    """
    if kind in _STEP_ENDS and "step_outputs" in classes:
        outputs = payload.get("outputs") or {}
        return [d for name, d in outputs.items() if ":" not in name and isinstance(d, str)]
    if kind == EventKind.SOURCE_OBSERVED and "sources" in classes:
        digest = payload.get("digest")
        if isinstance(digest, str) and not payload.get("by_reference"):
            return [digest]
    return []


def _scan_purged(reader: Reader, refs: References, purged: dict[str, set[str]]) -> None:
    """Roots of runs that stay but lose some content: everything but that content."""
    ids = sorted(purged)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        names = {f"r{i}": run_id for i, run_id in enumerate(chunk)}
        sql = _RUN_EVENTS.format(marks=", ".join(f":{n}" for n in names))
        rows = [
            (str(row["run_id"]), str(row["kind"]), str(row["payload"]))
            for row in reader.fetch(sql, names)
        ]
        removed: dict[str, set[str]] = {run_id: set() for run_id in chunk}
        for run_id, kind, text in rows:
            if kind in _STEP_ENDS or kind == EventKind.SOURCE_OBSERVED:
                removed[run_id].update(content_of(kind, orjson.loads(text), purged[run_id]))
        for run_id, kind, text in rows:
            gone = removed[run_id]
            if kind == EventKind.ARTIFACT_RECORDED and orjson.loads(text).get("digest") in gone:
                _describe(refs, text)  # the description of removed content: not a root
                continue
            refs.roots.update(d for d in digests_in(text) if d not in gone)
        for run_id in chunk:
            refs.purged_by_run[run_id] = removed[run_id]
