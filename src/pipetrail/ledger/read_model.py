"""The read model: typed records of runs, step runs, artifacts, sources, tags and notes.

Every reader of the record (the CLI, ``show``, ``diff``, the exports, the Python read
API) asks here; the SQL over the projections and the parsing of event payloads stay in
the ledger (:mod:`pipetrail.ledger.event_records` types each event kind). Filters are
SQL: a listing of 100,000 runs reads only the rows it returns (see migration 0003 for
the indexes). Queries take a :class:`~pipetrail.ledger.queries.Reader`, so they run on
the cheap stdlib reader and on a ledger's own connection (PostgreSQL) alike.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from pipetrail.core.clock import format_ts
from pipetrail.errors import NotFoundError, ParamError
from pipetrail.ledger.annotations import PURPOSES, validate_tag_key
from pipetrail.ledger.run_query import Condition, Sort, condition_sql, sort_sql

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.ledger.queries import Reader

__all__ = [
    "RUN_STATUSES",
    "NoteRecord",
    "RunFilter",
    "RunRecord",
    "StepCounts",
    "StepRunRecord",
    "find_runs",
    "kept_runs_condition",
    "latest_run_id",
    "run_notes",
    "run_record",
    "run_metric_values",
    "run_tags",
    "step_counts",
    "step_run_records",
]

RUN_STATUSES = ("running", "completed", "failed", "crashed", "interrupted")
_RUN_COLUMNS = (
    "r.run_id, r.name, r.purpose, r.pipeline, r.pipeline_fingerprint, r.status, r.owner, "
    "r.host, r.process, r.params, r.seed, r.git, r.environment, r.record, r.started_at, "
    "r.ended_at, r.error, r.steps_total"
)
_STEP_COLUMNS = (
    "step_run_id, run_id, node_id, step, pipeline, status, cache_key, cache_decision, "
    "cache_reason, reused_step_run_id, code_digest, components, inputs, outputs, resources, "
    "resource_requests, logs, seed, started_at, ended_at, error, traceback, first_seq"
)

_STEP_NAMES = tuple(_STEP_COLUMNS.split(", "))
_FIRST_AT = _STEP_NAMES.index("first_seq")
# A run's step runs, in the order the run's index gives them (read as whole rows).
_RUN_STEP_ROWS = "FROM step_runs WHERE run_id = :r"


def kept_runs_condition(alias: str = "r") -> str:
    """The SQL condition every run listing applies to ``runs`` (aliased ``alias``).

    Runs marked deleted (``run.deleted``, the ``run_deletions`` projection) are left out
    of listings and of ``latest``; their rows and events stay for the audit trail.
    """
    return f"{alias}.run_id NOT IN (SELECT d.run_id FROM run_deletions d)"  # noqa: S608


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class RunRecord:
    """One run, as the record holds it.

    Attributes:
        run_id: its id (time-ordered).
        name: its name, if it was given one.
        purpose: what started it: ``run`` (ordinary), ``reproduce`` or ``check``.
        pipeline: the pipeline's name.
        status: ``running``, ``completed``, ``failed``, ``crashed`` or ``interrupted``.
        params: the parameter values it ran with.
        seed: the run seed.
        started_at: when it started (ISO-8601 UTC).
        ended_at: when it ended, or None while running.
        error: why it did not complete, if it did not.
        owner: who ran it.
        host: where.
        process: the process that ran it (on ``host``).
        git: the git state recorded, if any.
        environment: the digest of the recorded environment.
        steps_total: how many nodes its graph has.
        tags: its tags.
        record: every other ``run.started`` field (argv, pipeline file, reproduces...).
        pipeline_fingerprint: the fingerprint of the pipeline's graph and code.
    """

    run_id: str
    name: str | None
    purpose: str
    pipeline: str
    status: str
    params: dict[str, Any]
    seed: int
    started_at: str
    ended_at: str | None
    error: str | None
    owner: str
    host: str
    process: str
    git: dict[str, Any] | None
    environment: str | None
    steps_total: int
    tags: dict[str, str] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict, repr=False)
    pipeline_fingerprint: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], tags: dict[str, str]) -> RunRecord:
        """Build a record from a ``runs`` row."""
        return cls(
            run_id=str(row["run_id"]),
            name=row["name"],
            purpose=str(row["purpose"]),
            pipeline=str(row["pipeline"]),
            status=str(row["status"]),
            params=_json(row["params"]) or {},
            seed=int(row["seed"]),
            started_at=str(row["started_at"]),
            ended_at=row["ended_at"],
            error=row["error"],
            owner=str(row["owner"]),
            host=str(row["host"]),
            process=str(row["process"]),
            git=_json(row["git"]),
            environment=row["environment"],
            steps_total=int(row["steps_total"]),
            tags=tags,
            record=_json(row["record"]) or {},
            pipeline_fingerprint=str(row["pipeline_fingerprint"]),
        )


@dataclass(frozen=True)
class StepRunRecord:
    """One step run: its status, cache decision, digests, timings and resources.

    Attributes:
        step_run_id: its id.
        run_id: the run it belongs to.
        node_id: the node (``train``, ``evaluate[2]``).
        step: the step's name.
        status: ``running``, ``completed``, ``cached``, ``failed``, ``crashed``...
        cache_decision: ``hit``, ``miss`` or ``off`` (None before it was decided).
        cache_reason: why, in words.
        cache_key: the key it was looked up under.
        reused_step_run_id: the step run a cache hit reused.
        code_digest: the fingerprint of the step's code.
        inputs: input name -> digest.
        outputs: output name -> digest (metric series and reports included).
        resources: what it used (wall time, CPU, memory...), when measured.
        logs: the digest of its captured output, if any.
        seed: its seed.
        started_at: when it started.
        ended_at: when it ended.
        error: why it failed.
        traceback: the failure's traceback, when it failed in the step's code.
        pipeline: the pipeline's name.
        components: what its cache key was computed from (code, params, inputs...);
            None before it was recorded.
        first_seq: the ledger position of its first event (orders step runs).
        resource_requests: what it asked for (``cpu``, ``memory`` in bytes, ``gpu``...);
            None when it declared nothing.
    """

    step_run_id: str
    run_id: str
    node_id: str
    step: str
    status: str
    cache_decision: str | None
    cache_reason: str | None
    cache_key: str | None
    reused_step_run_id: str | None
    code_digest: str | None
    inputs: dict[str, str]
    outputs: dict[str, str]
    resources: dict[str, Any] | None
    logs: str | None
    seed: int | None
    started_at: str
    ended_at: str | None
    error: str | None
    traceback: str | None = None
    pipeline: str = ""
    components: dict[str, Any] | None = field(default=None, repr=False)
    first_seq: int = 0
    resource_requests: dict[str, Any] | None = None

    @property
    def seconds(self) -> float | None:
        """Wall-clock seconds from start to end (None while running)."""
        if self.ended_at is None:
            return None
        start = dt.datetime.fromisoformat(self.started_at.replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(self.ended_at.replace("Z", "+00:00"))
        return (end - start).total_seconds()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StepRunRecord:
        """Build a record from a ``step_runs`` row."""
        seed = row["seed"]
        return cls(
            step_run_id=str(row["step_run_id"]),
            run_id=str(row["run_id"]),
            node_id=str(row["node_id"]),
            step=str(row["step"]),
            status=str(row["status"]),
            cache_decision=row["cache_decision"],
            cache_reason=row["cache_reason"],
            cache_key=row["cache_key"],
            reused_step_run_id=row["reused_step_run_id"],
            code_digest=row["code_digest"],
            inputs=_json(row["inputs"]) or {},
            outputs=_json(row["outputs"]) or {},
            resources=_json(row["resources"]),
            logs=row["logs"],
            seed=None if seed is None else int(seed),
            started_at=str(row["started_at"]),
            ended_at=row["ended_at"],
            error=row["error"],
            traceback=row.get("traceback"),
            pipeline=str(row.get("pipeline") or ""),
            components=_json(row.get("components")),
            first_seq=int(row.get("first_seq") or 0),
            resource_requests=_json(row.get("resource_requests")),
        )


@dataclass(frozen=True)
class NoteRecord:
    """A note on a run: its text, who added it and when."""

    text: str
    actor: str
    noted_at: str


@dataclass(frozen=True)
class RunFilter:
    """Which runs a listing returns; every condition is applied in SQL.

    Attributes:
        pipeline: only runs of this pipeline.
        status: only runs with this status (see :data:`RUN_STATUSES`).
        purpose: only runs started for this purpose (``run``, ``reproduce``, ``check``);
            None lists them all.
        params: only runs whose recorded parameter ``name`` equals each value.
        tags: only runs carrying each ``key: value`` tag.
        since: only runs started at or after this moment (aware datetime, or ISO text).
        where: further conditions (:func:`pipetrail.ledger.run_query.parse_where`), all
            of which must hold.
        sort: the order (newest first when None).
        limit: at most this many, newest first.
        before: only runs whose id sorts before this one (the next page of a listing
            in the default order, newest first).
    """

    pipeline: str | None = None
    status: str | None = None
    purpose: str | None = None
    params: Mapping[str, Any] | None = None
    tags: Mapping[str, Any] | None = None
    since: dt.datetime | str | None = None
    where: tuple[Condition, ...] = ()
    sort: Sort | None = None
    limit: int | None = 50
    before: str | None = None


def _since_text(since: dt.datetime | str) -> str:
    if isinstance(since, str):
        try:
            since = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise ParamError(
                f"since={since!r} is not a date or time; give ISO-8601 such as 2026-01-31 "
                "or 2026-01-31T12:00:00Z"
            ) from None
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return format_ts(since)


def _param_text(value: Any) -> str:
    """The ``run_params.value`` a recorded parameter equal to ``value`` has."""
    # The projection's module, not imported with this one: it builds rows from the event
    # types, which a listing without a params filter does not import.
    from pipetrail.ledger.projection_rows import param_text

    try:
        return param_text(value)
    except Exception as exc:
        raise ParamError(f"a params filter value must be JSON-like data, not {value!r}") from exc


def _known_param(reader: Reader, name: str) -> None:
    if reader.fetch("SELECT name FROM run_params WHERE name = :n LIMIT 1", {"n": name}):
        return
    names = [
        str(r["name"])
        for r in reader.fetch("SELECT DISTINCT name FROM run_params ORDER BY name LIMIT 30")
    ]
    raise ParamError(
        f"no run records a parameter {name!r}; the parameters runs record are: "
        + (", ".join(names) or "none")
    )


def _where(reader: Reader, f: RunFilter) -> tuple[list[str], dict[str, Any]]:
    where = [kept_runs_condition("r")]
    args: dict[str, Any] = {}
    if f.pipeline is not None:
        where.append("r.pipeline = :pipeline")
        args["pipeline"] = f.pipeline
    if f.status is not None:
        if f.status not in RUN_STATUSES:
            raise ParamError(
                f"status={f.status!r} is not a run status; use one of: " + ", ".join(RUN_STATUSES)
            )
        if f.status == "crashed":  # a run recorded as running whose process died is too
            where.append("r.status IN ('crashed', 'running')")  # callers decide per row
        else:
            where.append("r.status = :status")
            args["status"] = f.status
    if f.purpose is not None:
        if f.purpose not in PURPOSES:
            raise ParamError(
                f"purpose={f.purpose!r} is not a run purpose; use one of: " + ", ".join(PURPOSES)
            )
        where.append("r.purpose = :purpose")
        args["purpose"] = f.purpose
    for i, (name, value) in enumerate(sorted((f.params or {}).items())):
        _known_param(reader, name)
        args[f"pn{i}"] = name
        args[f"pv{i}"] = text = _param_text(value)
        if i == 0:  # the first one drives the query: p0 is joined (see find_runs)
            # The index (name, num, value, run_id) finds it; num is what the text reads
            # as (a function of it), so naming it leaves the rows found unchanged.
            from pipetrail.ledger.projection_rows import text_number

            number = text_number(text)
            if number is None:
                where.append("p0.name = :pn0 AND p0.num IS NULL AND p0.value = :pv0")
            else:
                where.append("p0.name = :pn0 AND p0.num = :pnum0 AND p0.value = :pv0")
                args["pnum0"] = number
        else:
            where.append(
                f"EXISTS (SELECT 1 FROM run_params p{i} WHERE p{i}.run_id = r.run_id "  # noqa: S608
                f"AND p{i}.name = :pn{i} AND p{i}.value = :pv{i})"
            )
    for i, (key, value) in enumerate(sorted((f.tags or {}).items())):
        validate_tag_key(key)
        where.append(
            f"EXISTS (SELECT 1 FROM run_tags t{i} WHERE t{i}.run_id = r.run_id "  # noqa: S608
            f"AND t{i}.key = :tk{i} AND t{i}.value = :tv{i})"
        )
        args[f"tk{i}"] = key
        args[f"tv{i}"] = str(value).lower() if isinstance(value, bool) else str(value)
    if f.before is not None:
        where.append(("p0" if f.params else "r") + ".run_id < :before")
        args["before"] = f.before
    if f.since is not None:
        where.append("r.started_at >= :since")
        args["since"] = _since_text(f.since)
    for i, condition in enumerate(f.where):
        sql, found = condition_sql(reader, condition, i)
        where.append(sql)
        args.update(found)
    return where, args


def find_runs(reader: Reader, f: RunFilter) -> list[RunRecord]:
    """Return the runs ``f`` selects, newest first, with their tags.

    Raises:
        ParamError: a filter names an unknown status or purpose, a parameter no run
            records, a malformed tag key, or a time that is not one.
    """
    if f.limit is not None and (isinstance(f.limit, bool) or not isinstance(f.limit, int)
                                or f.limit < 0):  # fmt: skip
        raise ParamError(f"limit={f.limit!r} must be a whole number of runs, 0 or more")
    where, args = _where(reader, f)
    # With a params filter, the index on (name, num, value, run_id) of its first parameter
    # yields the matching runs newest first; otherwise the runs' primary key does.
    source, order = (
        ("run_params p0 JOIN runs r ON r.run_id = p0.run_id", "p0.run_id")
        if f.params
        else ("runs r", "r.run_id")
    )
    sql = f"SELECT {_RUN_COLUMNS} FROM {source} WHERE " + " AND ".join(where)  # noqa: S608
    if f.sort is None:
        sql += f" ORDER BY {order} DESC"
    else:
        ordering, sort_args = sort_sql(reader, f.sort)
        sql += f" ORDER BY {ordering}"
        args.update(sort_args)
    if f.limit is not None:
        sql += " LIMIT :limit"
        args["limit"] = f.limit
    rows = reader.fetch(sql, args)
    tags = run_tags(reader, [str(r["run_id"]) for r in rows])
    return [RunRecord.from_row(r, tags.get(str(r["run_id"]), {})) for r in rows]


def run_record(reader: Reader, run_id: str) -> RunRecord:
    """Return one run by full id (a deleted one too: its record stays readable).

    Raises:
        NotFoundError: no such run.
    """
    rows = reader.fetch(
        f"SELECT {_RUN_COLUMNS} FROM runs r WHERE r.run_id = :r",  # noqa: S608
        {"r": run_id},
    )
    if not rows:
        raise NotFoundError(f"run {run_id!r} does not exist; list runs with `pipetrail runs`")
    return RunRecord.from_row(rows[0], run_tags(reader, [run_id]).get(run_id, {}))


def latest_run_id(reader: Reader, *, any_purpose: bool = False) -> str | None:
    """The newest ordinary run's id (of any purpose with ``any_purpose``), or None."""
    condition = "" if any_purpose else "r.purpose = 'run' AND "
    rows = reader.fetch(
        f"SELECT r.run_id FROM runs r WHERE {condition}"  # noqa: S608 - constant text
        + kept_runs_condition("r")
        + " ORDER BY r.run_id DESC LIMIT 1"
    )
    return str(rows[0]["run_id"]) if rows else None


