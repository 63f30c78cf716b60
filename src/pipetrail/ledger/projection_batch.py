"""Projecting the events of one append with one ``executemany`` per statement.

:func:`~pipetrail.ledger.projections.apply_event` runs each event's statements one by one:
a run's flush of a thousand cached steps would cost three thousand statements. The events
a run appends touch the derived tables in a fixed order of dependencies (a run row before
its end, a step row before its outputs and its close, a step run's own metrics before the
hits that copy them), so :func:`apply_events` collects the rows of every event, groups
them by statement and runs the groups in that order (:data:`_PHASES`), rows in event
order within each group. The tables end exactly as event-by-event projection leaves them
(what ``audit verify`` compares them with), because the batches it accepts
(:func:`_batchable`) are those where the reordering only swaps statements that touch
different rows:

* every event is of a kind listed in :data:`_BATCHED` (or has no projection at all);
* run-ending events come last (nothing but other run ends after the first one);
* a step run is started at most once, before anything else about it, and closed at
  most once;
* a cache hit copies the metrics of a step run that closed earlier in the batch, or
  before it.

Any other batch (annotations, deletions, a replay in unusual order) is projected event
by event. A hit's copy of the metrics its reused step run returned runs only when that
step run has any (one query for the batch finds which do): a copy of nothing inserts
nothing, so the tables end the same. A closing event of a step that ran is written as
one upsert (``INSERT ... ON CONFLICT (step_run_id) DO UPDATE``), which is what "update
the row, or insert it when none exists" does, in one statement. A step run started and
closed in the same batch (a fast step executed between two flushes) is written once: its
closing upsert, carrying the ``first_seq`` of its start, takes the place of the start's
insert (what the insert and then the upsert leave, with the row in the same place among
the batch's new rows), instead of a row inserted and then rewritten with every index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.hashing.canonical import canonical_json
from pipetrail.ledger.events import Event, EventKind
from pipetrail.ledger.projection_rows import (
    ARTIFACT_ROW_COLUMNS,
    IO_ROW_COLUMNS,
    METRIC_ROW_COLUMNS,
    STEP_COLUMNS,
    STEP_ROW_COLUMNS,
    artifact_values,
    closed_step_rows,
    io_values,
    metric_values,
    run_end_row,
    run_param_rows,
    run_row,
    run_tag_rows,
    source_row,
    step_values,
    step_values_at,
)
from pipetrail.ledger.projections import (
    ARTIFACT_INSERT,
    ARTIFACT_RESEAL,
    IO_INSERT,
    METRIC_INSERT,
    PARAM_INSERT,
    RUN_END,
    RUN_INSERT,
    SOURCE_INSERT,
    STEP_CLOSE,
    STEP_INSERT,
    TAG_UPSERT,
    apply_event,
    artifact_statement,
    has_projection,
    reused_metrics,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pipetrail.ledger.driver import Driver

__all__ = ["STEP_UPSERT", "apply_events"]

STEP_UPSERT = (
    STEP_INSERT.removesuffix(" ON CONFLICT DO NOTHING")
    + " ON CONFLICT (step_run_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in STEP_COLUMNS)
)
# What runs for STEP_INSERT and STEP_UPSERT: the same statements with their columns in
# the order of the values a step event's row is built as (STEP_ROW_COLUMNS), so that
# each row is bound as it is, not first put in the statement's order.
_STEP_STATEMENTS = {
    STEP_INSERT: (
        f"INSERT INTO step_runs ({', '.join(STEP_ROW_COLUMNS)}) VALUES "  # noqa: S608
        f"({', '.join(f':{c}' for c in STEP_ROW_COLUMNS)}) ON CONFLICT DO NOTHING"
    ),
}
_STEP_STATEMENTS[STEP_UPSERT] = (
    _STEP_STATEMENTS[STEP_INSERT].removesuffix(" ON CONFLICT DO NOTHING")
    + " ON CONFLICT (step_run_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in STEP_COLUMNS)
)
_REUSED = "reused metrics"  # the phase of the (variable) statements copying a hit's metrics

# The order statement groups run in; see the module docstring.
_PHASES = (
    RUN_INSERT,
    PARAM_INSERT,
    TAG_UPSERT,
    ARTIFACT_INSERT,
    ARTIFACT_RESEAL,
    SOURCE_INSERT,
    STEP_INSERT,  # and the upserts of step runs started in the batch, in start order
    STEP_UPSERT,
    IO_INSERT,
    METRIC_INSERT,
    _REUSED,
    RUN_END,
    STEP_CLOSE,
)
_RUN_ENDS = {
    EventKind.RUN_COMPLETED: "completed",
    EventKind.RUN_FAILED: "failed",
    EventKind.RUN_CRASHED: "crashed",
    EventKind.RUN_INTERRUPTED: "interrupted",
}
_STEP_ENDS: dict[str, str] = {
    EventKind.STEP_COMPLETED: "completed",
    EventKind.STEP_CACHED: "cached",
    EventKind.STEP_FAILED: "failed",
}
# The statements whose rows are built as values, and the columns of those values.
_VALUE_COLUMNS = {
    ARTIFACT_INSERT: ARTIFACT_ROW_COLUMNS,
    ARTIFACT_RESEAL: ARTIFACT_ROW_COLUMNS,
    STEP_INSERT: STEP_ROW_COLUMNS,
    STEP_UPSERT: STEP_ROW_COLUMNS,
    IO_INSERT: IO_ROW_COLUMNS,
    METRIC_INSERT: METRIC_ROW_COLUMNS,
}
_BATCHED = frozenset(
    {
        EventKind.RUN_STARTED,
        EventKind.ARTIFACT_RECORDED,
        EventKind.SOURCE_OBSERVED,
        EventKind.STEP_STARTED,
        *_STEP_ENDS,
        *_RUN_ENDS,
    }
)


def apply_events(
    db: Driver,
    events: Sequence[tuple[Event, dict[str, Any]]],
    encode: Callable[[Any], Any] | None = None,
) -> None:
    """Project ``(event, payload)`` pairs of one append, grouped by statement if it may.

    Args:
        db: the driver, inside the append's write transaction.
        events: the appended events with their payloads, in sequence order.
        encode: encodes a JSON column's value (None stays None); by default canonical
            JSON. The ledger passes a faster encoder when it knows every payload is
            plain (see :func:`pipetrail.hashing.canonical.member_json`).
    """
    if len(events) < 2 or not _batchable(events):
        for event, payload in events:
            apply_event(db, event, payload, encode)
        return
    groups: dict[str, list[dict[str, Any]]] = {}
    # The rows built as values (artifacts, step runs, their inputs and outputs, metrics),
    # by statement: bound without making a dict of each (Driver.executemany_values).
    io: list[tuple[Any, ...]] = []
    metrics: list[tuple[Any, ...]] = []
    upserts: list[tuple[Any, ...]] = []  # closes of step runs started in an earlier append
    valued: dict[str, list[tuple[Any, ...]]] = {
        IO_INSERT: io,
        METRIC_INSERT: metrics,
        STEP_UPSERT: upserts,
    }
    # The hits that may copy metrics (those naming the step run they reuse), each with
    # the names it logged itself; their copies are built only if they copy anything.
    copies: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    # The rows of the step runs first met in the batch (started, or hits), in event order,
    # each with its statement: an insert, or the upsert of a start closed in the batch.
    first_met: list[tuple[str, tuple[Any, ...]]] = []
    # step run id -> (its start's place in first_met, the start's seq), until it closes.
    started: dict[str, tuple[int, int]] = {}
    step_end = _STEP_ENDS.get

    def add(sql: str, *rows: dict[str, Any]) -> None:
        groups.setdefault(sql, []).extend(rows)

    for event, p in events:
        kind = event.kind
        status = step_end(kind)
        if status is not None:  # the most common event: a step's close
            if p.get("decision") == "hit":
                first_met.append((STEP_INSERT, step_values_at(status, event.seq, p, encode)))
            else:
                start = started.pop(p["step_run_id"], None)
                if start is None:  # started in an earlier append
                    upserts.append(step_values(status, event, p, encode))
                else:
                    first_met[start[0]] = (
                        STEP_UPSERT,
                        step_values_at(status, event.seq, p, encode, first_seq=start[1]),
                    )
            if status == "failed":
                io.extend(io_values(p, outputs=False))
                continue
            io.extend(io_values(p, outputs=True))
            if p.get("output_metrics") or p.get("metrics"):  # most steps report none
                own = metric_values(p)
                metrics.extend(own)
            else:
                own = []
            if status == "cached" and p.get("reused_step_run_id"):
                copies.append((p, [{"key": row[1]} for row in own] if own else []))
        elif kind == EventKind.STEP_STARTED:
            started[p["step_run_id"]] = (len(first_met), event.seq)
            first_met.append((STEP_INSERT, step_values_at("running", event.seq, p, encode)))
        elif kind == EventKind.ARTIFACT_RECORDED:
            valued.setdefault(artifact_statement(p), []).append(
                artifact_values(event, p, encode or canonical_json)
            )
        elif kind == EventKind.SOURCE_OBSERVED:
            add(SOURCE_INSERT, source_row(event, p))
        elif kind == EventKind.RUN_STARTED:
            add(RUN_INSERT, run_row(event, p, encode))
            add(PARAM_INSERT, *run_param_rows(p, encode))
            add(TAG_UPSERT, *run_tag_rows(event, p))
        elif kind in _RUN_ENDS:
            add(RUN_END, run_end_row(_RUN_ENDS[kind], event, p))  # type: ignore[index]
            add(STEP_CLOSE, *closed_step_rows(event, p))
    for sql in _PHASES:
        if sql == STEP_INSERT:
            _write_in_order(db, first_met)
        elif sql == _REUSED:
            _copy_reused(db, copies)
        elif sql in _VALUE_COLUMNS:
            if valued.get(sql):
                text = _STEP_STATEMENTS.get(sql, sql)
                db.executemany_values(text, _VALUE_COLUMNS[sql], valued[sql])
        elif groups.get(sql):
            db.executemany(sql, groups[sql])


def _write_in_order(db: Driver, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Write ``(statement, values)`` rows in their order, one ``executemany`` per stretch.

    The rows of a stretch of the same statement go together; the order of the rows, and
    so of the places SQLite gives the new rows, is the order of ``rows``.
    """
    at = 0
    while at < len(rows):
        sql = rows[at][0]
        end = at + 1
        while end < len(rows) and rows[end][0] == sql:
            end += 1
        db.executemany_values(
            _STEP_STATEMENTS[sql], STEP_ROW_COLUMNS, [values for _, values in rows[at:end]]
        )
        at = end


