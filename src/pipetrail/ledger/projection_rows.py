"""Projection rows: the table rows each event kind gives, built from the event alone.

Pure functions, no database: :mod:`pipetrail.ledger.projections` writes these rows, and
audit verify's model (:mod:`pipetrail.ledger.audit_model`) builds the same rows to compare
them with the tables. Column names match :mod:`pipetrail.ledger.schema`.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from pipetrail.hashing import canonical_json
from pipetrail.ledger.events import Event, EventKind

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "IO_ROW_COLUMNS",
    "JSON_COLUMNS",
    "METRIC_ROW_COLUMNS",
    "PARAM_ROW_COLUMNS",
    "RUN_ROW_COLUMNS",
    "STEP_COLUMNS",
    "STEP_ROW_COLUMNS",
    "ARTIFACT_ROW_COLUMNS",
    "artifact_row",
    "artifact_values",
    "closed_step_rows",
    "deletion_row",
    "finished_step_row",
    "finished_step_values",
    "io_rows",
    "io_values",
    "metric_rows",
    "metric_values",
    "note_row",
    "param_number",
    "param_text",
    "text_number",
    "rename_row",
    "run_end_row",
    "run_param_rows",
    "run_param_values",
    "run_purpose",
    "run_row",
    "run_values",
    "run_tag_rows",
    "source_row",
    "step_row",
    "step_values",
    "step_values_at",
    "tagged_rows",
    "untagged_keys",
]


# Columns holding canonical JSON text (of the projections rows builders return).
JSON_COLUMNS = frozenset(
    {"components", "inputs", "outputs", "resources", "resource_requests", "meta"}
)
# The ``step_runs`` columns a step event sets, but ``step_run_id`` and ``first_seq``.
STEP_COLUMNS = (
    "run_id", "node_id", "step", "pipeline", "status", "cache_key", "cache_decision",
    "cache_reason", "reused_step_run_id", "code_digest", "components", "inputs", "outputs",
    "resources", "resource_requests", "logs", "seed", "started_at", "ended_at", "error",
    "traceback", "last_seq",
)  # fmt: skip
_RUN_RECORD_KEYS = frozenset(
    {
        "run_id", "pipeline", "pipeline_fingerprint", "owner", "host", "process", "params",
        "seed", "git", "environment", "started_at", "steps_total", "name", "purpose", "tags",
    }
)  # fmt: skip


# What ``isinstance`` takes for "a number" (a tuple: ``int | float`` is a new object per call).
_NUMBERS = (int, float)


def param_number(value: Any) -> float | None:
    """The ``run_params.num`` of a parameter value: the value when it is a finite number."""
    if isinstance(value, _NUMBERS) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def text_number(text: str) -> float | None:
    """The ``run_params.num`` of the parameter whose ``run_params.value`` is ``text``.

    ``num`` is a function of ``value``: the number the stored JSON text reads as. A query
    for a value names its ``num`` too, so that one index (name, num, value) finds it.
    """
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return param_number(value)


def metric_rows(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``run_metrics`` rows a step's closing event gives of itself.

    Logged series by their last value, then the numbers it returned in dicts; a logged
    metric wins over a returned number of the same name. Values that are not finite
    numbers are left out.
    """
    return [dict(zip(METRIC_ROW_COLUMNS, row, strict=True)) for row in metric_values(p)]


def metric_values(p: dict[str, Any]) -> list[tuple[Any, ...]]:
    """:func:`metric_rows`'s rows as values, in the order of :data:`METRIC_ROW_COLUMNS`."""
    found: dict[str, tuple[float, str]] = {}
    returned, logged = p.get("output_metrics"), p.get("metrics")
    if returned or logged:  # most steps report none: no walk of two empty dicts
        for key, value in (returned or {}).items():
            if isinstance(value, _NUMBERS) and not isinstance(value, bool):
                found[str(key)] = (float(value), "output")
        for key, summary in (logged or {}).items():
            last = summary.get("last") if isinstance(summary, dict) else None
            if isinstance(last, _NUMBERS) and not isinstance(last, bool):
                found[str(key)] = (float(last), "logged")
    node = p["node_id"]
    if not found:
        return []  # most steps report no metric
    return [
        (p["step_run_id"], key, p["run_id"], node, f"{node}.{key}", value, origin)
        for key, (value, origin) in sorted(found.items())
        if math.isfinite(value)
    ]


