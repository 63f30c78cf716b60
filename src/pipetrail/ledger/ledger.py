"""The ledger: append hash-chained events, keep projections in step, verify the chain.

Appends are serialized across processes: SQLite takes its write lock up front
(``BEGIN IMMEDIATE``) and PostgreSQL takes a transaction-scoped advisory lock, then the
appender reads the chain head, assigns ``seq = last + 1`` and inserts. The events and
their projections commit together or not at all.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit is atomic and the database
always consistent; after a power loss the last transactions may be missing, which the
chain still verifies (nothing half-written survives).

A SQLite ledger whose schema is current opens on a stdlib ``sqlite3`` connection;
SQLAlchemy (and Alembic) are imported only to create or migrate the schema, or when
:attr:`Ledger.engine` is asked for. PostgreSQL always goes through a SQLAlchemy engine.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pipetrail.config import redact_url
from pipetrail.core.clock import format_ts, utcnow
from pipetrail.errors import LedgerError
from pipetrail.ledger.driver import Driver
from pipetrail.ledger.events import (
    GENESIS_HASH,
    Event,
    EventDraft,
    event_hash,
    payload_text,
)
from pipetrail.ledger.migrate import HEAD_REVISION
from pipetrail.ledger.projections import apply_event
from pipetrail.ledger.queries import DriverReader

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from sqlalchemy import Engine

__all__ = ["Ledger", "LedgerVerifyReport", "sqlite_url"]

_HEAD = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
_INSERT_EVENT = (
    "INSERT INTO events (seq, ts, actor, kind, run_id, payload, prev_hash, hash) "
    "VALUES (:seq, :ts, :actor, :kind, :run_id, :payload, :prev_hash, :hash)"
)
_UPDATE_HEAD = "UPDATE ledger_head SET seq = :seq, hash = :hash WHERE id = 1"
_INSERT_HEAD = "INSERT INTO ledger_head (id, seq, hash) VALUES (1, :seq, :hash)"
_EVENTS_AFTER = (
    "SELECT seq, ts, actor, kind, run_id, payload, prev_hash, hash FROM events "
    "WHERE seq > :after ORDER BY seq LIMIT :limit"
)
_PROJECTION_TABLES = ("step_run_io", "sources", "artifacts", "step_runs", "runs")


def sqlite_url(path: Path) -> str:
    """Return the SQLAlchemy URL of a SQLite database file."""
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class LedgerVerifyReport:
    """Outcome of :meth:`Ledger.verify`.

    Attributes:
        checked: how many events were re-hashed.
        first_bad_seq: the first sequence number that fails, or None when intact.
        reason: what failed there.
    """

    checked: int
    first_bad_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether the whole chain verified."""
        return self.first_bad_seq is None


@contextmanager
def _mapped_errors(url: str) -> Iterator[None]:
    """Translate database exceptions into LedgerError naming the store and a fix."""
    try:
        yield
    except Exception as exc:
        if _is_database_error(exc):
            _raise_ledger_error(url, exc)
        raise


def _is_database_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    # SQLAlchemy and psycopg are checked only if loaded: importing them costs start-up.
    if type(exc).__module__.startswith("psycopg"):
        return True
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError)


def _raise_ledger_error(url: str, exc: BaseException) -> NoReturn:
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip()
    first = message.splitlines()[0] if message else type(exc).__name__
    raise LedgerError(
        f"metadata store {redact_url(url)} failed: {first}. Check that the database is "
        "reachable and that the URL in pipetrail.toml (or PIPETRAIL_METADATA) is right."
    ) from exc