def _copy_reused(db: Driver, copies: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
    """Copy the hits' reused metrics, skipping the copies that would copy nothing.

    A copy selects the ``output`` metrics of the step run a hit reuses; one query first
    finds which of those step runs have any (most have none), and only their copies are
    built and run. The copies are grouped by statement (which depends on how many names
    the hit logged itself), the groups in the order of their first hit, as if every copy
    were built and the empty ones then skipped. When a hit reuses a step run that is
    itself a hit of this batch (its rows would come from a copy still to run), every copy
    runs, as before.
    """
    if not copies:
        return
    wanted = {p["reused_step_run_id"] for p, _ in copies}
    hits = {p["step_run_id"] for p, _ in copies}
    having = wanted if wanted & hits else _with_output_metrics(db, sorted(wanted))
    if not having:
        return  # no reused step run returned metrics: every copy would copy nothing
    # How many names a hit logged -> its copies kept, in the order of the first hit of each.
    groups: dict[int, list[dict[str, Any]]] = {}
    texts: dict[int, str] = {}
    for p, own in copies:
        logged = len({m["key"] for m in own})
        kept = groups.setdefault(logged, [])
        if p["reused_step_run_id"] in having:
            copy = reused_metrics(p, "cached", own)
            if copy is not None:
                texts[logged] = copy[0]
                kept.append(copy[1])
    for logged, kept in groups.items():
        if kept:
            db.executemany(texts[logged], kept)


def _with_output_metrics(db: Driver, step_run_ids: list[str]) -> set[str]:
    """Which of ``step_run_ids`` have ``output`` metrics (500 to a query)."""
    found: set[str] = set()
    for at in range(0, len(step_run_ids), 500):
        chunk = step_run_ids[at : at + 500]
        names = {f"r{i}": r for i, r in enumerate(chunk)}
        marks = ", ".join(f":{n}" for n in names)
        found.update(
            str(row[0])
            for row in db.rows(
                f"SELECT DISTINCT step_run_id FROM run_metrics WHERE step_run_id IN ({marks}) "  # noqa: S608
                "AND origin = :origin",  # a parameter: a text without quotes binds by position
                {**names, "origin": "output"},
            )
        )
    return found


def _batchable(events: Sequence[tuple[Event, dict[str, Any]]]) -> bool:
    """Whether grouping ``events`` by statement projects them as one by one would."""
    ended = False
    started: set[str] = set()  # step run ids started
    closed_at: dict[str, int] = {}  # step run id -> where it closes
    reusing: list[tuple[str, int]] = []  # (step run reused, where the hit closes)
    for at, (event, p) in enumerate(events):
        kind = event.kind
        if kind in _STEP_ENDS:  # the most common event: a step's close
            if ended:
                return False
            key = str(p.get("step_run_id"))
            if key in closed_at:
                return False  # closed twice: the first close is also the last
            closed_at[key] = at
            origin = p.get("reused_step_run_id")
            if origin is not None:
                reusing.append((str(origin), at))
            continue
        if kind not in _BATCHED:
            if has_projection(kind):
                return False
            continue
        if kind in _RUN_ENDS:
            ended = True
            continue
        if ended:
            return False
        if kind == EventKind.STEP_STARTED:
            key = str(p.get("step_run_id"))
            if key in started or key in closed_at:
                return False
            started.add(key)
    # A hit must come after the close of the step run it copies from.
    return all(closed_at.get(origin, -1) <= at for origin, at in reusing)