def param_text(value: Any, encode: Callable[[Any], Any] | None = None) -> str:
    """The text ``run_params.value`` holds for a parameter value: its canonical JSON.

    A float with an integral value is stored as the integer (``1.0`` as ``1``), so that a
    filter on ``1`` or ``1.0`` finds it with one indexed comparison; ``True`` stays ``true``.
    ``encode``: as :func:`step_row`'s (None is ``null`` whatever it is).
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    text: str = _text(value, encode)
    return text


def run_purpose(p: dict[str, Any]) -> str:
    """What started the run a ``run.started`` payload records: ``run``, ``reproduce``...

    Events written before ``purpose`` was recorded name the run they reproduce, if any.
    """
    purpose = p.get("purpose")
    if isinstance(purpose, str) and purpose:
        return purpose
    return "reproduce" if p.get("reproduces") else "run"


def _json(value: Any) -> str | None:
    return None if value is None else canonical_json(value)


def _text(value: Any, encode: Callable[[Any], Any] | None) -> Any:
    """The canonical JSON text of ``value`` (``null`` for None), by ``encode`` when given."""
    if encode is None or value is None:
        return canonical_json(value)
    return encode(value)


def _same(value: Any) -> Any:
    return value


def run_row(
    event: Event, p: dict[str, Any], encode: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """The ``runs`` row a ``run.started`` event inserts.

    ``encode``: as :func:`step_row`'s, for the JSON columns (``record`` holds members of
    the payload, so what holds for a member holds for it).
    """
    return dict(zip(RUN_ROW_COLUMNS, run_values(event.seq, p, encode), strict=True))


# The columns of the rows :func:`run_values` and :func:`run_param_values` give, in the
# tables' order (the keys of :func:`run_row` and :func:`run_param_rows`, in their order).
RUN_ROW_COLUMNS = (
    "run_id", "pipeline", "pipeline_fingerprint", "status", "owner", "host", "process",
    "params", "seed", "git", "environment", "record", "started_at", "ended_at", "error",
    "steps_total", "first_seq", "last_seq", "name", "purpose",
)  # fmt: skip
PARAM_ROW_COLUMNS = ("run_id", "name", "value", "num")


def run_values(
    seq: int, p: dict[str, Any], encode: Callable[[Any], Any] | None = None
) -> tuple[Any, ...]:
    """:func:`run_row`'s values for the event at ``seq``, in the order of :data:`RUN_ROW_COLUMNS`.

    ``audit verify`` compares rows as these tuples; :func:`run_row` names them.
    """
    record = {k: v for k, v in p.items() if k not in _RUN_RECORD_KEYS}
    git = p.get("git")
    return (
        p["run_id"],
        p["pipeline"],
        p["pipeline_fingerprint"],
        "running",
        p["owner"],
        p["host"],
        p["process"],
        _text(p["params"], encode),
        p["seed"],
        None if git is None else _text(git, encode),
        p.get("environment"),
        _text(record, encode),
        p["started_at"],
        None,
        None,
        p.get("steps_total", 0),
        seq,
        seq,
        p.get("name"),
        run_purpose(p),
    )


def run_param_values(
    p: dict[str, Any], encode: Callable[[Any], Any] | None = None
) -> list[tuple[Any, ...]]:
    """:func:`run_param_rows`'s rows as values, in the order of :data:`PARAM_ROW_COLUMNS`."""
    found = p["params"] or {}
    if not found:
        return []
    run = p["run_id"]
    return [
        (run, name, param_text(value, encode), param_number(value))
        for name, value in sorted(found.items())
    ]


def run_param_rows(
    p: dict[str, Any], encode: Callable[[Any], Any] | None = None
) -> list[dict[str, Any]]:
    """The ``run_params`` rows a ``run.started`` event inserts (``encode``: see :func:`run_row`)."""
    return [dict(zip(PARAM_ROW_COLUMNS, row, strict=True)) for row in run_param_values(p, encode)]


