"""The statements of the trusted reads: a derived row joined to the event it rests on.

The SQL texts, and the column orders their rows are read in, of the reads
:mod:`pipetrail.ledger.trusted` verifies: apart from it so that a reader that runs none of
them (``pipetrail runs``) does not import the event checks and the hashing they use.
"""

from __future__ import annotations

__all__ = [
    "ARTIFACT_COLUMNS",
    "ARTIFACT_SQL",
    "CACHE_LOOKUP_COLUMNS",
    "CACHE_LOOKUP_SQL",
    "CLOSING_EVENTS",
    "EVENT_COLUMNS",
    "NOT_DELETED",
    "REBUILD_HINT",
    "RUN_CACHE_REST",
    "RUN_CACHE_SQL",
    "RUN_STEPS_SQL",
    "STEP_COLUMNS",
    "STEP_WITH_EVENT_VALUES",
    "node_steps_sql",
]

REBUILD_HINT = (
    "run `pipetrail audit verify` to list every derived row that disagrees with the events, "
    "and `pipetrail audit rebuild` to rebuild them from the events"
)
# The event a row names, plus what it must link to: the next event's prev_hash, or the
# head when it is the newest. One statement, so one snapshot.
_EVENT = (
    "e.seq AS e_seq, e.ts AS e_ts, e.actor AS e_actor, e.kind AS e_kind, e.run_id AS e_run_id, "
    "e.payload AS e_payload, e.prev_hash AS e_prev_hash, e.hash AS e_hash, "
    "(SELECT n.prev_hash FROM events n WHERE n.seq = e.seq + 1) AS e_next_prev, "
    "h.seq AS e_head_seq, h.hash AS e_head_hash"
)
_JOIN_HEAD = "LEFT JOIN ledger_head h ON h.id = 1"
# The names of the columns _EVENT selects, in its order.
EVENT_COLUMNS = tuple(part.rsplit(" AS ", 1)[1] for part in _EVENT.split(", "))
# Every column of the two tables (a contract test compares them with the schema).
ARTIFACT_COLUMNS = (
    "digest", "blob", "serializer", "type_name", "size", "meta", "role", "first_run_id",
    "first_step_run_id", "created_at", "first_seq",
)  # fmt: skip
STEP_COLUMNS = (
    "step_run_id", "run_id", "node_id", "step", "pipeline", "status", "cache_key",
    "cache_decision", "cache_reason", "reused_step_run_id", "code_digest", "components",
    "inputs", "outputs", "resources", "resource_requests", "logs", "seed", "started_at",
    "ended_at", "error", "traceback", "first_seq", "last_seq",
)  # fmt: skip

ARTIFACT_SQL = (
    "SELECT "  # noqa: S608 - constant column names
    + ", ".join(f"a.{c}" for c in ARTIFACT_COLUMNS)
    + f", {_EVENT} FROM artifacts a LEFT JOIN events e ON e.seq = a.first_seq {_JOIN_HEAD} "
    "WHERE a.digest = :d"
)
# Leaves out the runs marked deleted (``run.deleted``), for a query whose runs are ``r``.
NOT_DELETED = "r.run_id NOT IN (SELECT d.run_id FROM run_deletions d)"
# Every column of a step run, and its closing event: what each of the statements below
# selects (their rows are read by trusted_step_run and trusted_step_values).
_STEP_WITH_EVENT = (
    "SELECT "  # noqa: S608 - constant column names
    + ", ".join(f"s.{c}" for c in STEP_COLUMNS)
    + f", {_EVENT} FROM step_runs s LEFT JOIN events e ON e.seq = s.last_seq {_JOIN_HEAD} "
)
# A step run of a deleted run is never reused: garbage collection may have removed its
# outputs, and a hit would bring them back into a kept run's record without the bytes.
CACHE_LOOKUP_SQL = (
    _STEP_WITH_EVENT  # noqa: S608 - constant column names
    + "WHERE s.cache_key = :k AND s.status IN ('completed', 'cached') "
    "AND s.run_id NOT IN (SELECT d.run_id FROM run_deletions d) "
    "ORDER BY s.last_seq DESC LIMIT 1"
)
# The values _STEP_WITH_EVENT selects, unnamed: a read of whole rows
# (pipetrail.ledger.driver.Driver.whole_rows) passes them to a function.
STEP_WITH_EVENT_VALUES = ", ".join(
    [*(f"s.{c}" for c in STEP_COLUMNS), *(part.rsplit(" AS ", 1)[0] for part in _EVENT.split(", "))]
)
# The finished step runs of run :r closed after event :after (at most :n) that
# CACHE_LOOKUP_SQL would answer for their own keys at this moment: each the newest
# successful step run of its key outside the deleted runs, the run itself not deleted.
# The rows are CACHE_LOOKUP_SQL's, so one statement answers ahead of time the lookups of
# the steps that follow a hit in that run (pipetrail.ledger.cache_rows). No ORDER BY,
# which would sort every row with its event: the run's index gives them in the order
# they were written, the order a re-run looks them up in. RUN_CACHE_REST is the
# statement from FROM on (read as whole rows on SQLite).
RUN_CACHE_REST = (
    f"FROM step_runs s LEFT JOIN events e ON e.seq = s.last_seq {_JOIN_HEAD} "  # noqa: S608
    "WHERE s.run_id = :r AND s.status IN ('completed', 'cached') "
    "AND s.cache_key IS NOT NULL AND s.last_seq IS NOT NULL "
    "AND s.run_id NOT IN (SELECT d.run_id FROM run_deletions d) "
    "AND NOT EXISTS (SELECT 1 FROM step_runs t WHERE t.cache_key = s.cache_key "
    "AND t.last_seq > s.last_seq AND t.status IN ('completed', 'cached') "
    "AND t.run_id NOT IN (SELECT d.run_id FROM run_deletions d)) "
    "AND s.last_seq > :after LIMIT :n"
)
RUN_CACHE_SQL = f"SELECT {STEP_WITH_EVENT_VALUES} {RUN_CACHE_REST}"
# The columns of a CACHE_LOOKUP_SQL (or RUN_CACHE_SQL) row, in order (read as tuples).
CACHE_LOOKUP_COLUMNS = (*STEP_COLUMNS, *EVENT_COLUMNS)
# A run's step runs that completed or were cached, each with its closing event (whose
# outputs, and how each is read, loading a run's outputs takes).
_RUN_STEPS = _STEP_WITH_EVENT + "WHERE s.run_id = :r AND s.status IN ('completed', 'cached')"
RUN_STEPS_SQL = _RUN_STEPS + " ORDER BY s.first_seq"


def node_steps_sql(count: int) -> str:
    """:data:`RUN_STEPS_SQL` for the step runs of ``count`` nodes only.

    Their ids are the parameters ``:n0`` to ``:n{count - 1}``; reading one node's
    outputs then verifies that node's events, not every event of the run.
    """
    marks = ", ".join(f":n{i}" for i in range(count))
    return f"{_RUN_STEPS} AND s.node_id IN ({marks}) ORDER BY s.first_seq"


# A run the projection calls running must have no closing event: a run end appended to
# the chain for a row edited back to 'running' would be a false fact. A new kind of event
# that ends a run belongs in this list.
CLOSING_EVENTS = (
    "(SELECT COUNT(*) FROM events x WHERE x.run_id = r.run_id "
    "AND x.kind IN ('run.completed', 'run.failed', 'run.crashed', 'run.interrupted')) "
    "AS closing_events"
)
