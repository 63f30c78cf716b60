"""Projections: how each event kind updates the query tables.

``apply_event`` runs inside the transaction that appends the event, and again for every
event when projections are rebuilt, so it must be deterministic and depend only on the
event and on rows earlier events produced. Inserts are idempotent (``ON CONFLICT DO
NOTHING``, understood by SQLite and PostgreSQL alike): a rebuild or a concurrent writer
may meet a row that exists. Column names match :mod:`pipetrail.ledger.schema`; the rows
come from :mod:`pipetrail.ledger.projection_rows`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.ledger.events import Event, EventKind
from pipetrail.ledger.projection_rows import (
    STEP_COLUMNS,
    artifact_row,
    closed_step_rows,
    deletion_row,
    io_rows,
    metric_rows,
    note_row,
    rename_row,
    run_end_row,
    run_param_rows,
    run_row,
    run_tag_rows,
    source_row,
    step_row,
    tagged_rows,
    untagged_keys,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.ledger.driver import Driver

__all__ = [
    "ARTIFACT_INSERT",
    "ARTIFACT_RESEAL",
    "IO_INSERT",
    "METRIC_INSERT",
    "PARAM_INSERT",
    "RUN_END",
    "RUN_INSERT",
    "SOURCE_INSERT",
    "STEP_CLOSE",
    "STEP_INSERT",
    "TAG_UPSERT",
    "apply_event",
    "artifact_statement",
    "has_projection",
    "reused_metrics",
]


def _insert(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    marks = ", ".join(f":{c}" for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608


RUN_INSERT = _insert(
    "runs",
    (
        "run_id", "pipeline", "pipeline_fingerprint", "status", "owner", "host", "process",
        "params", "seed", "git", "environment", "record", "started_at", "ended_at", "error",
        "steps_total", "first_seq", "last_seq", "name", "purpose",
    ),
)  # fmt: skip
RUN_END = (
    "UPDATE runs SET status = :status, ended_at = :ended_at, error = :error, "
    "last_seq = :last_seq WHERE run_id = :run_id"
)
# Only rows of the run that are still running: a closing event never rewrites an outcome.
STEP_CLOSE = (
    "UPDATE step_runs SET status = :status, ended_at = :ended_at, error = :error, "
    "last_seq = :last_seq WHERE step_run_id = :step_run_id AND run_id = :run_id "
    "AND status = 'running'"
)
STEP_INSERT = _insert("step_runs", ("step_run_id", "first_seq", *STEP_COLUMNS))
_STEP_UPDATE = (
    "UPDATE step_runs SET "  # noqa: S608 - column names are constants
    + ", ".join(f"{c} = :{c}" for c in STEP_COLUMNS)
    + " WHERE step_run_id = :step_run_id"
)
IO_INSERT = _insert("step_run_io", ("step_run_id", "direction", "name", "digest", "run_id"))
ARTIFACT_INSERT = _insert(
    "artifacts",
    (
        "digest", "blob", "serializer", "type_name", "size", "meta", "role", "first_run_id",
        "first_step_run_id", "created_at", "first_seq",
    ),
)  # fmt: skip
# A sealed artifact sealed again under a new data key (``resealed_from`` in its
# ``artifact.recorded`` event, docs/adr/0025-reencryption.md): the newer description
# replaces the row, so the row names the event that gives its current blob.
ARTIFACT_RESEAL = (
    "INSERT INTO artifacts (digest, blob, serializer, type_name, size, meta, role, "
    "first_run_id, first_step_run_id, created_at, first_seq) VALUES (:digest, :blob, "
    ":serializer, :type_name, :size, :meta, :role, :first_run_id, :first_step_run_id, "
    ":created_at, :first_seq) ON CONFLICT (digest) DO UPDATE SET blob = excluded.blob, "
    "serializer = excluded.serializer, type_name = excluded.type_name, size = excluded.size, "
    "meta = excluded.meta, role = excluded.role, first_run_id = excluded.first_run_id, "
    "first_step_run_id = excluded.first_step_run_id, created_at = excluded.created_at, "
    "first_seq = excluded.first_seq"
)
SOURCE_INSERT = _insert(
    "sources",
    ("run_id", "path", "digest", "size", "mtime_ns", "observed_at", "by_reference", "seq"),
)

_DELETION_INSERT = _insert("run_deletions", ("run_id", "reason", "deleted_by", "deleted_at", "seq"))
PARAM_INSERT = _insert("run_params", ("run_id", "name", "value", "num"))
METRIC_INSERT = _insert(
    "run_metrics", ("step_run_id", "key", "run_id", "node_id", "name", "value", "origin")
)
# A cache hit's returned numbers are those of the step run it reused (its event does not
# repeat them); its logged metrics come with its own event.
_METRICS_REUSED = (
    "INSERT INTO run_metrics (step_run_id, key, run_id, node_id, name, value, origin) "
    "SELECT :step_run_id, key, :run_id, :node_id, :name_prefix || key, value, origin "
    "FROM run_metrics WHERE step_run_id = :reused AND origin = 'output'"
)
TAG_UPSERT = (
    "INSERT INTO run_tags (run_id, key, value, seq) VALUES (:run_id, :key, :value, :seq) "
    "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, seq = excluded.seq"
)
_TAG_DELETE = "DELETE FROM run_tags WHERE run_id = :run_id AND key = :key"
_NOTE_INSERT = _insert("run_notes", ("seq", "run_id", "text", "actor", "noted_at"))
_RUN_RENAME = "UPDATE runs SET name = :name WHERE run_id = :run_id"


def _run_started(
    db: Driver, event: Event, p: dict[str, Any], encode: Callable[[Any], Any] | None = None
) -> None:
    db.execute(RUN_INSERT, run_row(event, p, encode))
    db.executemany(PARAM_INSERT, run_param_rows(p, encode))
    db.executemany(TAG_UPSERT, run_tag_rows(event, p))


def _run_named(db: Driver, event: Event, p: dict[str, Any]) -> None:
    db.execute(_RUN_RENAME, rename_row(p))


def _run_tagged(db: Driver, event: Event, p: dict[str, Any]) -> None:
    db.executemany(TAG_UPSERT, tagged_rows(event, p))


def _run_untagged(db: Driver, event: Event, p: dict[str, Any]) -> None:
    db.executemany(_TAG_DELETE, untagged_keys(p))


def _run_noted(db: Driver, event: Event, p: dict[str, Any]) -> None:
    db.execute(_NOTE_INSERT, note_row(event, p))


def _run_ended(status: str) -> Callable[[Driver, Event, dict[str, Any]], None]:
    def apply(db: Driver, event: Event, p: dict[str, Any]) -> None:
        db.execute(RUN_END, run_end_row(status, event, p))
        db.executemany(STEP_CLOSE, closed_step_rows(event, p))

    return apply


def _step_started(db: Driver, event: Event, p: dict[str, Any]) -> None:
    db.execute(STEP_INSERT, step_row("running", event, p))


def reused_metrics(
    p: dict[str, Any], status: str, own: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]] | None:
    """The statement copying a cache hit's returned numbers from the step run it reused.

    Returns None unless the step event is a hit naming that step run. The names the hit
    logged itself (``own``) are left out: its own values win.
    """
    reused = p.get("reused_step_run_id")
    if status != "cached" or not reused:
        return None
    logged = sorted({m["key"] for m in own})
    sql = _METRICS_REUSED
    if logged:
        sql += " AND key NOT IN (" + ", ".join(f":k{i}" for i in range(len(logged))) + ")"
    return sql, {
        "step_run_id": p["step_run_id"],
        "run_id": p["run_id"],
        "node_id": p["node_id"],
        "name_prefix": p["node_id"] + ".",
        "reused": reused,
        **{f"k{i}": k for i, k in enumerate(logged)},
    }


def _step_finished(status: str) -> Callable[[Driver, Event, dict[str, Any]], None]:
    def apply(db: Driver, event: Event, p: dict[str, Any]) -> None:
        row = step_row(status, event, p)
        # A step that ran was announced by step.started; a cache hit was not.
        if p.get("decision") == "hit" or db.execute(_STEP_UPDATE, row) == 0:
            db.execute(STEP_INSERT, row)
        db.executemany(IO_INSERT, io_rows(p, outputs=status != "failed"))
        if status == "failed":
            return
        own = metric_rows(p)
        if own:
            db.executemany(METRIC_INSERT, own)
        copy = reused_metrics(p, status, own)
        if copy is not None:
            db.execute(*copy)

    return apply


def artifact_statement(p: dict[str, Any]) -> str:
    """The statement projecting an ``artifact.recorded`` payload (a reseal replaces)."""
    return ARTIFACT_RESEAL if p.get("resealed_from") else ARTIFACT_INSERT


def _artifact_recorded(db: Driver, event: Event, p: dict[str, Any]) -> None:
    db.execute(artifact_statement(p), artifact_row(event, p))


def _source_observed(db: Driver, event: Event, p: dict[str, Any]) -> None:
    db.execute(SOURCE_INSERT, source_row(event, p))


def _run_deleted(db: Driver, event: Event, p: dict[str, Any]) -> None:
    """A run marked deleted; a second deletion of the same run changes nothing."""
    db.execute(_DELETION_INSERT, deletion_row(event, p))


_APPLY: dict[str, Callable[[Driver, Event, dict[str, Any]], None]] = {
    EventKind.RUN_STARTED: _run_started,
    EventKind.RUN_COMPLETED: _run_ended("completed"),
    EventKind.RUN_FAILED: _run_ended("failed"),
    EventKind.RUN_CRASHED: _run_ended("crashed"),
    EventKind.RUN_INTERRUPTED: _run_ended("interrupted"),
    EventKind.STEP_STARTED: _step_started,
    EventKind.STEP_COMPLETED: _step_finished("completed"),
    EventKind.STEP_CACHED: _step_finished("cached"),
    EventKind.STEP_FAILED: _step_finished("failed"),
    EventKind.ARTIFACT_RECORDED: _artifact_recorded,
    EventKind.SOURCE_OBSERVED: _source_observed,
    EventKind.RUN_NAMED: _run_named,
    EventKind.RUN_TAGGED: _run_tagged,
    EventKind.RUN_UNTAGGED: _run_untagged,
    EventKind.RUN_NOTED: _run_noted,
    EventKind.RUN_DELETED: _run_deleted,
}


def has_projection(kind: str) -> bool:
    """Whether events of ``kind`` change the derived tables."""
    return kind in _APPLY


def apply_event(
    db: Driver,
    event: Event,
    payload: dict[str, Any],
    encode: Callable[[Any], Any] | None = None,
) -> None:
    """Update the projections for one event (unknown kinds change nothing).

    ``encode``: as :func:`~pipetrail.ledger.projection_batch.apply_events`'. Only a
    ``run.started`` event uses it: its ``record`` holds most of the run's description
    (a thousand-step pipeline's nodes), already checked once when its payload was
    encoded, and is not walked again to encode the columns; the JSON columns of other
    events projected one by one are small.
    """
    if event.kind == EventKind.RUN_STARTED:
        _run_started(db, event, payload, encode)
        return
    handler = _APPLY.get(event.kind)
    if handler is not None:
        handler(db, event, payload)
