"""Auditing the whole ledger: the hash chain, and the derived tables against the events.

:func:`verify` walks every event in sequence order, re-hashing each and checking its
link to the one before (docs/adr/0002-ledger-format.md), then the recorded head. While
walking it replays the events into a private in-memory SQLite copy of the derived tables
with the very code that writes them (:func:`~pipetrail.ledger.projections.apply_event`),
and compares that copy with the stored tables row by row: a row that differs, is missing
or is extra is a :class:`~pipetrail.ledger.trusted.DerivedRowProblem` naming its table
and key. The replay runs on SQLite whatever the backend: the projection SQL is portable,
and SQLite in memory is the cheapest place to run it.

:func:`rebuild` does the same under the write lock and rewrites exactly the rows that
disagree, in the same transaction; it refuses when the chain itself is broken.

Both read in one snapshot, so events appended meanwhile do not look like tampering.
The schema module (SQLAlchemy) is imported only to create the in-memory copy.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.errors import TamperedLedgerError
from pipetrail.ledger.driver import Driver
from pipetrail.ledger.events import GENESIS_HASH, Event
from pipetrail.ledger.merkle_store import TreeCheck
from pipetrail.ledger.projections import apply_event
from pipetrail.ledger.trusted import DerivedRowProblem

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "LedgerVerifyReport",
    "RebuildReport",
    "iter_events",
    "rebuild",
    "verify",
]

_EVENTS_AFTER = (
    "SELECT seq, ts, actor, kind, run_id, payload, prev_hash, hash FROM events "
    "WHERE seq > :after ORDER BY seq LIMIT :limit"
)


@dataclass(frozen=True)
class LedgerVerifyReport:
    """Outcome of :meth:`Ledger.verify <pipetrail.ledger.ledger.Ledger.verify>`.

    Attributes:
        checked: how many events were re-hashed.
        first_bad_seq: the first sequence number that fails, or None when the chain holds.
        reason: what failed there.
        derived_checked: whether the derived tables were compared with the events (not
            when the chain is broken, nor when not asked for).
        derived_rows: how many derived rows the events project.
        derived: every derived row that disagrees with the events.
    """

    checked: int
    first_bad_seq: int | None = None
    reason: str = ""
    derived_checked: bool = False
    derived_rows: int = 0
    derived: tuple[DerivedRowProblem, ...] = field(default=())

    @property
    def chain_ok(self) -> bool:
        """Whether the hash chain and the head verified."""
        return self.first_bad_seq is None

    @property
    def ok(self) -> bool:
        """Whether the chain verified and no derived row disagrees with the events."""
        return self.first_bad_seq is None and not self.derived


@dataclass(frozen=True)
class RebuildReport:
    """Outcome of :meth:`Ledger.rebuild_projections`.

    Attributes:
        events: how many events were replayed.
        rows: how many derived rows the events project.
        changed: the rows that were rewritten, added or removed (what they were before).
    """

    events: int
    rows: int
    changed: tuple[DerivedRowProblem, ...]


def iter_events(db: Driver, *, from_seq: int = 1, batch: int = 5000) -> Iterator[Event]:
    """Yield events in sequence order, reading in batches."""
    after = from_seq - 1
    while True:
        rows = db.fetch(_EVENTS_AFTER, {"after": after, "limit": batch})
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


class _Replica:
    """The derived tables, replayed from the events into a private SQLite database.

    The database is SQLite's temporary on-disk kind (an empty file name): beyond its page
    cache it spills to a temp file, so a large ledger's rows are not all held in memory;
    it vanishes on close. The stored tables are copied into it (``stored_<table>``) and
    compared there with SQL, in batches, for the same reason.
    """

    def __init__(self) -> None:
        from sqlalchemy.dialects import sqlite
        from sqlalchemy.schema import CreateTable

        from pipetrail.ledger.schema import PROJECTION_TABLES

        self.db = Driver(sqlite3.connect(""), "sqlite")
        self.db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self.tables: dict[str, tuple[list[str], list[str]]] = {}
        for table in PROJECTION_TABLES:
            ddl = str(CreateTable(table).compile(dialect=sqlite.dialect()))
            self.db.execute(ddl)
            self.db.execute(ddl.replace(f"TABLE {table.name} ", f"TABLE stored_{table.name} ", 1))
            columns = [c.name for c in table.columns]
            keys = [c.name for c in table.primary_key.columns]
            self.tables[table.name] = (columns, keys)
        self.db.execute("BEGIN")  # one transaction for the whole replay: much faster
        # (table, key, problem, the row the events give or None), from the last compare
        self._fixes: list[tuple[str, tuple[Any, ...], str, tuple[Any, ...] | None]] = []

    def apply(self, event: Event, payload: dict[str, Any]) -> None:
        apply_event(self.db, event, payload)

    def _copy_stored(self, db: Driver, table: str) -> None:
        columns, _ = self.tables[table]
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        insert = f"INSERT INTO stored_{table} ({names}) VALUES ({marks})"  # noqa: S608
        self.db.execute(f"DELETE FROM stored_{table}")  # noqa: S608 - schema names
        for batch in db.batches(f"SELECT {names} FROM {table}"):  # noqa: S608 - schema names
            self.db.connection.executemany(insert, batch)

    def compare(self, db: Driver) -> tuple[int, list[DerivedRowProblem]]:
        """Compare ``db``'s derived tables with the replica: (rows expected, problems)."""
        problems: list[DerivedRowProblem] = []
        self._fixes = []
        total = 0
        for table, (columns, keys) in self.tables.items():
            self._copy_stored(db, table)
            total += int(self.db.rows(f"SELECT COUNT(*) FROM {table}")[0][0])  # noqa: S608
            width = len(columns)
            first = columns.index(keys[0])
            at = [columns.index(k) for k in keys]
            on = " AND ".join(f"e.{k} = s.{k}" for k in keys)
            both = ", ".join([*(f"e.{c}" for c in columns), *(f"s.{c}" for c in columns)])
            differ = " OR ".join(f"e.{c} IS NOT s.{c}" for c in columns)
            # A full outer join, written as two left joins (SQLite before 3.39 has none).
            found = self.db.rows(
                f"SELECT {both} FROM {table} e LEFT JOIN stored_{table} s ON {on} "  # noqa: S608
                f"WHERE s.{keys[0]} IS NULL OR {differ} "
                f"UNION ALL SELECT {both} FROM stored_{table} s LEFT JOIN {table} e ON {on} "
                f"WHERE e.{keys[0]} IS NULL"
            )
            keyed = []
            for row in found:
                want = row[:width] if row[first] is not None else None
                have = row[width:] if row[width + first] is not None else None
                side = row[:width] if want is not None else row[width:]
                keyed.append((tuple(side[i] for i in at), want, have))
            keyed.sort(key=lambda item: tuple(str(part) for part in item[0]))
            for key, want, have in keyed:
                name = ", ".join(str(part) for part in key)
                if have is None:
                    problem = DerivedRowProblem(table, name, "missing")
                elif want is None:
                    problem = DerivedRowProblem(table, name, "extra")
                else:
                    differing = tuple(
                        (c, h, w)
                        for c, h, w in zip(columns, have, want, strict=True)
                        if not _same(h, w)
                    )
                    if not differing:
                        continue
                    problem = DerivedRowProblem(table, name, "differs", differing)
                problems.append(problem)
                self._fixes.append((table, key, problem.problem, want))
            self.db.execute(f"DELETE FROM stored_{table}")  # noqa: S608 - schema names
        return total, problems

    def repair(self, db: Driver) -> None:
        """Rewrite the rows the last :meth:`compare` found so ``db`` equals the replica."""
        for table, (columns, keys) in self.tables.items():
            mine = [(key, problem, want) for t, key, problem, want in self._fixes if t == table]
            where = " AND ".join(f"{k} = :{k}" for k in keys)
            db.executemany(
                f"DELETE FROM {table} WHERE {where}",  # noqa: S608 - schema names
                [dict(zip(keys, key, strict=True)) for key, problem, _ in mine
                 if problem != "missing"],
            )  # fmt: skip
            marks = ", ".join(f":{c}" for c in columns)
            db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                [dict(zip(columns, want, strict=True)) for _, _, want in mine if want is not None],
            )

    def close(self) -> None:
        self.db.close()