class Ledger:
    """The append-only event ledger and its projections, on SQLite or PostgreSQL.

    One instance holds one database connection and is meant for one thread; open one
    per thread or process. Appends from several processes are serialized by the
    database (see :class:`~pipetrail.ledger.driver.Driver`).
    """

    def __init__(
        self,
        url: str,
        *,
        actor: str,
        engine: Engine | None = None,
        connection: Any = None,
    ) -> None:
        self.url = url
        self.actor = actor
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self._engine = engine
        self._raw: Any = None
        self._driver: Driver | None = None
        if connection is not None:
            self._driver = Driver(connection, self.dialect)

    @classmethod
    def open(cls, url: str, *, actor: str) -> Ledger:
        """Connect to (and create or migrate) the metadata store at ``url``.

        Args:
            url: a SQLAlchemy URL (``sqlite:///path`` or ``postgresql://...``).
            actor: recorded on every event this instance appends.

        Raises:
            LedgerError: if the store cannot be reached or migrated.
        """
        url = _normalize_url(url)
        with _mapped_errors(url):
            if url.startswith("sqlite:///") and ":memory:" not in url:
                path = Path(url[len("sqlite:///") :])
                path.parent.mkdir(parents=True, exist_ok=True)
                connection = _connect_sqlite(path)
                if _sqlite_revision(connection) == HEAD_REVISION:
                    return cls(url, actor=actor, connection=connection)
                connection.close()
            ledger = cls(url, actor=actor)
            from pipetrail.ledger.migrate import ensure_schema

            ensure_schema(ledger.engine)
        return ledger

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (created on first use; migrations and PostgreSQL)."""
        if self._engine is None:
            from sqlalchemy import create_engine

            if self.dialect == "sqlite":
                self._engine = create_engine(self.url, connect_args={"timeout": 60})
                _configure_sqlite(self._engine)
            else:
                self._engine = create_engine(self.url, pool_pre_ping=True)
        return self._engine

    @property
    def db(self) -> Driver:
        """The driver over this ledger's connection (opened on first use)."""
        if self._driver is None:
            with _mapped_errors(self.url):
                if self.dialect == "sqlite":
                    path = Path(self.url[len("sqlite:///") :])
                    self._driver = Driver(_connect_sqlite(path), "sqlite")
                else:
                    self._raw = self.engine.raw_connection()
                    self._driver = Driver(self._raw.driver_connection, self.dialect)
        return self._driver

    def close(self) -> None:
        """Release the connection and the engine's pool."""
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        elif self._driver is not None:
            self._driver.close()
        self._driver = None
        if self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------
    def append(self, drafts: Sequence[EventDraft]) -> list[Event]:
        """Append events atomically, chained after the current head, and project them.

        Returns:
            The appended events with their sequence numbers and hashes.

        Raises:
            LedgerError: if the database fails; nothing of the batch is kept.
        """
        if not drafts:
            return []
        db = self.db
        with _mapped_errors(self.url), db.write():
            head = db.fetch(_HEAD)
            seq, prev = (head[0]["seq"], head[0]["hash"]) if head else (0, GENESIS_HASH)
            ts = format_ts(utcnow())
            appended: list[Event] = []
            for draft in drafts:
                seq += 1
                text_payload = payload_text(draft.payload)
                digest = event_hash(
                    seq=seq,
                    ts=ts,
                    actor=self.actor,
                    kind=str(draft.kind),
                    run_id=draft.run_id,
                    payload_text=text_payload,
                    prev_hash=prev,
                )
                appended.append(
                    Event(
                        seq,
                        ts,
                        self.actor,
                        str(draft.kind),
                        draft.run_id,
                        text_payload,
                        prev,
                        digest,
                    )
                )
                prev = digest
            db.executemany(
                _INSERT_EVENT,
                [
                    {
                        "seq": e.seq,
                        "ts": e.ts,
                        "actor": e.actor,
                        "kind": e.kind,
                        "run_id": e.run_id,
                        "payload": e.payload_text,
                        "prev_hash": e.prev_hash,
                        "hash": e.hash,
                    }
                    for e in appended
                ],
            )
            for draft, appended_event in zip(drafts, appended, strict=True):
                apply_event(db, appended_event, draft.payload)
            last = {"seq": appended[-1].seq, "hash": appended[-1].hash}
            if db.execute(_UPDATE_HEAD, last) == 0:
                db.execute(_INSERT_HEAD, last)
        return appended

    # -- reading ---------------------------------------------------------------------
    def iter_events(self, *, from_seq: int = 1, batch: int = 5000) -> Iterator[Event]:
        """Yield events in sequence order, reading in batches."""
        after = from_seq - 1
        while True:
            with _mapped_errors(self.url):
                rows = self.db.fetch(_EVENTS_AFTER, {"after": after, "limit": batch})
            if not rows:
                return
            for row in rows:
                yield Event(
                    row["seq"],
                    row["ts"],
                    row["actor"],
                    row["kind"],
                    row["run_id"],
                    row["payload"],
                    row["prev_hash"],
                    row["hash"],
                )
            after = rows[-1]["seq"]

    def reader(self) -> DriverReader:
        """Return a query helper over this ledger's projections (same connection)."""
        return DriverReader(self.db, self.url)

    # -- integrity -------------------------------------------------------------------
    def verify(self) -> LedgerVerifyReport:
        """Re-hash the whole chain and cross-check the head and projections.

        Detects rows edited, deleted, inserted or reordered directly in the database.
        """
        expected_seq = 1
        prev = GENESIS_HASH
        checked = 0
        for ev in self.iter_events():
            if ev.seq != expected_seq:
                return LedgerVerifyReport(
                    checked,
                    expected_seq,
                    f"event {expected_seq} is missing (the next stored event is {ev.seq})",
                )
            if ev.prev_hash != prev:
                return LedgerVerifyReport(
                    checked, ev.seq, "its prev_hash does not match the hash of the event before it"
                )
            recomputed = event_hash(
                seq=ev.seq,
                ts=ev.ts,
                actor=ev.actor,
                kind=ev.kind,
                run_id=ev.run_id,
                payload_text=ev.payload_text,
                prev_hash=ev.prev_hash,
            )
            if recomputed != ev.hash:
                return LedgerVerifyReport(
                    checked, ev.seq, "its content does not match its hash (the row was edited)"
                )
            try:
                json.loads(ev.payload_text)
            except ValueError:
                return LedgerVerifyReport(checked, ev.seq, "its payload is not valid JSON")
            prev = ev.hash
            expected_seq += 1
            checked += 1
        last_seq = expected_seq - 1
        with _mapped_errors(self.url):
            head = self.db.fetch("SELECT seq, hash FROM ledger_head WHERE id = 1")
            beyond = _max_projection_seq(self.db)
        if head and (head[0]["seq"] != last_seq or head[0]["hash"] != prev):
            head_seq = int(head[0]["seq"])
            return LedgerVerifyReport(
                checked,
                min(head_seq, last_seq) + 1 if head_seq != last_seq else last_seq,
                f"the recorded head is event {head_seq} but the chain ends at {last_seq} "
                "(events were deleted from the end, or the head was edited)",
            )
        if not head and last_seq > 0:
            return LedgerVerifyReport(checked, 1, "the ledger head row is missing")
        if beyond > last_seq:
            return LedgerVerifyReport(
                checked,
                last_seq + 1,
                f"projections reference event {beyond} but the chain ends at {last_seq} "
                "(events were deleted from the end)",
            )
        return LedgerVerifyReport(checked)

    def rebuild_projections(self) -> int:
        """Empty the projections and replay every event into them; return the count.

        Runs in one transaction under the write lock: readers see the old projections
        until the new ones are complete.
        """
        db = self.db
        count = 0
        with _mapped_errors(self.url):
            events = list(self.iter_events())
            with db.write():
                for table in _PROJECTION_TABLES:
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names
                for ev in events:
                    apply_event(db, ev, ev.payload)
                    count += 1
        return count


