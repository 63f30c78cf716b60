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

import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import now_ts
from pipetrail.core.sqlite_binding import bind_plainly
from pipetrail.hashing.canonical import member_json
from pipetrail.ledger import merkle_store
from pipetrail.ledger.db_errors import mapped_errors
from pipetrail.ledger.driver import Driver, abandon_inherited
from pipetrail.ledger.events import (
    GENESIS_HASH,
    Event,
    EventDraft,
    EventKind,
    checked_payload_text,
    event_hash,
    remember_hashes,
)
from pipetrail.ledger.migrate import HEAD_REVISION
from pipetrail.ledger.open import sqlite_target
from pipetrail.ledger.projection_batch import apply_events
from pipetrail.ledger.queries import DriverReader
from pipetrail.ledger.sqlite_schema import create_new, schema_statements

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from sqlalchemy import Engine

    from pipetrail.ledger.audit import LedgerVerifyReport, Meanwhile, RebuildReport

__all__ = ["Ledger", "LedgerVerifyReport", "RebuildReport", "sqlite_url"]


def __getattr__(name: str) -> Any:
    # The audit module (chain walks, rebuilds) loads only when a caller needs it: a run
    # never does.
    if name in ("LedgerVerifyReport", "RebuildReport"):
        from pipetrail.ledger import audit

        return getattr(audit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_HEAD = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
_INSERT_EVENT = (
    "INSERT INTO events (seq, ts, actor, kind, run_id, payload, prev_hash, hash) "
    "VALUES (:seq, :ts, :actor, :kind, :run_id, :payload, :prev_hash, :hash)"
)
_EVENT_COLUMNS = ("seq", "ts", "actor", "kind", "run_id", "payload", "prev_hash", "hash")
_UPDATE_HEAD = "UPDATE ledger_head SET seq = :seq, hash = :hash WHERE id = 1"
_RECORDED_CHUNK = 500  # digests per IN (...) query, below SQLite's old 999-parameter limit
_INSERT_HEAD = "INSERT INTO ledger_head (id, seq, hash) VALUES (1, :seq, :hash)"


def sqlite_url(path: Path) -> str:
    """Return the SQLAlchemy URL of a SQLite database file."""
    return f"sqlite:///{path}"


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
        self._pid = os.getpid()
        self._tree = merkle_store.TreeWriter()
        if connection is not None:
            self._driver = Driver(connection, self.dialect)

    @classmethod
    def open(cls, url: str, *, actor: str) -> Ledger:
        """Connect to (and create or migrate) the metadata store at ``url``.

        Args:
            url: a SQLAlchemy URL (``sqlite:///path`` or ``postgresql://...``). A SQLite
                URL may end in ``?timeout=SECONDS``: how long to wait for a lock another
                process holds (default 60).
            actor: recorded on every event this instance appends.

        Raises:
            LedgerError: if the store cannot be reached or migrated.
        """
        url = _normalize_url(url)
        with mapped_errors(url):
            target = sqlite_target(url)
            if target is not None:
                path, timeout = target
                path.parent.mkdir(parents=True, exist_ok=True)
                connection = _connect_sqlite(path, timeout)
                try:
                    revision = _sqlite_revision(connection)
                    if revision is None:
                        revision = _made_new(connection)
                    current = revision == HEAD_REVISION
                except BaseException:
                    connection.close()
                    raise
                if current:
                    return cls(url, actor=actor, connection=connection)
                connection.close()
            ledger = cls(url, actor=actor)
            from pipetrail.ledger.migrate import ensure_schema

            try:
                ensure_schema(ledger.engine)
                merkle_store.ensure_tree(ledger.db)  # a ledger from before the tree: build it
            except BaseException:
                ledger.close()  # a refused or failed open leaves no connection behind
                raise
        return ledger

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (created on first use; migrations and PostgreSQL)."""
        self._leave_parent_connections()
        if self._engine is None:
            from sqlalchemy import create_engine

            target = sqlite_target(self.url)
            if target is not None:
                path, timeout = target
                self._engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": timeout})
                _configure_sqlite(self._engine, timeout)
            elif self.dialect == "sqlite":
                self._engine = create_engine(self.url)
                _configure_sqlite(self._engine, 60.0)
            else:
                self._engine = create_engine(self.url, pool_pre_ping=True)
        return self._engine

    @property
    def db(self) -> Driver:
        """The driver over this ledger's connection, opened on first use.

        A connection never crosses a fork: a child process opens its own.
        """
        self._leave_parent_connections()
        if self._driver is None:
            with mapped_errors(self.url):
                target = sqlite_target(self.url)
                if target is not None:
                    self._driver = Driver(_connect_sqlite(*target), "sqlite")
                else:
                    self._raw = self.engine.raw_connection()
                    self._driver = Driver(self._raw.driver_connection, self.dialect)
        return self._driver

    def _leave_parent_connections(self) -> None:
        """In a forked child, drop what the parent opened, without closing it."""
        if self._pid == os.getpid():
            return
        if self._raw is not None:
            abandon_inherited(self._raw)
        elif self._driver is not None:
            abandon_inherited(self._driver.connection)
        self._raw = None
        self._driver = None
        if self._engine is not None:
            self._engine.dispose(close=False)  # forget the pool's connections, keep them open
        self._pid = os.getpid()

    def close(self) -> None:
        """Release the connection and the engine's pool (only this process's own)."""
        self._leave_parent_connections()
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
    def append(
        self,
        drafts: Sequence[EventDraft],
        *,
        precondition: Callable[[Driver], Sequence[EventDraft] | None] | None = None,
        new_artifacts_only: bool = False,
    ) -> list[Event]:
        """Append events atomically, chained after the current head, and project them.

        Args:
            drafts: the events to append.
            precondition: check-then-act under the write lock: called inside the write
                transaction, before anything is written, with its driver (read the
                committed state through it). Raising aborts the append (nothing is
                written, the error propagates); drafts it returns are appended after
                ``drafts``, in the same transaction.
            new_artifacts_only: leave out the ``artifact.recorded`` drafts of
                ``drafts`` whose digest the ledger records already, as it reads under
                the write lock (one query for the batch, in the append's transaction:
                a run queues the artifacts it stores without asking the ledger about
                each).

        Returns:
            The appended events with their sequence numbers and hashes.

        Raises:
            LedgerError: if the database fails; nothing of the batch is kept.
        """
        if not drafts and precondition is None:
            return []
        db = self.db
        with mapped_errors(self.url), db.write():
            if new_artifacts_only:
                drafts = _new_artifacts_only(db, drafts)
                if not drafts and precondition is None:
                    return []
            if precondition is not None:
                drafts = [*drafts, *(precondition(db) or ())]
                if not drafts:
                    return []
            head = db.fetch(_HEAD)
            seq, prev = (head[0]["seq"], head[0]["hash"]) if head else (0, GENESIS_HASH)
            ts = now_ts()
            actor = self.actor
            appended: list[Event] = []
            fasts: list[bool] = []
            rows: list[tuple[Any, ...]] = []  # the events' rows, in _EVENT_COLUMNS order
            for draft in drafts:
                seq += 1
                encoded = draft.encoded
                text_payload, fast = (
                    checked_payload_text(draft.payload) if encoded is None else encoded
                )
                fasts.append(fast)
                kind, run_id = str(draft.kind), draft.run_id
                digest = event_hash(
                    seq=seq,
                    ts=ts,
                    actor=actor,
                    kind=kind,
                    run_id=run_id,
                    payload_text=text_payload,
                    prev_hash=prev,
                )
                appended.append(Event(seq, ts, actor, kind, run_id, text_payload, prev, digest))
                rows.append((seq, ts, actor, kind, run_id, text_payload, prev, digest))
                prev = digest
            db.executemany_values(_INSERT_EVENT, _EVENT_COLUMNS, rows)
            self._tree.extend(db, appended)  # the Merkle tree's new nodes (ADR 0020)
            apply_events(
                db,
                [(e, d.payload) for e, d in zip(appended, drafts, strict=True)],
                # every payload encoded by orjson: its members may be too
                member_json if all(fasts) else None,
            )
            last = {"seq": appended[-1].seq, "hash": appended[-1].hash}
            if db.execute(_UPDATE_HEAD, last) == 0:
                db.execute(_INSERT_HEAD, last)
        remember_hashes(appended, fasts)  # facts about the fields, whatever was committed
        return appended

    # -- reading ---------------------------------------------------------------------
    def iter_events(self, *, from_seq: int = 1, batch: int = 5000) -> Iterator[Event]:
        """Yield events in sequence order, reading in batches."""
        from pipetrail.ledger import audit

        events = audit.iter_events(self.db, from_seq=from_seq, batch=batch)
        while True:
            with mapped_errors(self.url):
                ev = next(events, None)
            if ev is None:
                return
            yield ev

    def reader(self) -> DriverReader:
        """Return a query helper over this ledger's projections (same connection)."""
        return DriverReader(lambda: self.db, self.url)

    # -- integrity -------------------------------------------------------------------
    def verify(
        self, *, derived: bool = True, meanwhile: Meanwhile[Any] | None = None
    ) -> LedgerVerifyReport:
        """Re-hash the whole chain, check the head, and compare the derived tables.

        Detects event rows edited, deleted, inserted or reordered directly in the
        database and, with ``derived``, every derived row (``runs``, ``step_runs``,
        ``artifacts``, ``step_run_io``, ``sources``) that differs from what the events
        project, is missing or is extra. Reads one consistent snapshot. ``meanwhile``:
        a check run in that snapshot once the chain verified (see
        :class:`~pipetrail.ledger.audit.Meanwhile`).

        Raises:
            LedgerError: the database failed.
        """
        from pipetrail.ledger import audit

        with mapped_errors(self.url):
            return audit.verify(self.db, derived=derived, meanwhile=meanwhile)

    def rebuild_projections(self) -> RebuildReport:
        """Rebuild the derived tables from the events; report the rows it changed.

        Verifies the chain first and rewrites only the rows that disagree with the events,
        all in one transaction under the write lock (readers see the old rows until it
        commits).

        Raises:
            TamperedLedgerError: the chain is broken; nothing was changed.
            LedgerError: the database failed; nothing was changed.
        """
        from pipetrail.ledger import audit

        with mapped_errors(self.url):
            return audit.rebuild(self.db)


