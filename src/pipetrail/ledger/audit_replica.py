"""The derived tables replayed from the events, for ``audit verify`` and ``audit rebuild``.

:class:`Replica` holds a private SQLite copy of the derived tables, fed by the very code
that writes them (:func:`~pipetrail.ledger.projections.apply_event`), and compares it
with the stored tables row by row (see :mod:`pipetrail.ledger.audit`).

When the ledger is a SQLite file, the replica attaches it read-only and compares with
its tables in place, with one join per table; otherwise (PostgreSQL, or a ledger that
moved on meanwhile, see :meth:`Replica.compare`) the stored rows are first copied into
the replica.

With ``model``, nothing is replayed into SQLite: a
:class:`~pipetrail.ledger.audit_model.TableModel` builds the rows of every derived table
in Python, and they are compared with the stored rows. It only says
whether every row is the same; when not (or when it cannot model an event),
:meth:`Replica.compare` raises :class:`~pipetrail.ledger.audit_model.Unmodelled`, and the
caller replays everything into a replica without a model, which names the rows.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from pipetrail.hashing.canonical import member_json
from pipetrail.ledger.audit_artifacts import ArtifactMatch
from pipetrail.ledger.audit_columns import TABLES
from pipetrail.ledger.audit_model import MODEL_KINDS, TableModel, Unmodelled
from pipetrail.ledger.driver import Driver
from pipetrail.ledger.events import Event, EventKind
from pipetrail.ledger.projection_batch import apply_events
from pipetrail.ledger.projections import apply_event, has_projection
from pipetrail.ledger.sqlite_rows import sqlite_batches
from pipetrail.ledger.trusted import DerivedRowProblem

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Sequence


class _EventRow(NamedTuple):
    """An event's stored fields, named as :class:`Event`'s: what the projections read."""

    seq: int
    ts: str
    actor: str
    kind: str
    run_id: str | None
    payload_text: str
    prev_hash: str
    hash: str


__all__ = ["MMAP_BYTES", "UNPROJECTABLE", "Replica", "ledger_file"]

# What a projection raises on a payload pipetrail did not write (OverflowError: an integer
# SQLite cannot hold, such as a size beyond 64 bits).
UNPROJECTABLE = (KeyError, TypeError, ValueError, AttributeError, OverflowError, sqlite3.Error)

_STORED = "ledger"  # the schema name the stored ledger file is attached under
# How much of a SQLite ledger's file the audit reads through a memory map (SQLite caps it
# at its build's maximum, 2 GiB by default): its pages are then read where the OS caches
# them rather than copied out by a system call each.
MMAP_BYTES = 1 << 40


class _ReplicaDriver(Driver):
    """The replica's driver: its texts are SQLite's own, run on the connection directly.

    The replay runs statements by the hundred thousand; :class:`Driver` makes a cursor and
    looks the text up per call, which here costs about as much as SQLite's own work.
    """

    def execute(self, text: str, params: dict[str, Any] | None = None) -> int:
        return int(self.connection.execute(text, params or {}).rowcount)

    def executemany(self, text: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.connection.executemany(text, rows)


def ledger_file(db: Driver | None) -> str | None:
    """The file of a SQLite ledger (None for PostgreSQL, or a database in memory)."""
    if db is None or db.dialect != "sqlite":
        return None
    for _, name, file in db.rows("PRAGMA database_list"):
        if name == "main" and file:
            return str(file)
    return None


class Replica:
    """The derived tables, replayed from the events into a private SQLite database.

    The database is SQLite's temporary on-disk kind (an empty file name): beyond its page
    cache it spills to a temp file, so a large ledger's rows are not all held in memory;
    it vanishes on close. A SQLite ledger's file is attached read-only (``ledger``) and
    compared in place; other stored tables are copied into it (``stored_<table>``) and
    compared there with SQL, in batches, for the same reason.

    Args:
        stored: the ledger whose tables will be compared; when it is a SQLite file, the
            replica attaches that file.
        file: the SQLite file to attach, when there is no ``stored`` driver.
        model: build the rows of the modelled tables in Python instead of replaying them
            (see the module docstring).
        typed: with ``model``, check that the stored number columns hold their own types
            (False: another process does, see :meth:`check_types`).
        stream: with ``model`` and an attached file, compare the rows of
            :data:`~pipetrail.ledger.audit_model.STREAMED` as the events go (the model
            then holds few of them at once); the file must show the head the events are
            read up to (:meth:`shows`) before the first is modelled.
    """

    def __init__(
        self,
        stored: Driver | None = None,
        *,
        file: str | None = None,
        model: bool = False,
        typed: bool = True,
        stream: bool = False,
    ) -> None:
        self.db: Driver = _ReplicaDriver(
            sqlite3.connect("file:", uri=True, cached_statements=512), "sqlite"
        )
        self.db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self.attached = False
        file = file or ledger_file(stored)
        if file is not None:
            uri = "file:" + urllib.parse.quote(file) + "?mode=ro"
            try:
                self.db.execute(f"ATTACH DATABASE :uri AS {_STORED}", {"uri": uri})
                self.db.rows(f"PRAGMA {_STORED}.mmap_size={MMAP_BYTES}")  # see MMAP_BYTES
                self.attached = True
            except sqlite3.Error:
                pass  # not readable as a file of its own: the stored rows are copied instead
        self.tables = {name: (list(t.names), list(t.keys)) for name, t in TABLES.items()}
        # Streaming (see TableModel): the stored tables are read in the replica's own
        # snapshot of the attached file, as the events are.
        reader = self._read_stored if stream and self.attached else None
        self.model = TableModel(reader) if model else None
        self.match: ArtifactMatch | None = None  # see match_artifacts()
        self.typed = typed
        if self.model is None:  # with a model, nothing is written into the replica
            self._create_tables()
        self.db.execute("BEGIN")  # one transaction for the whole replay: much faster
        # (table, key, problem, the row the events give or None), from the last compare
        self._fixes: list[tuple[str, tuple[Any, ...], str, tuple[Any, ...] | None]] = []

    def _create_tables(self) -> None:
        """Create the replica's derived tables, and the ``stored_`` copies, as the schema's."""
        from sqlalchemy.dialects import sqlite
        from sqlalchemy.schema import CreateTable

        from pipetrail.ledger.schema import PROJECTION_TABLES

        for table in PROJECTION_TABLES:
            ddl = str(CreateTable(table).compile(dialect=sqlite.dialect()))
            self.db.execute(ddl)
            self.db.execute(ddl.replace(f"TABLE {table.name} ", f"TABLE stored_{table.name} ", 1))

    def match_artifacts(self, db: Driver) -> Callable[[Sequence[Any]], bool] | None:
        """Match ``db``'s stored ``artifacts`` with the artifact events as the walk goes.

        With a model, on a SQLite ledger in the snapshot the walk reads: the stored rows
        are read beside the events, and each artifact event whose row is the next stored
        row is taken (:class:`~pipetrail.ledger.audit_artifacts.ArtifactMatch`); when every
        one was, :meth:`compare` does not read the table again.

        Returns:
            What takes a verified artifact event (True: matched, nothing more to do with
            it), or None (no model, or not SQLite).
        """
        if self.model is None or db.dialect != "sqlite":
            return None
        try:
            self.match = ArtifactMatch.reading(self.model, db.connection)
        except sqlite3.Error:
            return None  # compared after the walk, as any other table
        return self.match.take

    def _read_stored(self, table: str, key: Any) -> Iterator[list[tuple[Any, ...]]]:
        """The attached file's rows of ``table`` in its order (``key`` None), or under ``key``.

        A list of rows at a time; the whole table is read with each row handed over whole
        (:func:`~pipetrail.ledger.sqlite_rows.sqlite_batches`).
        """
        assert self.model is not None  # noqa: S101 - only a model reads them
        layout = self.model.layout[table]
        connection: sqlite3.Connection = self.db.connection
        if key is None:
            columns = ", ".join(layout.columns)
            return sqlite_batches(connection, columns, f"FROM {_STORED}.{table}", size=_CHUNK)
        read = layout.select + f"{_STORED}.{table}"
        where = " AND ".join(f"{name} = ?" for name in layout.keys)
        found = connection.execute(f"{read} WHERE {where}", key if len(layout.keys) > 1 else (key,))
        return iter([found.fetchall()])

    def apply(self, event: Event, payload: dict[str, Any]) -> None:
        """Project one event into the replica."""
        apply_event(self.db, event, payload)

    def apply_many(self, events: Sequence[tuple[Event, dict[str, Any]]], *, plain: bool) -> None:
        """Project events in sequence order, grouped by statement; all of them, or none.

        The events are cut after each run's end into the batches an append projects
        (:func:`~pipetrail.ledger.projection_batch.apply_events`, which leaves the tables
        as event-by-event projection does, and projects one by one a batch it cannot
        group). ``plain``: orjson wrote every payload (see
        :func:`~pipetrail.ledger.chain_check.parse_plain_payload`), so the canonical JSON
        of their members is orjson's, unchecked.

        Raises:
            Exception: whatever the projection raised; the replica is then as before.
        """
        encode = member_json if plain else None
        self.db.execute("SAVEPOINT replay")
        try:
            for batch in _by_run(events):
                apply_events(self.db, batch, encode)
        except BaseException:
            self.db.execute("ROLLBACK TO replay")
            self.db.execute("RELEASE replay")
            raise
        self.db.execute("RELEASE replay")

    def replay(
        self, good: Sequence[tuple[tuple[Any, ...], dict[str, Any] | None]], *, plain: bool
    ) -> tuple[int, str] | None:
        """Project verified event rows (payload None: left out); the first that cannot be.

        The events go in grouped by statement (:meth:`apply_many`); when that fails, the
        replica is as before it and they go again one by one, to name the event.

        Returns:
            None, or the sequence number of the first event that cannot be projected and
            why (the events after it are not projected).
        """
        if self.model is not None:  # nothing is replayed: the model follows every event
            # The model reads the stored rows as they are (their first fields are seq, ts,
            # actor and kind, see TableModel.add).
            kinds = {row[3] for row, payload in good if payload is not None}
            if kinds.issubset(MODEL_KINDS):
                modelled = [item for item in good if item[1] is not None]
            else:
                modelled = [
                    item for item in good if item[1] is not None and item[0][3] in MODEL_KINDS
                ]
                if self.model.broken is None and any(map(has_projection, kinds - MODEL_KINDS)):
                    self.model.broken = "an event kind the model does not follow"
            self.model.add(modelled, member_json if plain else None, plain=plain)  # type: ignore[arg-type]
            return None
        # The stored fields under an event's names (building each Event costs more).
        made = _EventRow._make
        events = [(made(row), payload) for row, payload in good if payload is not None]
        try:
            self.apply_many(events, plain=plain)  # type: ignore[arg-type]
        except UNPROJECTABLE:
            pass
        else:
            return None
        for ev, payload in events:
            try:
                self.apply(ev, payload)  # type: ignore[arg-type]
            except UNPROJECTABLE as exc:
                # pipetrail projects every event in the transaction that appends it, so an
                # event its projection code rejects was not appended by pipetrail.
                return (
                    ev.seq,
                    f"its {ev.kind} payload cannot be projected ({type(exc).__name__}: {exc}); "
                    "pipetrail did not write this event",
                )
        return None

    def _copy_stored(self, db: Driver, table: str) -> None:
        columns, _ = self.tables[table]
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        insert = f"INSERT INTO stored_{table} ({names}) VALUES ({marks})"  # noqa: S608
        self.db.execute(f"DELETE FROM stored_{table}")  # noqa: S608 - schema names
        for batch in db.batches(f"SELECT {names} FROM {table}"):  # noqa: S608 - schema names
            self.db.connection.executemany(insert, batch)

    def shows(self, head: tuple[int, str] | None) -> bool:
        """Whether the attached file shows the ledger the walk read (its head is ``head``).

        The attached file is read in the replica's own transaction, a snapshot of its own:
        when its head is the one the chain walk ended at, it holds the same events, and
        the derived rows written with them. Otherwise (events were appended meanwhile) the
        stored rows are read in the walk's snapshot and copied, as for PostgreSQL.
        """
        if not self.attached or head is None:
            return False
        try:
            found = self.db.rows(f"SELECT seq, hash FROM {_STORED}.ledger_head WHERE id = 1")  # noqa: S608
        except sqlite3.Error:
            return False  # attached, but not readable from here: the rows are copied
        if not found:
            return head[0] == 0
        return (found[0][0], found[0][1]) == head

    def compare(
        self,
        db: Driver | None,
        head: tuple[int, str] | None = None,
        tables: Collection[str] | None = None,
    ) -> tuple[int, list[DerivedRowProblem]]:
        """Compare ``db``'s derived tables with the replica: (rows expected, problems).

        Args:
            db: the stored ledger, in the snapshot the events were read from (None: the
                attached file, which must show ``head``).
            head: the last event replayed (sequence number and hash; 0 and the genesis
                hash for none): the attached file is compared in place when it shows it.
            tables: only these tables (default: all).

        Raises:
            Unmodelled: a modelled table is not exactly what the events give, or the
                model could not follow the events; replay into a replica without one.
        """
        problems: list[DerivedRowProblem] = []
        self._fixes = []
        total = 0
        in_place = self.shows(head)
        if db is None and not in_place:
            raise ValueError("the attached ledger does not show the head the replay read")
        for table, (columns, keys) in self.tables.items():
            if tables is not None and table not in tables:
                continue
            if self.model is not None:  # a table it does not build: the replay decides
                if table not in self.model.layout:
                    raise Unmodelled(f"{table}: a derived table the model does not build")
                total += self._compare_model(table, db if not in_place else None)
                continue
            if in_place or db is None:
                stored = f"{_STORED}.{table}"
            else:
                stored = f"stored_{table}"
                self._copy_stored(db, table)
            total += int(self.db.rows(f"SELECT COUNT(*) FROM main.{table}")[0][0])  # noqa: S608
            width = len(columns)
            first = columns.index(keys[0])
            at = [columns.index(k) for k in keys]
            on = " AND ".join(f"e.{k} = s.{k}" for k in keys)
            both = ", ".join([*(f"e.{c}" for c in columns), *(f"s.{c}" for c in columns)])
            differ = " OR ".join(f"e.{c} IS NOT s.{c}" for c in columns)
            # A full outer join, written as two left joins (SQLite before 3.39 has none).
            found = self.db.rows(
                f"SELECT {both} FROM main.{table} e LEFT JOIN {stored} s ON {on} "  # noqa: S608
                f"WHERE s.{keys[0]} IS NULL OR {differ} "
                f"UNION ALL SELECT {both} FROM {stored} s LEFT JOIN main.{table} e ON {on} "
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
            if not in_place:
                self.db.execute(f"DELETE FROM stored_{table}")  # noqa: S608 - schema names
        return total, problems

    def _compare_model(self, table: str, db: Driver | None) -> int:
        """Compare a modelled table (``db`` None: the attached file); its row count."""
        assert self.model is not None  # noqa: S101 - only called with a model
        if self.model.broken is not None:
            raise Unmodelled(self.model.broken)
        if table == "artifacts" and self.match is not None and self.match.complete():
            return self.match.count  # every row matched its event during the walk
        select = self.model.layout[table].select
        same: bool | None
        if db is None and self.model.streams(table):
            same = self.model.finish(table)
            if same and self.typed:
                wrong = self.model.typed_sql(table).format(table=f"{_STORED}.{table}")
                same = not self.db.rows(wrong)[0][0]
        elif db is None:
            read = select + f"{_STORED}.{table}"
            cursor = self.db.connection.execute(read)
            try:  # a chunk at a time: the stored rows are not all held with the model's
                same = self.model.same_in_order(table, iter(partial(cursor.fetchmany, _CHUNK), []))
            finally:
                cursor.close()
            if same is None:  # not in the model's order: by key
                same = self.model.compare(table, self.db.connection.execute(read).fetchall())
            if same and self.typed:
                wrong = self.model.typed_sql(table).format(table=f"{_STORED}.{table}")
                same = not self.db.rows(wrong)[0][0]
        else:
            stored = [row for batch in db.batches(select + table, size=5000) for row in batch]
            same = self.model.compare(table, stored)
            same = same and (not self.typed or self.model.typed(table, stored))
        if not same:
            raise Unmodelled(f"{table}: the stored rows are not the ones the events give")
        return self.model.count(table)

    def check_types(self, db: Driver, tables: Collection[str]) -> None:
        """Check the number types of modelled ``tables`` stored in ``db`` (a SQLite ledger).

        The part of the comparison a replica made with ``typed=False`` leaves out (see
        :meth:`~pipetrail.ledger.audit_model.TableModel.typed_sql`), run by another
        process in a snapshot showing the same head.

        Raises:
            Unmodelled: a number column holds a value of another type.
        """
        assert self.model is not None  # noqa: S101 - only called with a model
        for table in tables:
            if db.rows(self.model.typed_sql(table).format(table=table))[0][0]:
                raise Unmodelled(f"{table}: a number stored with another type than its column's")

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
        """Drop the replica (its temporary file goes with it)."""
        if self.match is not None:
            self.match.stop()
        self.db.close()


_RUN_ENDS = frozenset(
    {
        EventKind.RUN_COMPLETED,
        EventKind.RUN_FAILED,
        EventKind.RUN_CRASHED,
        EventKind.RUN_INTERRUPTED,
    }
)


def _by_run(
    events: Sequence[tuple[Event, dict[str, Any]]],
) -> Iterator[Sequence[tuple[Event, dict[str, Any]]]]:
    """Cut events after each run's end (a batch ends with its run-ending events)."""
    start, last = 0, len(events) - 1
    for at, (event, _) in enumerate(events):
        if event.kind in _RUN_ENDS and (at == last or events[at + 1][0].kind not in _RUN_ENDS):
            yield events[start : at + 1]
            start = at + 1
    if start <= last:
        yield events[start:]


_CACHE_KIB = 65536  # the replica's page cache; beyond it, pages go to its temp file
_CHUNK = 5000  # stored rows read at a time when compared with the model's


def _same(stored: Any, expected: Any) -> bool:
    # Text must be text and numbers numbers: '5' is not 5 (a driver may widen 5 to 5.0).
    if type(stored) is not type(expected) and not (
        isinstance(stored, int | float) and isinstance(expected, int | float)
    ):
        return False
    return bool(stored == expected)
