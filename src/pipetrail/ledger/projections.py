"""Projections: how each event kind updates the query tables.

``apply_event`` runs inside the transaction that appends the event, and again for every
event when projections are rebuilt, so it must be deterministic and depend only on the
event and on rows earlier events produced. Inserts are idempotent (a rebuild or a
concurrent writer may meet a row that exists).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, update

from pipetrail.hashing import canonical_json
from pipetrail.ledger import schema
from pipetrail.ledger.events import Event, EventKind

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["apply_event"]


_INSERT_IGNORE: dict[tuple[str, str], Any] = {}


def _insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = conn.dialect.name
    statement = _INSERT_IGNORE.get((dialect, table.name))
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        statement = dialect_insert(table).on_conflict_do_nothing()
        _INSERT_IGNORE[(dialect, table.name)] = statement
    conn.execute(statement, rows)


def _json(value: Any) -> str | None:
    return None if value is None else canonical_json(value)


def _run_started(conn: Connection, event: Event, p: dict[str, Any]) -> None:
    record = {k: v for k, v in p.items() if k not in _RUN_COLUMNS}
    _insert_ignore(
        conn,
        schema.runs,
        [
            {
                "run_id": p["run_id"],
                "pipeline": p["pipeline"],
                "pipeline_fingerprint": p["pipeline_fingerprint"],
                "status": "running",
                "owner": p["owner"],
                "host": p["host"],
                "process": p["process"],
                "params": canonical_json(p["params"]),
                "seed": p["seed"],
                "git": _json(p.get("git")),
                "environment": p.get("environment"),
                "record": canonical_json(record),
                "started_at": p["started_at"],
                "ended_at": None,
                "error": None,
                "steps_total": p.get("steps_total", 0),
                "first_seq": event.seq,
                "last_seq": event.seq,
            }
        ],
    )


_RUN_COLUMNS = frozenset(
    {
        "run_id",
        "pipeline",
        "pipeline_fingerprint",
        "owner",
        "host",
        "process",
        "params",
        "seed",
        "git",
        "environment",
        "started_at",
        "steps_total",
    }
)


def _run_ended(status: str) -> Callable[[Connection, Event, dict[str, Any]], None]:
    def apply(conn: Connection, event: Event, p: dict[str, Any]) -> None:
        conn.execute(
            update(schema.runs)
            .where(schema.runs.c.run_id == p["run_id"])
            .values(status=status, ended_at=p["ended_at"], error=p.get("error"), last_seq=event.seq)
        )

    return apply


def _step_started(conn: Connection, event: Event, p: dict[str, Any]) -> None:
    _insert_ignore(
        conn,
        schema.step_runs,
        [
            {
                "step_run_id": p["step_run_id"],
                "run_id": p["run_id"],
                "node_id": p["node_id"],
                "step": p["step"],
                "pipeline": p["pipeline"],
                "status": "running",
                "seed": p.get("seed"),
                "started_at": p["started_at"],
                "first_seq": event.seq,
                "last_seq": event.seq,
            }
        ],
    )


def _io_rows(p: dict[str, Any], *, outputs: bool) -> list[dict[str, Any]]:
    rows = [
        {
            "step_run_id": p["step_run_id"],
            "direction": "in",
            "name": name,
            "digest": digest,
            "run_id": p["run_id"],
        }
        for name, digest in (p.get("inputs") or {}).items()
    ]
    if outputs:
        rows += [
            {
                "step_run_id": p["step_run_id"],
                "direction": "out",
                "name": name,
                "digest": digest,
                "run_id": p["run_id"],
            }
            for name, digest in (p.get("outputs") or {}).items()
        ]
    return rows


def _step_finished(status: str) -> Callable[[Connection, Event, dict[str, Any]], None]:
    def apply(conn: Connection, event: Event, p: dict[str, Any]) -> None:
        values = {
            "run_id": p["run_id"],
            "node_id": p["node_id"],
            "step": p["step"],
            "pipeline": p["pipeline"],
            "status": status,
            "cache_key": p.get("cache_key"),
            "cache_decision": p.get("decision"),
            "cache_reason": p.get("reason"),
            "reused_step_run_id": p.get("reused_step_run_id"),
            "code_digest": p.get("code_digest"),
            "components": _json(p.get("components")),
            "inputs": _json(p.get("inputs")),
            "outputs": _json(p.get("outputs")),
            "resources": _json(p.get("resources")),
            "logs": p.get("logs"),
            "seed": p.get("seed"),
            "started_at": p["started_at"],
            "ended_at": p.get("ended_at"),
            "error": p.get("error"),
            "traceback": p.get("traceback"),
            "last_seq": event.seq,
        }
        result = conn.execute(
            update(schema.step_runs)
            .where(schema.step_runs.c.step_run_id == p["step_run_id"])
            .values(**values)
        )
        if result.rowcount == 0:  # cache hits are not preceded by step.started
            _insert_ignore(
                conn,
                schema.step_runs,
                [{"step_run_id": p["step_run_id"], "first_seq": event.seq, **values}],
            )
        _insert_ignore(conn, schema.step_run_io, _io_rows(p, outputs=status != "failed"))

    return apply


def _artifact_recorded(conn: Connection, event: Event, p: dict[str, Any]) -> None:
    _insert_ignore(
        conn,
        schema.artifacts,
        [
            {
                "digest": p["digest"],
                "blob": p["blob"],
                "serializer": p["serializer"],
                "type_name": p["type_name"],
                "size": p["size"],
                "meta": canonical_json(p.get("meta") or {}),
                "role": p["role"],
                "first_run_id": p.get("run_id"),
                "first_step_run_id": p.get("step_run_id"),
                "created_at": event.ts,
                "first_seq": event.seq,
            }
        ],
    )


def _source_observed(conn: Connection, event: Event, p: dict[str, Any]) -> None:
    _insert_ignore(
        conn,
        schema.sources,
        [
            {
                "run_id": p["run_id"],
                "path": p["path"],
                "digest": p["digest"],
                "size": p["size"],
                "mtime_ns": p["mtime_ns"],
                "observed_at": p["observed_at"],
                "by_reference": int(bool(p.get("by_reference"))),
                "seq": event.seq,
            }
        ],
    )


_APPLY: dict[str, Callable[[Connection, Event, dict[str, Any]], None]] = {
    EventKind.RUN_STARTED: _run_started,
    EventKind.RUN_COMPLETED: _run_ended("completed"),
    EventKind.RUN_FAILED: _run_ended("failed"),
    EventKind.RUN_CRASHED: _run_ended("crashed"),
    EventKind.STEP_STARTED: _step_started,
    EventKind.STEP_COMPLETED: _step_finished("completed"),
    EventKind.STEP_CACHED: _step_finished("cached"),
    EventKind.STEP_FAILED: _step_finished("failed"),
    EventKind.ARTIFACT_RECORDED: _artifact_recorded,
    EventKind.SOURCE_OBSERVED: _source_observed,
}


def apply_event(conn: Connection, event: Event, payload: dict[str, Any]) -> None:
    """Update the projections for one event (unknown kinds change nothing)."""
    handler = _APPLY.get(event.kind)
    if handler is not None:
        handler(conn, event, payload)