def _max_projection_seq(db: Driver) -> int:
    row = db.fetch(
        "SELECT (SELECT MAX(last_seq) FROM runs) AS a, (SELECT MAX(last_seq) FROM step_runs) AS b, "
        "(SELECT MAX(first_seq) FROM artifacts) AS c, (SELECT MAX(seq) FROM sources) AS d"
    )[0]
    return max(int(v) for v in row.values() if v is not None) if any(row.values()) else 0


def _normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=60000",
    "PRAGMA foreign_keys=ON",
)


def _connect_sqlite(path: Path) -> sqlite3.Connection:
    """Open a SQLite file in autocommit mode (transactions are explicit) with WAL."""
    connection = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    connection.execute("PRAGMA busy_timeout=60000")
    for pragma in _SQLITE_PRAGMAS:
        _with_lock_retry(connection, pragma)
    return connection


def _with_lock_retry(connection: sqlite3.Connection, statement: str) -> None:
    # Switching a new database to WAL needs a moment of exclusive access, and SQLite may
    # answer "database is locked" at once (without its busy handler) when two processes
    # open a new ledger together; retry briefly instead of failing the run.
    for attempt in range(60):
        try:
            connection.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 59:
                raise
            time.sleep(0.01 * (attempt + 1))


def _sqlite_revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def _configure_sqlite(engine: Engine) -> None:
    """The same settings for SQLAlchemy's connections, and BEGIN IMMEDIATE for writers."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front so the chain head they read stays the head;
        # readers use a deferred transaction and never block writers (WAL).
        immediate = conn.get_execution_options().get("pipetrail_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
