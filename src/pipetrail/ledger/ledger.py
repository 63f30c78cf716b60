"""The ledger: append hash-chained events, keep projections in step, verify the chain.

Appends are serialized across processes: SQLite takes its write lock up front
(``BEGIN IMMEDIATE``) and PostgreSQL takes a transaction-scoped advisory lock, then the
appender reads the chain head, assigns ``seq = last + 1`` and inserts. The events and
their projections commit together or not at all.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit is atomic and the database
always consistent; after a power loss the last transactions may be missing, which the
chain still verifies (nothing half-written survives).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from pipetrail.core.clock import format_ts, utcnow
from pipetrail.errors import LedgerError
from pipetrail.ledger import schema
from pipetrail.ledger.events import (
    GENESIS_HASH,
    Event,
    EventDraft,
    event_hash,
    payload_text,
)
from pipetrail.ledger.migrate import ensure_schema
from pipetrail.ledger.projections import apply_event
from pipetrail.ledger.queries import SqlAlchemyReader

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = ["Ledger", "LedgerVerifyReport", "sqlite_url"]

# Arbitrary constant naming pipetrail's append lock among PostgreSQL advisory locks.
_PG_LOCK_KEY = 0x70697065  # "pipe"


# Statements built once: constructing them per append costs more than executing them.
_HEAD = select(schema.events.c.seq, schema.events.c.hash).order_by(schema.events.c.seq.desc()).limit(1)
_INSERT_EVENTS = insert(schema.events)
_UPDATE_HEAD = (
    update(schema.ledger_head)
    .where(schema.ledger_head.c.id == 1)
    .values(seq=bindparam("head_seq"), hash=bindparam("head_hash"))
)
_INSERT_HEAD = insert(schema.ledger_head)


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
    except SQLAlchemyError as exc:
        message = str(exc.orig if getattr(exc, "orig", None) is not None else exc).strip()
        raise LedgerError(
            f"metadata store {_redact(url)} failed: {message.splitlines()[0] if message else exc}. "
            "Check that the database is reachable and that the URL in pipetrail.toml "
            "(or PIPETRAIL_METADATA) is right."
        ) from exc


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class Ledger:
    """The append-only event ledger and its projections, on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine, url: str, *, actor: str) -> None:
        self.engine = engine
        self.url = url
        self.actor = actor
        self.dialect = engine.dialect.name

    @classmethod
    def open(cls, url: str, *, actor: str) -> Ledger:
        """Connect to (and create or migrate) the metadata store at ``url``.

        Args:
            url: a SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
            actor: recorded on every event this instance appends.

        Raises:
            LedgerError: if the store cannot be reached or migrated.
        """
        url = _normalize_url(url)
        if url.startswith("sqlite"):
            db_path = url.split("///", 1)[1] if "///" in url else ""
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 60})
            _configure_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        with _mapped_errors(url):
            ensure_schema(engine)
        return cls(engine, url, actor=actor)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------
    @contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        writer = self.engine.execution_options(pipetrail_write=True)
        with _mapped_errors(self.url), writer.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            yield conn

    def append(self, drafts: Sequence[EventDraft]) -> list[Event]:
        """Append events atomically, chained after the current head, and project them.

        Returns:
            The appended events with their sequence numbers and hashes.
        """
        if not drafts:
            return []
        with self._write_tx() as conn:
            head = conn.execute(_HEAD).first()
            seq, prev = (head[0], head[1]) if head is not None else (0, GENESIS_HASH)
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
                    Event(seq, ts, self.actor, str(draft.kind), draft.run_id, text_payload, prev, digest)
                )
                prev = digest
            conn.execute(
                _INSERT_EVENTS,
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
                apply_event(conn, appended_event, draft.payload)
            last = appended[-1]
            updated = conn.execute(_UPDATE_HEAD, {"head_seq": last.seq, "head_hash": last.hash})
            if updated.rowcount == 0:
                conn.execute(_INSERT_HEAD, {"id": 1, "seq": last.seq, "hash": last.hash})
        return appended

    # -- reading ---------------------------------------------------------------------
    def iter_events(self, *, from_seq: int = 1, batch: int = 5000) -> Iterator[Event]:
        """Yield events in sequence order, reading in batches."""
        cols = schema.events.c
        after = from_seq - 1
        while True:
            with _mapped_errors(self.url), self.engine.connect() as conn:
                rows = conn.execute(
                    select(schema.events).where(cols.seq > after).order_by(cols.seq).limit(batch)
                ).all()
            if not rows:
                return
            for row in rows:
                yield Event(
                    row.seq, row.ts, row.actor, row.kind, row.run_id, row.payload, row.prev_hash, row.hash
                )
            after = rows[-1].seq

    def reader(self) -> SqlAlchemyReader:
        """Return a query helper over this ledger's projections."""
        return SqlAlchemyReader(self.engine, self.url)

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
        with _mapped_errors(self.url), self.engine.connect() as conn:
            head = conn.execute(select(schema.ledger_head.c.seq, schema.ledger_head.c.hash)).first()
            beyond = _max_projection_seq(conn)
        if head is not None and (head.seq != last_seq or head.hash != prev):
            return LedgerVerifyReport(
                checked,
                min(head.seq, last_seq) + 1 if head.seq != last_seq else last_seq,
                f"the recorded head is event {head.seq} but the chain ends at {last_seq} "
                "(events were deleted from the end, or the head was edited)",
            )
        if head is None and last_seq > 0:
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
        """Empty the projections and replay every event into them; return the count."""
        count = 0
        with self._write_tx() as conn:
            for table in reversed(schema.PROJECTION_TABLES):
                conn.execute(delete(table))
        # Replay in batches, each in its own transaction under the append lock.
        batch: list[Event] = []
        for ev in self.iter_events():
            batch.append(ev)
            if len(batch) >= 2000:
                count += self._replay(batch)
                batch = []
        count += self._replay(batch)
        return count

    def _replay(self, batch: list[Event]) -> int:
        if not batch:
            return 0
        with self._write_tx() as conn:
            for ev in batch:
                apply_event(conn, ev, ev.payload)
        return len(batch)


def _max_projection_seq(conn: Connection) -> int:
    best = 0
    for column in (
        schema.runs.c.last_seq,
        schema.step_runs.c.last_seq,
        schema.artifacts.c.first_seq,
        schema.sources.c.seq,
    ):
        value = conn.execute(select(func.max(column))).scalar()
        if value is not None and value > best:
            best = int(value)
    return best


def _normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a generous busy timeout, and explicit BEGIN IMMEDIATE for write transactions."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front so the chain head they read stays the head;
        # readers use a deferred transaction and never block writers (WAL).
        immediate = conn.get_execution_options().get("pipetrail_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