_CACHE_KIB = 65536  # the replica's page cache; beyond it, pages go to its temp file


def _same(stored: Any, expected: Any) -> bool:
    # Text must be text and numbers numbers: '5' is not 5 (a driver may widen 5 to 5.0).
    if type(stored) is not type(expected) and not (
        isinstance(stored, int | float) and isinstance(expected, int | float)
    ):
        return False
    return bool(stored == expected)


@dataclass
class _Walk:
    """The chain walk's state: where it is and what failed."""

    expected_seq: int = 1
    prev: str = GENESIS_HASH
    checked: int = 0
    failure: tuple[int, str] | None = None

    def step(self, ev: Event) -> dict[str, Any] | None:
        """Check one event; return its payload, or None (and record why) if it fails."""
        if ev.seq != self.expected_seq:
            self.failure = (
                self.expected_seq,
                f"event {self.expected_seq} is missing (the next stored event is {ev.seq})",
            )
            return None
        if ev.prev_hash != self.prev:
            self.failure = (ev.seq, "its prev_hash does not match the hash of the event before it")
            return None
        recomputed = ev.computed_hash()
        if recomputed != ev.hash:
            self.failure = (ev.seq, "its content does not match its hash (the row was edited)")
            return None
        try:
            payload = json.loads(ev.payload_text)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self.failure = (ev.seq, "its payload is not a JSON object")
            return None
        self.prev = ev.hash
        self.expected_seq += 1
        self.checked += 1
        return payload


