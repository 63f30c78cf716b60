"""Read queries over the projections, as plain SQL shared by every backend.

Each query is one SQL text with ``:name`` parameters, which both the stdlib ``sqlite3``
driver and SQLAlchemy accept. :class:`SqliteReader` runs them on a read-only stdlib
connection so that read-only commands (``pipetrail runs``) answer without importing
SQLAlchemy (about 0.3 s of start-up on a small machine); :class:`SqlAlchemyReader` runs
the same text on any engine (PostgreSQL included). See docs/adr/0003-read-path.md.
This module must not import SQLAlchemy at module level, nor the event checks of
:mod:`pipetrail.ledger.trusted` (and the hashing they use): the reads that verify an event
import them, a listing of runs does not.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import os
import re
import sqlite3
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, TypeVar

from pipetrail.errors import AmbiguousPrefixError, NotFoundError, TamperedLedgerError
from pipetrail.ledger.db_errors import is_database_error, ledger_error
from pipetrail.ledger.driver import Driver, abandon_inherited
from pipetrail.ledger.json_text import parse_json, parse_json_all
from pipetrail.ledger.trusted_sql import (
    ARTIFACT_SQL,
    CACHE_LOOKUP_SQL,
    CLOSING_EVENTS,
    NOT_DELETED,
    REBUILD_HINT,
    RUN_STEPS_SQL,
    STEP_COLUMNS,
    node_steps_sql,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

_T = TypeVar("_T")

__all__ = ["DriverReader", "Reader", "SqliteReader"]

Row = dict[str, Any]

# Where a row of CACHE_LOOKUP_SQL (read as a tuple) has the step run's first_seq.
_FIRST_AT = STEP_COLUMNS.index("first_seq")

_RUN_COLUMNS = (
    "run_id, pipeline, pipeline_fingerprint, status, owner, host, process, params, seed, git, "
    "environment, record, started_at, ended_at, error, steps_total, name, purpose"
)
_STEP_COLUMNS = (
    "step_run_id, run_id, node_id, step, pipeline, status, cache_key, cache_decision, "
    "cache_reason, reused_step_run_id, code_digest, components, inputs, outputs, resources, "
    "resource_requests, logs, seed, started_at, ended_at, error, traceback, first_seq"
)
_STEP_NAMES = tuple(_STEP_COLUMNS.split(", "))
# A run's step runs, in the order the run's index gives them (read as whole rows).
_RUN_STEP_ROWS = "FROM step_runs WHERE run_id = :r"
_STEP_COUNTS = (
    "(SELECT COUNT(*) FROM step_runs s WHERE s.run_id = r.run_id "
    " AND s.status = 'completed') AS steps_executed, "
    "(SELECT COUNT(*) FROM step_runs s WHERE s.run_id = r.run_id "
    " AND s.status = 'cached') AS steps_cached, "
    "(SELECT COUNT(*) FROM step_runs s WHERE s.run_id = r.run_id "
    " AND s.status = 'failed') AS steps_failed"
)
# Whether any step run of step :s is recorded, whatever its pipeline: the pipelines are
# walked from the index on (pipeline, step) one at a time (the next is the smallest name
# above the last), each asked about :s in the same index; a few seeks per pipeline, not a
# scan of the step runs.
_STEP_RAN_SQL = (
    "WITH RECURSIVE p(name) AS (SELECT MIN(pipeline) FROM step_runs UNION ALL "
    "SELECT (SELECT MIN(t.pipeline) FROM step_runs t WHERE t.pipeline > p.name) "
    "FROM p WHERE p.name IS NOT NULL) "
    "SELECT 1 FROM p WHERE p.name IS NOT NULL AND EXISTS "
    "(SELECT 1 FROM step_runs s WHERE s.pipeline = p.name AND s.step = :s) LIMIT 1"
)
_JSON_FIELDS = frozenset(
    {
        "params", "git", "record", "components", "inputs", "outputs", "resources",
        "resource_requests", "meta",
    }
)  # fmt: skip


def _decode(row: Row) -> Row:
    # parse_json reads what json.loads reads, the same values, through orjson where
    # that is exact: a run's step rows are read back whole (``Run.steps()``).
    for key in _JSON_FIELDS.intersection(row):
        if isinstance(row[key], str):
            row[key] = parse_json(row[key])
    return row


def _decoded(rows: list[Row]) -> list[Row]:
    """:func:`_decode` of each of the rows of one query (they have the same columns).

    The JSON texts of all the rows are read together by :func:`parse_json_all`, which reads
    each as :func:`parse_json` does: a run's step rows are read back a thousand at a time.
    """
    if not rows:
        return rows
    keys = tuple(_JSON_FIELDS.intersection(rows[0]))
    if not keys:
        return rows
    places = [(row, key) for row in rows for key in keys if isinstance(row[key], str)]
    for (row, key), value in zip(
        places, parse_json_all([row[key] for row, key in places]), strict=True
    ):
        row[key] = value
    return rows


class Reader(ABC):
    """Queries over the projections; subclasses supply how SQL is executed."""

    @abstractmethod
    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run one query and return its rows as dicts (empty when no schema yet)."""

    def fetch_tuples(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one query and return its rows as tuples, in column order.

        Cheaper than :meth:`fetch` for many rows (the lineage walks read tens of
        thousands); subclasses with a driver return the cursor's rows directly.
        """
        return [tuple(row.values()) for row in self.fetch(sql, params)]

    def whole_rows(
        self, columns: str, rest: str, params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """:meth:`fetch_tuples` of ``SELECT {columns} {rest}``.

        A reader on SQLite reads each row whole (:meth:`Driver.whole_rows`): ``columns``
        are plain expressions (no ``AS``), and the query must not sort its rows.
        """
        return self.fetch_tuples(f"SELECT {columns} {rest}", params)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection, if any."""

    # -- runs ------------------------------------------------------------------------
    def has_runs(self) -> bool:
        """Whether the ledger records any run (a deleted one too); False with no schema."""
        return bool(self.fetch("SELECT run_id FROM runs LIMIT 1"))

    def list_runs(
        self, *, limit: int = 50, pipeline: str | None = None, status: str | None = None
    ) -> list[Row]:
        """Return runs, newest first, with step counts by status."""
        rows = self.fetch(
            f"SELECT {_RUN_COLUMNS}, {_STEP_COUNTS} "
            "FROM runs r WHERE (CAST(:pipeline AS VARCHAR(200)) IS NULL OR pipeline = :pipeline) "
            f"AND {NOT_DELETED} "
            "AND (CAST(:status AS VARCHAR(16)) IS NULL OR status = :status) "
            "ORDER BY run_id DESC LIMIT :limit",
            {"pipeline": pipeline, "status": status, "limit": limit},
        )
        return [_decode(r) for r in rows]

    def runs_by_id(self, run_ids: list[str]) -> list[Row]:
        """Return these runs (in this order, unknown ids left out), with step counts."""
        if not run_ids:
            return []
        marks = ", ".join(f":r{i}" for i in range(len(run_ids)))
        rows = self.fetch(
            f"SELECT {_RUN_COLUMNS}, {_STEP_COUNTS} FROM runs r WHERE r.run_id IN ({marks})",
            {f"r{i}": run_id for i, run_id in enumerate(run_ids)},
        )
        by_id = {str(r["run_id"]): _decode(r) for r in rows}
        return [by_id[run_id] for run_id in run_ids if run_id in by_id]

    def resolve_run(self, ref: str, *, any_purpose: bool = False) -> str:
        """Return the full run id for an id, a unique prefix, or ``latest``.

        ``latest`` is the newest ordinary run: runs started by ``pipetrail reproduce`` or
        ``pipetrail check`` count only with ``any_purpose``.

        Raises:
            NotFoundError: no run matches.
            AmbiguousPrefixError: several runs match the prefix.
        """
        if ref in ("latest", "last", "@"):
            from pipetrail.ledger.read_model import latest_run_id

            found = latest_run_id(self, any_purpose=any_purpose)
            if found is None:
                if not any_purpose and latest_run_id(self, any_purpose=True) is not None:
                    raise NotFoundError(
                        "there is no ordinary run yet, only runs made by `pipetrail "
                        "reproduce` or `pipetrail check`; name one by its id (see "
                        "`pipetrail runs`)"
                    )
                raise NotFoundError("there are no runs yet; start one with `pipetrail run`")
            return found
        rows = self.fetch(
            "SELECT run_id FROM runs WHERE run_id LIKE :p ORDER BY run_id LIMIT 6",
            {"p": _like_prefix(ref)},
        )
        return _one(rows, "run_id", ref, "run", "`pipetrail runs`")

    def get_run(self, run_id: str) -> Row:
        """Return one run by full id.

        Raises:
            NotFoundError: if it does not exist.
        """
        rows = self.fetch(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = :r", {"r": run_id})
        if not rows:
            raise NotFoundError(f"run {run_id!r} does not exist; list runs with `pipetrail runs`")
        return _decode(rows[0])

    def running_runs(self) -> list[Row]:
        """Return runs whose projection still says ``running``.

        Raises:
            TamperedLedgerError: a row says ``running`` but the events record the run's
                end (the row was edited; closing the run again would record a false fact).
        """
        rows = self.fetch(
            f"SELECT {_RUN_COLUMNS}, last_seq, {CLOSING_EVENTS} FROM runs r "
            "WHERE status = 'running'"
        )
        for row in rows:
            last_seq = int(row.pop("last_seq"))
            if row.pop("closing_events"):
                raise TamperedLedgerError(
                    f"runs[{row['run_id']}]: status is 'running', the events say the run "
                    f"ended; the row is not trusted: {REBUILD_HINT}",
                    seq=last_seq,
                )
        return [_decode(r) for r in rows]

    # -- step runs -------------------------------------------------------------------
    def step_runs(self, run_id: str) -> list[Row]:
        """Return a run's step runs in the order they started.

        Read in the order the database finds them and put in ``first_seq`` order here, if
        they are not in it already: SQLite finds a run's rows in the order they were
        written, which is nearly always the order they started, and sorting a thousand
        whole rows in the database costs more than checking their order.
        """
        rows = [
            dict(zip(_STEP_NAMES, row, strict=False))
            for row in self.whole_rows(_STEP_COLUMNS, _RUN_STEP_ROWS, {"r": run_id})
        ]
        seqs = [row["first_seq"] for row in rows]
        if any(later < earlier for earlier, later in itertools.pairwise(seqs)):
            rows.sort(key=operator.itemgetter("first_seq"))
        return _decoded(rows)

    def step_run(self, step_run_id: str) -> Row:
        """Return one step run by id.

        Raises:
            NotFoundError: if it does not exist.
        """
        rows = self.fetch(
            f"SELECT {_STEP_COLUMNS} FROM step_runs WHERE step_run_id = :s", {"s": step_run_id}
        )
        if not rows:
            raise NotFoundError(f"step run {step_run_id!r} does not exist")
        return _decode(rows[0])

    def find_step_run(self, run_id: str, step: str) -> Row:
        """Return the step run of ``step`` (node id or step name) inside a run.

        Raises:
            NotFoundError: naming the steps the run has.
        """
        rows = self.step_runs(run_id)
        for row in rows:
            if row["node_id"] == step:
                return row
        matches = [row for row in rows if row["step"] == step]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(row["node_id"] for row in rows) or "none"
        if matches:
            raise AmbiguousPrefixError(
                f"step {step!r} ran {len(matches)} times in run {run_id}; name one of: "
                + ", ".join(m["node_id"] for m in matches)
            )
        raise NotFoundError(f"run {run_id} has no step {step!r}; its steps are: {names}")

    def step_ran(self, step: str) -> bool:
        """Whether the ledger records any step run of a step named ``step``, in any state.

        A cache key covers the step's name, so when none is recorded no key of that step
        can be found by :meth:`cache_lookup` either (until one is recorded).
        """
        return bool(self.fetch_tuples(_STEP_RAN_SQL, {"s": step}))

    def cache_lookup(self, cache_key: str) -> Row | None:
        """Return the newest successful step run with this cache key, if any.

        What a hit reuses (the outputs, how each is read, the step run it came from) is
        taken from the step's closing event, verified against the chain
        (:mod:`pipetrail.ledger.trusted`): besides the columns of ``step_runs``,
        ``output_formats`` (None in events written before it was recorded).

        Raises:
            TamperedLedgerError: the row disagrees with its event, or the event with the chain.
        """
        rows = self.fetch_tuples(CACHE_LOOKUP_SQL, {"k": cache_key})
        if not rows:
            return None
        found = rows[0]
        from pipetrail.ledger.trusted import step_run_result, trusted_step_values

        values, payload = trusted_step_values(found)
        return step_run_result(values, payload, found[_FIRST_AT])

    def step_outputs(self, run_id: str, node_ids: Sequence[str] | None = None) -> list[Row]:
        """Return the outputs of a run's finished step runs, as their closing events say.

        One row per step run that completed or was cached, in the order they started:
        ``step_run_id``, ``node_id``, ``outputs`` (name -> digest) and ``output_formats``
        (name -> how it is read; None in events written before it was recorded), each
        taken from the step's closing event, verified against the chain. With
        ``node_ids``, only the step runs of those nodes are read (and verified).

        Raises:
            TamperedLedgerError: a row disagrees with its event, or an event with the chain.
        """
        sql, params = RUN_STEPS_SQL, {"r": run_id}
        if node_ids is not None:
            if not node_ids:
                return []
            sql = node_steps_sql(len(node_ids))
            params.update({f"n{i}": node_id for i, node_id in enumerate(node_ids)})
        from pipetrail.ledger.trusted import trusted_step_run

        found = []
        for row in self.fetch(sql, params):
            step = trusted_step_run(row)
            found.append(
                {
                    "step_run_id": step["step_run_id"],
                    "node_id": step["node_id"],
                    "outputs": step["outputs"] or {},
                    "output_formats": step["output_formats"],
                }
            )
        return found

    def previous_run_of_step(
        self, pipeline: str, step: str, run_id: str, before_seq: int
    ) -> str | None:
        """Return the latest earlier run of ``pipeline`` in which ``step`` finished.

        Runs other than ``run_id`` only, started before ``before_seq``; whichever node of
        the step it was (the caller pairs nodes).
        """
        rows = self.fetch(
            "SELECT run_id FROM step_runs WHERE pipeline = :p AND step = :s AND run_id <> :r "
            "AND first_seq < :seq AND status IN ('completed', 'cached', 'failed') "
            "AND components IS NOT NULL ORDER BY first_seq DESC LIMIT 1",
            {"p": pipeline, "s": step, "r": run_id, "seq": before_seq},
        )
        return str(rows[0]["run_id"]) if rows else None

    # -- artifacts -------------------------------------------------------------------
    def artifact(self, digest: str) -> Row | None:
        """Return an artifact's record, or None.

        The record (serializer, blob, meta...) is the one its ``artifact.recorded`` event
        gives, verified against the chain (:mod:`pipetrail.ledger.trusted`).

        Raises:
            TamperedLedgerError: the row disagrees with its event, or the event with the chain.
        """
        rows = self.fetch(ARTIFACT_SQL, {"d": digest})
        if not rows:
            return None
        from pipetrail.ledger.trusted import trusted_artifact

        return trusted_artifact(rows[0])

    def known_artifacts(self, digests: list[str]) -> set[str]:
        """Return which of ``digests`` are already recorded."""
        found: set[str] = set()
        for i in range(0, len(digests), 500):
            chunk = digests[i : i + 500]
            names = {f"d{j}": d for j, d in enumerate(chunk)}
            marks = ", ".join(f":{n}" for n in names)
            found.update(
                r["digest"]
                for r in self.fetch(
                    f"SELECT digest FROM artifacts WHERE digest IN ({marks})", names
                )
            )
        return found

    def artifact_blobs(self) -> list[str]:
        """Return the blob digest of every recorded artifact, as the events record them."""
        blobs = {
            json.loads(r["payload"]).get("blob")
            for r in self.fetch("SELECT payload FROM events WHERE kind = 'artifact.recorded'")
        }
        from pipetrail.ledger.references import superseded_blobs

        # The objects a re-encryption replaced are no longer recorded content.
        return sorted(b for b in blobs - superseded_blobs(self) if isinstance(b, str))

    def resolve_artifact(self, ref: str) -> str:
        """Return the full digest for a digest or unique prefix (with or without ``blake3:``).

        Raises:
            NotFoundError: no artifact matches.
            AmbiguousPrefixError: several artifacts match.
        """
        prefix = ref if ref.startswith("blake3:") else "blake3:" + ref
        rows = self.fetch(
            "SELECT digest FROM artifacts WHERE digest LIKE :p ORDER BY digest LIMIT 6",
            {"p": _like_prefix(prefix)},
        )
        return _one(rows, "digest", ref, "artifact", "`pipetrail show RUN`")

    def sources(self, run_id: str) -> list[Row]:
        """Return the sources a run observed."""
        return self.fetch(
            "SELECT path, digest, size, mtime_ns, observed_at, by_reference FROM sources "
            "WHERE run_id = :r ORDER BY path",
            {"r": run_id},
        )

    def event_count(self) -> int:
        """Return how many events the ledger holds."""
        rows = self.fetch("SELECT COUNT(*) AS n FROM events")
        return int(rows[0]["n"]) if rows else 0


def _like_prefix(ref: str) -> str:
    r"""A LIKE pattern for the ids that start with ``ref``, taken literally.

    The escape character (``\``, see :func:`_with_escape`) and the wildcards ``%`` and
    ``_`` are escaped, so ``%`` or ``\`` match only ids that hold one. A reference that
    is empty (or only the ``blake3:`` scheme) is no prefix: its pattern matches nothing.
    """
    if ref in ("", "blake3:"):
        return ""  # ids are never empty
    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _one(rows: list[Row], key: str, ref: str, what: str, hint: str) -> str:
    if not rows:
        raise NotFoundError(f"no {what} matches {ref!r}; list them with {hint}")
    if len(rows) > 1:
        shown = ", ".join(str(r[key]) for r in rows[:5])
        raise AmbiguousPrefixError(
            f"{ref!r} matches several {what}s ({shown}{', ...' if len(rows) > 5 else ''}); "
            "give more characters"
        )
    return str(rows[0][key])


class _DriverQueries(Reader):
    """A reader whose queries run on a :class:`Driver` through :meth:`_answer`."""

    @abstractmethod
    def _answer(self, read: Callable[[Driver], list[_T]]) -> list[_T]:
        """``read`` on this reader's driver, a database failure raised as a LedgerError."""

    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run one query (no rows without a database or schema yet).

        Raises:
            LedgerError: the database failed (one line: what, where, how to fix).
        """
        return self._answer(lambda driver: driver.fetch(_with_escape(sql), params))

    def fetch_tuples(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one query; return its rows as tuples.

        Raises:
            LedgerError: the database failed (one line: what, where, how to fix).
        """
        return self._answer(lambda driver: driver.rows(_with_escape(sql), params))

    def whole_rows(
        self, columns: str, rest: str, params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one query; return its rows as tuples, each read whole on SQLite.

        Raises:
            LedgerError: the database failed (one line: what, where, how to fix).
        """
        return self._answer(lambda driver: driver.whole_rows(columns, rest, params))


class DriverReader(_DriverQueries):
    """Runs the queries on a ledger's own connection (any backend).

    Args:
        connect: returns the driver to use; called for every query, so that a ledger
            that reopened its connection (after a fork) is followed.
        url: the store's URL, for messages.
        owner: an object closed with this reader (the ledger it opened for itself).
    """

    def __init__(self, connect: Callable[[], Driver], url: str, *, owner: Any = None) -> None:
        self._connect = connect
        self.url = url
        self._owner = owner  # closed with this reader when the reader opened it

    @property
    def driver(self) -> Driver:
        """The driver the next query runs on."""
        return self._connect()

    def _answer(self, read: Callable[[Driver], list[_T]]) -> list[_T]:
        """``read`` on the driver; a database failure raised as a LedgerError."""
        try:
            return read(self._connect())
        except Exception as exc:
            if is_database_error(exc):
                raise ledger_error(self.url, exc) from exc
            raise

    def close(self) -> None:
        """Close the ledger this reader opened for itself, if any."""
        if self._owner is not None:
            self._owner.close()
            self._owner = None


class SqliteReader(_DriverQueries):
    """Runs the queries on a read-only stdlib ``sqlite3`` connection (no SQLAlchemy).

    A missing file, or a database with no tables yet, reads as empty. The connection is
    never used across a fork: a child process opens its own.

    Args:
        path: the database file.
        timeout: seconds to wait for a lock another process holds.
    """

    def __init__(self, path: Path, *, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout
        self._driver: Driver | None = None
        self._pid = 0

    def _connection(self) -> Driver | None:
        if self._driver is not None and self._pid != os.getpid():
            abandon_inherited(self._driver.connection)
            self._driver = None
        if self._driver is None:
            if not self.path.exists():
                return None
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.timeout)
            if _behind_head(conn):
                # Written by an older pipetrail: bring the schema up to date first (the
                # queries name tables later revisions add), then read as usual.
                conn.close()
                from pipetrail.ledger.ledger import Ledger

                Ledger.open(f"sqlite:///{self.path}", actor="reader").close()
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.timeout)
            self._driver = Driver(conn, "sqlite")
            self._pid = os.getpid()
        return self._driver

    def _answer(self, read: Callable[[Driver], list[_T]]) -> list[_T]:
        """``read`` on the connection, a database failure raised as a LedgerError.

        No rows when there is no database or no schema yet.
        """
        try:
            driver = self._connection()
            if driver is None:
                return []
            return read(driver)
        except sqlite3.Error as exc:
            if "no such table" in str(exc) and self._is_empty():
                return []
            raise ledger_error(f"sqlite:///{self.path}", exc) from exc

    def _is_empty(self) -> bool:
        """Whether the database has no tables at all (created, schema not yet written)."""
        driver = self._driver
        if driver is None:
            return True
        try:
            rows = driver.fetch("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table'")
        except sqlite3.Error:
            return False
        return int(rows[0]["n"]) == 0

    def close(self) -> None:
        """Close the connection (in the process that opened it)."""
        if self._driver is not None:
            if self._pid == os.getpid():
                self._driver.close()
            else:
                abandon_inherited(self._driver.connection)
            self._driver = None


def _behind_head(conn: sqlite3.Connection) -> bool:
    """Whether a SQLite ledger's schema is older than this pipetrail's (not when empty)."""
    from pipetrail.ledger.migrate import HEAD_REVISION

    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return False  # no schema yet (or unreadable: the first query reports it)
    return row is not None and str(row[0]) != HEAD_REVISION


@functools.lru_cache(maxsize=512)
def _with_escape(sql: str) -> str:
    # Remembered per text (the queries are constants but for a few): no scan of the
    # text on every query.
    return re.sub(r"LIKE :p\b", "LIKE :p ESCAPE '\\\\'", sql)
