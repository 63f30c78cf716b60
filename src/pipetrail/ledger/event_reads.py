"""Reading events back as typed records (:mod:`pipetrail.ledger.event_records`).

What only the events hold (a step's logged metrics, data operations, how each output is
read, where its source text is stored; the sources a run observed) is read here, so no
module outside the ledger selects or parses event payloads.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from pipetrail.core.classification import SENSITIVE
from pipetrail.ledger.event_records import (
    ArtifactRecorded,
    EventRecord,
    KeyringKept,
    SourceObserved,
    StepEvent,
    StepStarted,
    parse_payload,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pipetrail.ledger.events import EventKind
    from pipetrail.ledger.queries import Reader

__all__ = [
    "closing_step_events",
    "code_artifacts",
    "first_code_artifact",
    "newest_keyring",
    "sealed_artifact_blobs",
    "sealed_artifact_rows",
    "run_events",
    "sealed_content",
    "source_events",
    "source_observations",
    "started_step_events",
    "step_events",
]

_SENSITIVE = sorted(SENSITIVE)
_STEP_KINDS = "('step.completed', 'step.cached', 'step.failed')"
_FIRST_WITH_CODE = (
    "SELECT first_seq FROM step_runs WHERE step = :s AND code_digest = :c "
    "ORDER BY first_seq LIMIT 1"
)
_CODE_ARTIFACTS_BEFORE = (
    "SELECT digest, meta, first_seq FROM artifacts WHERE role = 'code' AND first_seq <= :seq "
    "ORDER BY first_seq DESC"
)
_CODE_ARTIFACTS_OF = (
    "SELECT blob, meta, first_run_id FROM artifacts WHERE role = 'code' AND first_run_id IN "
    "(SELECT run_id FROM step_runs WHERE step = :step AND code_digest = :code) "
    "ORDER BY first_seq DESC"
)


def step_events(reader: Reader, run_id: str, *, started: bool = False) -> list[EventRecord]:
    """Return the typed events of a run's steps, in ledger order.

    The closing events (:class:`StepEvent`: completed, cached, failed) and, with
    ``started``, the :class:`StepStarted` ones too.
    """
    kinds = (
        "('step.started', 'step.completed', 'step.cached', 'step.failed')"
        if started
        else _STEP_KINDS
    )
    return [
        parse_payload(str(r["kind"]), r["payload"], seq=int(r["seq"]), ts=str(r["ts"]))
        for r in reader.fetch(
            "SELECT seq, ts, kind, payload FROM events WHERE run_id = :r "  # noqa: S608
            f"AND kind IN {kinds} ORDER BY seq",
            {"r": run_id},
        )
    ]


def closing_step_events(reader: Reader, run_id: str) -> list[StepEvent]:
    """Return the closing events of a run's steps (completed, cached, failed), in order."""
    return [e for e in step_events(reader, run_id) if isinstance(e, StepEvent)]


def started_step_events(reader: Reader, run_id: str) -> list[StepStarted | StepEvent]:
    """Return every step event of a run (started and closing), in order."""
    return [
        e
        for e in step_events(reader, run_id, started=True)
        if isinstance(e, StepStarted | StepEvent)
    ]


def source_events(reader: Reader, run_id: str) -> list[SourceObserved]:
    """Return the ``source.observed`` events of a run, in ledger order."""
    return [
        e
        for r in reader.fetch(
            "SELECT seq, ts, kind, payload FROM events WHERE run_id = :r "
            "AND kind = 'source.observed' ORDER BY seq",
            {"r": run_id},
        )
        if isinstance(
            e := parse_payload(str(r["kind"]), r["payload"], seq=int(r["seq"]), ts=str(r["ts"])),
            SourceObserved,
        )
    ]


def run_events(
    reader: Reader, run_ids: Sequence[str], kinds: Sequence[EventKind]
) -> list[EventRecord]:
    """Return the typed events of ``kinds`` about ``run_ids``, in ledger order.

    For what happened around runs without a projection of its own (gate verdicts,
    alert deliveries).
    """
    kind_names = {f"k{i}": str(kind) for i, kind in enumerate(kinds)}
    found: list[EventRecord] = []
    for start in range(0, len(run_ids), 500):
        names = {f"r{j}": r for j, r in enumerate(run_ids[start : start + 500])}
        rows = reader.fetch(
            "SELECT seq, ts, kind, payload FROM events WHERE "  # noqa: S608 - placeholders only
            f"run_id IN ({', '.join(':' + n for n in names)}) "
            f"AND kind IN ({', '.join(':' + k for k in kind_names)})",
            {**names, **kind_names},
        )
        found += [
            parse_payload(str(r["kind"]), r["payload"], seq=int(r["seq"]), ts=str(r["ts"]))
            for r in rows
        ]
    return sorted(found, key=lambda e: e.seq)


def source_observations(reader: Reader) -> list[SourceObserved]:
    """Return every distinct ``source.observed`` payload of the ledger (any run)."""
    return [
        e
        for r in reader.fetch("SELECT DISTINCT payload FROM events WHERE kind = 'source.observed'")
        if isinstance(e := parse_payload("source.observed", r["payload"]), SourceObserved)
    ]