def run_tags(reader: Reader, run_ids: list[str]) -> dict[str, dict[str, str]]:
    """Return the tags of each of ``run_ids`` (runs without tags are left out)."""
    found: dict[str, dict[str, str]] = {}
    for i in range(0, len(run_ids), 500):
        chunk = run_ids[i : i + 500]
        names = {f"r{j}": r for j, r in enumerate(chunk)}
        marks = ", ".join(f":{n}" for n in names)
        for row in reader.fetch(
            f"SELECT run_id, key, value FROM run_tags WHERE run_id IN ({marks}) "  # noqa: S608
            "ORDER BY run_id, key",
            names,
        ):
            found.setdefault(str(row["run_id"]), {})[str(row["key"])] = str(row["value"])
    return found


def run_notes(reader: Reader, run_id: str) -> list[NoteRecord]:
    """Return a run's notes, oldest first."""
    return [
        NoteRecord(str(r["text"]), str(r["actor"]), str(r["noted_at"]))
        for r in reader.fetch(
            "SELECT text, actor, noted_at FROM run_notes WHERE run_id = :r ORDER BY seq",
            {"r": run_id},
        )
    ]


def step_run_records(reader: Reader, run_id: str) -> list[StepRunRecord]:
    """Return a run's step runs in the order they started.

    Read in the order the run's index gives them, each row whole (:meth:`Reader.whole_rows`),
    and put in ``first_seq`` order here if they are not in it already (they nearly always
    are: a sort in the database would make every row first, then hand them over).
    """
    rows = reader.whole_rows(_STEP_COLUMNS, _RUN_STEP_ROWS, {"r": run_id})
    if any(later[_FIRST_AT] < earlier[_FIRST_AT] for earlier, later in itertools.pairwise(rows)):
        rows.sort(key=operator.itemgetter(_FIRST_AT))
    return [StepRunRecord.from_row(dict(zip(_STEP_NAMES, row, strict=True))) for row in rows]


