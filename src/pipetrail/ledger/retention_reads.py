"""What retention policies read from the ledger: runs, their labels, pins and purges.

Retention (``pipetrail gc --policy``; docs/gc.md) decides which runs have outlived the
``[retention]`` rules of ``pipetrail.toml``. The facts it needs are read here, so no
module outside the ledger writes SQL or parses an event payload:

* :func:`retention_candidates`: every run not deleted, with its status and times;
* :func:`pinned_runs`: runs carrying the ``pinned`` tag (``pipetrail runs pin``);
* :func:`labelled_runs`: runs that read a source, or recorded an output, with a label;
* :func:`run_purge`: the collection that removed a deleted run's objects under a policy
  (the tombstone ``show`` prints).

Imports only the ledger's own modules and the standard library.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipetrail.ledger.events import EventKind

if TYPE_CHECKING:
    from pipetrail.ledger.queries import Reader

__all__ = [
    "PIN_TAG",
    "labelled_runs",
    "pinned_runs",
    "purged_runs",
    "retention_candidates",
    "run_purge",
    "source_runs",
]

#: The tag that pins a run: retention never deletes it.
PIN_TAG = "pinned"

_CANDIDATES = (
    "SELECT run_id, pipeline, status, host, process, started_at, ended_at FROM runs "
    "WHERE run_id NOT IN (SELECT d.run_id FROM run_deletions d) ORDER BY started_at"
)
_PINNED = "SELECT run_id, value FROM run_tags WHERE key = :k"
_LABELLED = (
    "SELECT DISTINCT run_id, payload FROM events WHERE kind IN ({kinds}) "
    "AND run_id IS NOT NULL AND payload LIKE :p"
)
_PURGES = (
    "SELECT seq, ts, actor, payload FROM events WHERE kind = :k AND payload LIKE :p ORDER BY seq"
)
_STEP_KINDS = (str(EventKind.STEP_COMPLETED), str(EventKind.STEP_CACHED))


def retention_candidates(reader: Reader) -> list[dict[str, Any]]:
    """Every run not marked deleted: ``run_id``, ``pipeline``, ``status``, times, process."""
    return [dict(row) for row in reader.fetch(_CANDIDATES)]


def pinned_runs(reader: Reader) -> dict[str, str]:
    """Run id -> why it is pinned (the value of its ``pinned`` tag)."""
    return {str(row["run_id"]): str(row["value"]) for row in reader.fetch(_PINNED, {"k": PIN_TAG})}


def labelled_runs(reader: Reader, label: str, kind: str) -> set[str]:
    """The runs that read a source, or recorded an output, labelled ``label``.

    ``kind`` is ``"sources"`` (the ``classification`` of ``source.observed`` events) or
    ``"outputs"`` (the ``classification``, output -> label, of ``step.completed`` and
    ``step.cached`` events).
    """
    kinds = [str(EventKind.SOURCE_OBSERVED)] if kind == "sources" else list(_STEP_KINDS)
    names = {f"k{i}": k for i, k in enumerate(kinds)}
    sql = _LABELLED.format(kinds=", ".join(f":{n}" for n in names))
    found: set[str] = set()
    for row in reader.fetch(sql, {**names, "p": f'%"classification":%"{label}"%'}):
        payload = json.loads(str(row["payload"]))
        value = payload.get("classification")
        labels = value.values() if isinstance(value, dict) else [value]
        if label in labels:
            found.add(str(row["run_id"]))
    return found


def _tombstone(row: Any, payload: dict[str, Any], run_id: str) -> dict[str, Any]:
    if run_id not in (payload.get("purged_runs") or {}):
        # A content rule: the run stays, its step outputs or source copies went.
        classes = [str(c) for c in payload["purged_content"][run_id]]
        return {
            "policy": ", ".join(classes),
            "content": classes,
            "reason": payload.get("reason", ""),
            "purged_at": str(row["ts"]),
            "purged_by": str(row["actor"]),
            "seq": int(row["seq"]),
            "objects": int(payload.get("objects", 0)),
        }
    return {
        "policy": payload["purged_runs"][run_id],
        "reason": payload.get("reason", ""),
        "purged_at": str(row["ts"]),
        "purged_by": str(row["actor"]),
        "seq": int(row["seq"]),
        "objects": int(payload.get("objects", 0)),
    }


def run_purge(reader: Reader, run_id: str) -> dict[str, Any] | None:
    """The tombstone of a run whose objects a retention policy or a purge removed, or None.

    Returns:
        ``policy`` (the rule, or ``purge of source PATH``), ``reason``, ``purged_at``,
        ``purged_by``, ``seq`` (the ``store.collected`` event) and ``objects`` (how many
        that collection removed, for every run it purged); when a content rule removed
        only some of a run's content (the run stays), also ``content``: the classes
        (``step_outputs``, ``sources``).
    """
    rows = reader.fetch(
        _PURGES, {"k": str(EventKind.STORE_COLLECTED), "p": f'%"purged_%"{run_id}"%'}
    )
    found = None
    for row in rows:
        payload = json.loads(str(row["payload"]))
        if run_id in (payload.get("purged_runs") or {}):
            return _tombstone(row, payload, run_id)  # the run itself went: that says all
        if found is None and run_id in (payload.get("purged_content") or {}):
            found = _tombstone(row, payload, run_id)
    return found


def purged_runs(reader: Reader) -> dict[str, dict[str, Any]]:
    """Run id -> its tombstone (as :func:`run_purge`), for every purged run, in one read."""
    found: dict[str, dict[str, Any]] = {}
    rows = reader.fetch(_PURGES, {"k": str(EventKind.STORE_COLLECTED), "p": '%"purged_%'})
    content: dict[str, dict[str, Any]] = {}
    for row in rows:
        payload = json.loads(str(row["payload"]))
        for run_id in payload.get("purged_runs") or {}:
            found.setdefault(str(run_id), _tombstone(row, payload, str(run_id)))
        for run_id in payload.get("purged_content") or {}:
            content.setdefault(str(run_id), _tombstone(row, payload, str(run_id)))
    return {**content, **found}


_SOURCE_RUNS = (
    "SELECT run_id, payload FROM events WHERE kind = :k AND run_id IS NOT NULL AND payload LIKE :p"
)


def source_runs(reader: Reader, path: str) -> dict[str, dict[str, Any]]:
    """Run id -> the ``source.observed`` payload, for every run that read source ``path``.

    ``path`` is compared with each recorded path after normalization (``./data/x.csv``
    is ``data/x.csv``); deleted runs are included (the caller leaves them out).
    """
    import posixpath

    wanted = posixpath.normpath(path.replace("\\", "/"))
    name = posixpath.basename(wanted)
    found: dict[str, dict[str, Any]] = {}
    rows = reader.fetch(_SOURCE_RUNS, {"k": str(EventKind.SOURCE_OBSERVED), "p": f"%{name}%"})
    for row in rows:
        payload = json.loads(str(row["payload"]))
        recorded = str(payload.get("path") or "")
        if recorded and posixpath.normpath(recorded.replace("\\", "/")) == wanted:
            found[str(row["run_id"])] = payload
    return found