def _new_artifacts_only(db: Driver, drafts: Sequence[EventDraft]) -> Sequence[EventDraft]:
    """``drafts`` without the ``artifact.recorded`` ones whose digest ``db`` records."""
    digests = [str(d.payload["digest"]) for d in drafts if d.kind == EventKind.ARTIFACT_RECORDED]
    if not digests:
        return drafts
    known: set[str] = set()
    for at in range(0, len(digests), _RECORDED_CHUNK):
        chunk = digests[at : at + _RECORDED_CHUNK]
        # Padded to a power of two with its last digest (the same answer): a run's flushes
        # then share a few query texts, each prepared once, not one per batch size.
        chunk += chunk[-1:] * (_padded(len(chunk)) - len(chunk))
        names = {f"d{i}": digest for i, digest in enumerate(chunk)}
        marks = ", ".join(f":{name}" for name in names)
        sql = f"SELECT digest FROM artifacts WHERE digest IN ({marks})"  # noqa: S608 - placeholders only
        known.update(str(row[0]) for row in db.rows(sql, names))
    if not known:
        return drafts
    return [
        d
        for d in drafts
        if d.kind != EventKind.ARTIFACT_RECORDED or d.payload["digest"] not in known
    ]


def _padded(count: int) -> int:
    """The power of two at or above ``count``, at most :data:`_RECORDED_CHUNK`."""
    return min(1 << (count - 1).bit_length(), _RECORDED_CHUNK)