def _max_projection_seq(db: Driver) -> int:
    row = db.fetch(
        "SELECT (SELECT MAX(last_seq) FROM runs) AS a, (SELECT MAX(last_seq) FROM step_runs) AS b, "
        "(SELECT MAX(first_seq) FROM artifacts) AS c, (SELECT MAX(seq) FROM sources) AS d, "
        "(SELECT MAX(seq) FROM run_tags) AS e, (SELECT MAX(seq) FROM run_notes) AS f, "
        "(SELECT MAX(seq) FROM run_deletions) AS g"
    )[0]
    return max(int(v) for v in row.values() if v is not None) if any(row.values()) else 0


def _end_of_chain(db: Driver, walk: _Walk) -> tuple[int, str] | None:
    """Check the recorded head, and projections pointing past the last event."""
    last_seq = walk.expected_seq - 1
    head = db.fetch("SELECT seq, hash FROM ledger_head WHERE id = 1")
    if head and (head[0]["seq"] != last_seq or head[0]["hash"] != walk.prev):
        head_seq = int(head[0]["seq"])
        return (
            min(head_seq, last_seq) + 1 if head_seq != last_seq else last_seq,
            f"the recorded head is event {head_seq} but the chain ends at {last_seq} "
            "(events were deleted from the end, or the head was edited)",
        )
    if not head and last_seq > 0:
        return (1, "the ledger head row is missing")
    beyond = _max_projection_seq(db)
    if beyond > last_seq:
        return (
            last_seq + 1,
            f"projections reference event {beyond} but the chain ends at {last_seq} "
            "(events were deleted from the end)",
        )
    return None


def _walk(db: Driver, replica: _Replica | None, tree: TreeCheck | None = None) -> _Walk:
    walk = _Walk()
    unprojectable: tuple[int, str] | None = None
    for ev in iter_events(db):
        payload = walk.step(ev)
        if payload is None:
            return walk
        if tree is not None:
            tree.add(ev.hash)
        if replica is not None and unprojectable is None:
            try:
                replica.apply(ev, payload)
            except (KeyError, TypeError, ValueError, AttributeError, sqlite3.Error) as exc:
                # pipetrail projects every event in the transaction that appends it, so an
                # event its projection code rejects was not appended by pipetrail.
                unprojectable = (
                    ev.seq,
                    f"its {ev.kind} payload cannot be projected ({type(exc).__name__}: {exc}); "
                    "pipetrail did not write this event",
                )
    walk.failure = _end_of_chain(db, walk) or unprojectable
    return walk


def verify(db: Driver, *, derived: bool = True) -> LedgerVerifyReport:
    """Verify the chain and (``derived``) the derived tables, in one read snapshot."""
    replica = _Replica() if derived else None
    try:
        with db.snapshot():
            tree = TreeCheck(db) if derived else None
            walk = _walk(db, replica, tree)
            if walk.failure is not None:
                seq, reason = walk.failure
                return LedgerVerifyReport(walk.checked, seq, reason)
            if replica is None or tree is None:
                return LedgerVerifyReport(walk.checked)
            rows, problems = replica.compare(db)
            problems += tree.finish()  # the Merkle tree's nodes (merkle_nodes)
    finally:
        if replica is not None:
            replica.close()
    return LedgerVerifyReport(
        walk.checked, derived_checked=True, derived_rows=rows, derived=tuple(problems)
    )


def rebuild(db: Driver) -> RebuildReport:
    """Rewrite the derived rows that disagree with the events, under the write lock.

    Raises:
        TamperedLedgerError: the chain is broken; nothing was changed.
    """
    replica = _Replica()
    try:
        with db.write():
            tree = TreeCheck(db)
            walk = _walk(db, replica, tree)
            if walk.failure is not None:
                seq, reason = walk.failure
                raise TamperedLedgerError(
                    f"the ledger's hash chain is broken at sequence {seq}: {reason}; the "
                    "derived tables were not rebuilt, since the events they would come from "
                    "were altered. Run `pipetrail audit verify` and restore the ledger from a "
                    "backup",
                    seq=seq,
                )
            rows, problems = replica.compare(db)
            replica.repair(db)
            problems += tree.finish()  # the Merkle tree's nodes (merkle_nodes)
            tree.repair(db)
    finally:
        replica.close()
    return RebuildReport(walk.checked, rows, tuple(problems))