class StepCounts(NamedTuple):
    """How many of a run's step runs executed (``completed``), were cached, or failed."""

    executed: int = 0
    cached: int = 0
    failed: int = 0


def step_counts(reader: Reader, run_ids: list[str]) -> dict[str, StepCounts]:
    """Return the step counts of each of ``run_ids`` (runs without step runs are left out)."""
    found: dict[str, StepCounts] = {}
    for i in range(0, len(run_ids), 500):
        names = {f"r{j}": r for j, r in enumerate(run_ids[i : i + 500])}
        marks = ", ".join(f":{n}" for n in names)
        for row in reader.fetch(
            "SELECT run_id, "  # noqa: S608 - only placeholders are interpolated
            "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS executed, "
            "SUM(CASE WHEN status = 'cached' THEN 1 ELSE 0 END) AS cached, "
            "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed "
            f"FROM step_runs WHERE run_id IN ({marks}) GROUP BY run_id",
            names,
        ):
            found[str(row["run_id"])] = StepCounts(
                int(row["executed"]), int(row["cached"]), int(row["failed"])
            )
    return found


def run_metric_values(reader: Reader, run_id: str) -> list[dict[str, Any]]:
    """The metrics of a run, one per step and name, ordered by name.

    Each has ``name`` (``NODE.KEY``), ``node_id``, ``key``, ``value`` (the last point of a
    logged series, or the number returned) and ``origin`` (``logged`` or ``output``).
    """
    rows = reader.fetch(
        "SELECT name, node_id, key, value, origin FROM run_metrics WHERE run_id = :r ORDER BY name",
        {"r": run_id},
    )
    return [
        {
            "name": str(r["name"]),
            "node_id": str(r["node_id"]),
            "key": str(r["key"]),
            "value": float(r["value"]),
            "origin": str(r["origin"]),
        }
        for r in rows
    ]
