"""Runs marked deleted: the ``run.deleted`` event and how readers see it.

Deleting a run appends one ``run.deleted`` event (``run_id``, ``reason``; the ledger adds
who and when). Nothing is removed from the ledger: the run's events and rows stay, and
``audit verify`` checks the ``run_deletions`` rows against the events like every other
derived row. Listings and ``latest`` leave deleted runs out; ``show`` says the run was
deleted; garbage collection stops counting what only deleted runs name
(:mod:`pipetrail.ledger.references`). Imports only the ledger's own modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetrail.ledger.events import EventDraft
    from pipetrail.ledger.queries import Reader

__all__ = ["deleted_among", "deletion_draft", "reused_by", "run_deletion"]

_ONE = "SELECT reason, deleted_by, deleted_at, seq FROM run_deletions WHERE run_id = :r"


def deletion_draft(run_id: str, reason: str) -> EventDraft:
    """The event that marks ``run_id`` deleted, saying why."""
    # Imported here: the readers of deletions (`pipetrail runs`) append no event, and the
    # events module brings in the hashing package.
    from pipetrail.ledger.events import EventDraft, EventKind

    return EventDraft(EventKind.RUN_DELETED, {"run_id": run_id, "reason": reason}, run_id=run_id)


def run_deletion(reader: Reader, run_id: str) -> dict[str, Any] | None:
    """Return ``{reason, deleted_by, deleted_at, seq}`` when the run is deleted, else None."""
    rows = reader.fetch(_ONE, {"r": run_id})
    return dict(rows[0]) if rows else None


def deleted_among(reader: Reader, run_ids: list[str]) -> set[str]:
    """Return which of ``run_ids`` are marked deleted."""
    found: set[str] = set()
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start : start + 500]
        names = {f"r{i}": run_id for i, run_id in enumerate(chunk)}
        marks = ", ".join(f":{name}" for name in names)
        sql = f"SELECT run_id FROM run_deletions WHERE run_id IN ({marks})"  # noqa: S608 - placeholders only
        found.update(str(row["run_id"]) for row in reader.fetch(sql, names))
    return found


_REUSED_BY = (
    "SELECT DISTINCT later.run_id AS run_id FROM step_runs later "
    "JOIN step_runs mine ON later.reused_step_run_id = mine.step_run_id "
    "WHERE mine.run_id = :r AND later.run_id <> :r "
    "AND later.run_id NOT IN (SELECT d.run_id FROM run_deletions d) ORDER BY 1"
)


def reused_by(reader: Reader, run_id: str) -> list[str]:
    """Return the kept runs that reused a step run of ``run_id`` from the cache."""
    return [str(row["run_id"]) for row in reader.fetch(_REUSED_BY, {"r": run_id})]