def _normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


# The page size of a new SQLite ledger. A commit writes each page it changed to the WAL
# with two system calls (frame header, page): a run's end writes about one page per
# event and one per step run, so pages twice SQLite's default of 4 KiB halve those calls
# (a cached run's last flush spends about a quarter less CPU time). Larger pages save
# few more calls but make SQLite checksum more bytes for the small flushes of a first
# run. Rows stay byte for byte the same; an existing ledger keeps the size it was made
# with (SQLite ignores the pragma then).
SQLITE_PAGE_SIZE = 8192


def _sqlite_pragmas(timeout: float) -> tuple[str, ...]:
    return (
        f"PRAGMA page_size={SQLITE_PAGE_SIZE}",  # first: switching to WAL fixes the size
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        f"PRAGMA busy_timeout={int(timeout * 1000)}",
        "PRAGMA foreign_keys=ON",
    )


def _connect_sqlite(path: Path, timeout: float) -> sqlite3.Connection:
    """Open a SQLite file in autocommit mode (transactions are explicit) with WAL.

    ``timeout`` bounds how long a lock held by another process is waited for.
    """
    bind_plainly()  # the rows appended bind many None values (see its module)
    connection = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        deadline = time.monotonic() + timeout
        for pragma in _sqlite_pragmas(timeout):
            _with_lock_retry(connection, pragma, deadline)
    except BaseException:
        connection.close()
        raise
    return connection


def _with_lock_retry(connection: sqlite3.Connection, statement: str, deadline: float) -> None:
    # Switching a new database to WAL needs a moment of exclusive access, and SQLite may
    # answer "database is locked" at once (without its busy handler) when two processes
    # open a new ledger together; retry briefly instead of failing the run.
    attempt = 0
    while True:
        try:
            connection.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            attempt += 1
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(min(0.01 * attempt, 0.2))


def _sqlite_revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None  # a new database: the schema is created next
        raise
    return None if row is None else str(row[0])


def _made_new(connection: sqlite3.Connection) -> str | None:
    """Make a new ledger's schema from its stored statements; its revision after.

    Only an empty database is given the statements (see :mod:`.sqlite_schema`); one
    another process made meanwhile is read again. None when the database holds something
    else, or when the statements cannot be read: the migrations then take it, as for any
    database not at the head revision.
    """
    try:
        statements = schema_statements()
    except (OSError, ValueError):
        return None
    if create_new(connection, statements):
        return HEAD_REVISION
    return _sqlite_revision(connection)


def _configure_sqlite(engine: Engine, timeout: float) -> None:
    """The same settings for SQLAlchemy's connections, and BEGIN IMMEDIATE for writers."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in _sqlite_pragmas(timeout):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front so the chain head they read stays the head;
        # readers use a deferred transaction and never block writers (WAL).
        immediate = conn.get_execution_options().get("pipetrail_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