def run_tag_rows(event: Event, p: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``run_tags`` rows a ``run.started`` event upserts (its first tags)."""
    return [
        {"run_id": p["run_id"], "key": key, "value": value, "seq": event.seq}
        for key, value in sorted((p.get("tags") or {}).items())
    ]


def rename_row(p: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the ``runs`` update a ``run.named`` event makes."""
    return {"name": p["name"], "run_id": p["run_id"]}


def tagged_rows(event: Event, p: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``run_tags`` rows a ``run.tagged`` event upserts."""
    return [
        {"run_id": p["run_id"], "key": key, "value": str(value), "seq": event.seq}
        for key, value in sorted(p["tags"].items())
    ]


def untagged_keys(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``run_tags`` keys a ``run.untagged`` event deletes."""
    return [{"run_id": p["run_id"], "key": key} for key in p["keys"]]


def note_row(event: Event, p: dict[str, Any]) -> dict[str, Any]:
    """The ``run_notes`` row a ``run.noted`` event inserts."""
    return {
        "seq": event.seq,
        "run_id": p["run_id"],
        "text": p["text"],
        "actor": event.actor,
        "noted_at": event.ts,
    }


def run_end_row(status: str, event: Event, p: dict[str, Any]) -> dict[str, Any]:
    """The parameters of :data:`~pipetrail.ledger.projections.RUN_END` for a run-ending event."""
    return {
        "status": status,
        "ended_at": p["ended_at"],
        "error": p.get("error"),
        "last_seq": event.seq,
        "run_id": p["run_id"],
    }


def closed_step_rows(event: Event, p: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameters of ``STEP_CLOSE`` for the steps a run-ending event closes.

    (:data:`~pipetrail.ledger.projections.STEP_CLOSE`.) ``closed_steps`` maps step run
    id -> the status it ends with (``failed``, ``crashed``, ``interrupted``); the step
    run takes the event's ``ended_at`` and ``error``. Only a row still ``running``
    changes, so the outcome depends on the events alone, whatever order a rebuild meets
    them in. Events written before the key existed close nothing.
    """
    closed = p.get("closed_steps")
    if not isinstance(closed, dict) or not closed:
        return []
    return [
        {
            "status": str(status),
            "ended_at": p["ended_at"],
            "error": p.get("error"),
            "last_seq": event.seq,
            "step_run_id": step_run_id,
            "run_id": p["run_id"],
        }
        for step_run_id, status in sorted(closed.items())
    ]


# The columns of the rows :func:`step_values`, :func:`io_values` and :func:`metric_values`
# give, in the tables' order.
STEP_ROW_COLUMNS = ("step_run_id", *STEP_COLUMNS[:-1], "first_seq", "last_seq")
IO_ROW_COLUMNS = ("step_run_id", "direction", "name", "digest", "run_id")
METRIC_ROW_COLUMNS = ("step_run_id", "key", "run_id", "node_id", "name", "value", "origin")


def step_row(
    status: str, event: Event, p: dict[str, Any], encode: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """The ``step_runs`` row (all columns) a step event gives, with ``status``.

    ``encode`` turns each JSON column's value into what the column holds (default:
    canonical JSON text); None stays None, without a call of ``encode``.
    """
    return dict(zip(STEP_ROW_COLUMNS, step_values(status, event, p, encode), strict=True))


def step_values(
    status: str, event: Event, p: dict[str, Any], encode: Callable[[Any], Any] | None = None
) -> tuple[Any, ...]:
    """:func:`step_row`'s values, in the order of :data:`STEP_ROW_COLUMNS`."""
    return step_values_at(status, event.seq, p, encode)


def step_values_at(
    status: str,
    seq: int,
    p: dict[str, Any],
    encode: Callable[[Any], Any] | None = None,
    first_seq: int | None = None,
) -> tuple[Any, ...]:
    """:func:`step_values` of the event at ``seq``; ``first_seq`` replaces its own seq.

    ``first_seq``: the ``first_seq`` of the row an update keeps (None: ``seq``), so that
    the row an update leaves is built once.
    """
    if encode is None:
        encode = _json
    step_run_id = p["step_run_id"]  # read first, as ever: a payload lacking it raises so
    # The members a payload may lack, read in one pass (reading one never raises): the
    # members it must hold are read in the row's order below, as they always were.
    (
        cache_key, decision, reason, reused, code_digest, components, inputs, outputs,
        resources, requests, logs, seed, ended_at, error, traceback,
    ) = map(p.get, _STEP_OPTIONAL)  # fmt: skip
    return (
        step_run_id,
        p["run_id"],
        p["node_id"],
        p["step"],
        p["pipeline"],
        status,
        cache_key,
        decision,
        reason,
        reused,
        code_digest,
        # Every encoder keeps None as None: it is not called for one (a step.started
        # payload has none of these).
        None if components is None else encode(components),
        None if inputs is None else encode(inputs),
        None if outputs is None else encode(outputs),
        None if resources is None else encode(resources),
        None if requests is None else encode(requests),
        logs,
        seed,
        p["started_at"],
        ended_at,
        error,
        traceback,
        seq if first_seq is None else first_seq,
        seq,
    )


# The members :func:`step_values_at` reads with ``get``, in the order it unpacks them.
_STEP_OPTIONAL = (
    "cache_key", "decision", "reason", "reused_step_run_id", "code_digest", "components",
    "inputs", "outputs", "resources", "resource_requests", "logs", "seed", "ended_at",
    "error", "traceback",
)  # fmt: skip


def io_rows(p: dict[str, Any], *, outputs: bool) -> list[dict[str, Any]]:
    """The ``step_run_io`` rows of a step's closing event (its inputs, and its outputs)."""
    return [dict(zip(IO_ROW_COLUMNS, row, strict=True)) for row in io_values(p, outputs=outputs)]


def io_values(p: dict[str, Any], *, outputs: bool) -> list[tuple[Any, ...]]:
    """:func:`io_rows`'s rows as values, in the order of :data:`IO_ROW_COLUMNS`."""
    # Loops rather than comprehensions: a step has a name or two on each side, and a
    # comprehension's own call would cost more than its rows.
    rows: list[tuple[Any, ...]] = []
    found = p.get("inputs")
    if found:  # the ids are read for a first row (a payload lacking them raises then only)
        step, run = p["step_run_id"], p["run_id"]
        for name, digest in found.items():
            rows.append((step, "in", name, digest, run))
    if outputs:
        found = p.get("outputs")
        if found:
            step, run = p["step_run_id"], p["run_id"]
            for name, digest in found.items():
                rows.append((step, "out", name, digest, run))
    return rows


def artifact_row(
    event: Event,
    p: dict[str, Any],
    *,
    decoded: bool = False,
    encode: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Return the ``artifacts`` row an ``artifact.recorded`` event projects.

    With ``decoded``, JSON columns hold their values rather than their canonical text;
    ``encode`` encodes them otherwise (canonical JSON by default; see
    :func:`~pipetrail.ledger.projection_batch.apply_events`).
    """
    encode = _same if decoded else (encode or canonical_json)
    return dict(zip(ARTIFACT_ROW_COLUMNS, artifact_values(event, p, encode), strict=True))


ARTIFACT_ROW_COLUMNS = (
    "digest", "blob", "serializer", "type_name", "size", "meta", "role", "first_run_id",
    "first_step_run_id", "created_at", "first_seq",
)  # fmt: skip


def artifact_values(
    event: Event, p: dict[str, Any], encode: Callable[[Any], Any]
) -> tuple[Any, ...]:
    """:func:`artifact_row`'s values, in the order of :data:`ARTIFACT_ROW_COLUMNS`.

    ``encode`` turns ``meta`` into what the column holds.
    """
    return (
        p["digest"],
        p["blob"],
        p["serializer"],
        p["type_name"],
        p["size"],
        encode(p.get("meta") or {}),
        p["role"],
        p.get("run_id"),
        p.get("step_run_id"),
        event.ts,
        event.seq,
    )


def source_row(event: Event, p: dict[str, Any]) -> dict[str, Any]:
    """The ``sources`` row a ``source.observed`` event inserts."""
    return {
        "run_id": p["run_id"],
        "path": p["path"],
        "digest": p["digest"],
        "size": p["size"],
        "mtime_ns": p["mtime_ns"],
        "observed_at": p["observed_at"],
        "by_reference": int(bool(p.get("by_reference"))),
        "seq": event.seq,
    }


def deletion_row(event: Event, p: dict[str, Any]) -> dict[str, Any]:
    """The ``run_deletions`` row a ``run.deleted`` event inserts."""
    return {
        "run_id": p["run_id"],
        "reason": p["reason"],
        "deleted_by": event.actor,
        "deleted_at": event.ts,
        "seq": event.seq,
    }


_FINISHED_STATUS: dict[str, str] = {
    EventKind.STEP_COMPLETED: "completed",
    EventKind.STEP_CACHED: "cached",
    EventKind.STEP_FAILED: "failed",
}


def finished_step_row(
    event: Event, p: dict[str, Any], *, decoded: bool = False
) -> dict[str, Any] | None:
    """Return the ``step_runs`` columns a step's closing event sets, or None for other kinds.

    Every column but ``first_seq`` (the ``step.started`` event's, for a step that ran).
    With ``decoded``, JSON columns hold their values rather than their canonical text.
    """
    status = _FINISHED_STATUS.get(event.kind)
    if status is None:
        return None
    row = step_row(status, event, p, _same if decoded else _json)
    del row["first_seq"]
    return row


def finished_step_values(event: Event, p: dict[str, Any]) -> tuple[Any, ...] | None:
    """:func:`step_values` of a step's closing event, JSON columns as values, or None.

    None for an event of another kind. ``first_seq`` is the event's own seq there (the
    caller keeps the row's, which the ``step.started`` event of a step that ran set).
    """
    status = _FINISHED_STATUS.get(event.kind)
    if status is None:
        return None
    return step_values(status, event, p, _same)