def first_code_artifact(reader: Reader, step: str, code_digest: str) -> str | None:
    """The code artifact of ``step`` stored with the first step run of this code, if any.

    The newest ``code`` artifact for the step recorded at or before the first step run
    with fingerprint ``code_digest`` (for runs recorded before ``code_source``).
    """
    first = reader.fetch(_FIRST_WITH_CODE, {"s": step, "c": code_digest})
    if not first:
        return None
    for row in reader.fetch(_CODE_ARTIFACTS_BEFORE, {"seq": first[0]["first_seq"]}):
        meta = json.loads(row["meta"]) if isinstance(row["meta"], str) else row["meta"]
        if (meta or {}).get("step") == step:
            return str(row["digest"])
    return None


def code_artifacts(reader: Reader, step: str, code_digest: str) -> list[tuple[str, str]]:
    """``(first run id, blob)`` of the code artifacts of ``step`` runs of this code stored.

    Newest first; only runs whose step ran with fingerprint ``code_digest``.
    """
    found = []
    for row in reader.fetch(_CODE_ARTIFACTS_OF, {"step": step, "code": code_digest}):
        meta = json.loads(row["meta"]) if isinstance(row["meta"], str) else row["meta"]
        if (meta or {}).get("step") == step:
            found.append((str(row["first_run_id"]), str(row["blob"])))
    return found


def sealed_artifact_blobs(reader: Reader) -> list[str]:
    """The stored objects of every sealed (encrypted) artifact the ledger records, sorted."""
    found = set()
    for r in reader.fetch("SELECT DISTINCT payload FROM events WHERE kind = 'artifact.recorded'"):
        record = parse_payload("artifact.recorded", r["payload"])
        if isinstance(record, ArtifactRecorded) and record.meta.get("sealed"):
            found.add(record.blob)
    from pipetrail.ledger.references import superseded_blobs

    # The objects a re-encryption replaced are no longer recorded content.
    return sorted(found - superseded_blobs(reader))


class _Fetches(Protocol):
    """A reader, or the driver inside a write transaction."""

    def fetch(self, text: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one query."""
        ...


_NEWEST_KEYRING = "SELECT payload FROM events WHERE kind = 'keys.keyring' ORDER BY seq DESC LIMIT 1"
_SEALED_ROWS = "SELECT digest, blob FROM artifacts WHERE meta LIKE :m ORDER BY first_seq"


def newest_keyring(source: _Fetches) -> Any:
    """The keyring document of the newest ``keys.keyring`` event (None: there is none)."""
    rows = source.fetch(_NEWEST_KEYRING)
    if not rows:
        return None
    record = parse_payload("keys.keyring", rows[0]["payload"])
    return record.keyring if isinstance(record, KeyringKept) else None


_ANY_SEALED_ARTIFACT = "SELECT digest FROM artifacts WHERE meta LIKE :m LIMIT 1"
_ANY_KEYS_EVENT = "SELECT kind FROM events WHERE kind IN (:r, :k) LIMIT 1"
# Built from placeholder names only (one per sensitive label); the values are bound.
_ANY_KEYED_SOURCE = (
    "SELECT run_id FROM events WHERE kind = :k AND ("  # noqa: S608 - placeholders only
    + " OR ".join(f"payload LIKE :l{i}" for i in range(len(_SENSITIVE)))
    + ") LIMIT 1"
)
_KEYED_SOURCE_PARAMS = {
    "k": "source.observed",
    **{f"l{i}": f'%"classification":"{label}"%' for i, label in enumerate(_SENSITIVE)},
}


def sealed_content(reader: _Fetches) -> str | None:
    """What the ledger records under the project's keys, in words; None when nothing.

    Sealed artifacts (outputs, logs, reports, copies of sources), sensitive sources
    recorded under a keyed digest, and key rotations all need the project's keyring:
    a project that records any of them must never make a new one.
    """
    rows = reader.fetch(_ANY_SEALED_ARTIFACT, {"m": '%"sealed":%'})
    if rows:
        return f"sealed artifacts (such as {rows[0]['digest']})"
    rows = reader.fetch(_ANY_KEYED_SOURCE, _KEYED_SOURCE_PARAMS)
    if rows:
        return f"sensitive sources recorded under keyed digests (run {rows[0]['run_id']})"
    rows = reader.fetch(_ANY_KEYS_EVENT, {"r": "keys.rotated", "k": "keys.keyring"})
    if rows:
        return f"{rows[0]['kind']} events"
    return None


def sealed_artifact_rows(reader: Reader) -> list[tuple[str, str]]:
    """``(digest, current blob)`` of the artifacts whose record may say ``sealed``.

    Selected by a substring of the canonical ``meta`` text, oldest first; the caller
    reads each record through :meth:`Reader.artifact` (checked against its event).
    """
    rows = reader.fetch(_SEALED_ROWS, {"m": '%"sealed":%'})
    return [(str(r["digest"]), str(r["blob"])) for r in rows]
