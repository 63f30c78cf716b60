"""The derived tables replayed from the events, for ``audit verify`` and ``audit rebuild``.

:class:`Replica` holds a private SQLite copy of the derived tables, fed by the very code
that writes them (:func:`~pipetrail.ledger.projections.apply_event`), and compares it
with the stored tables row by row (see :mod:`pipetrail.ledger.audit`).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from pipetrail.ledger.driver import Driver
from pipetrail.ledger.projections import apply_event
from pipetrail.ledger.trusted import DerivedRowProblem

if TYPE_CHECKING:
    from pipetrail.ledger.events import Event

__all__ = ["Replica"]


class Replica:
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
        """Project one event into the replica."""
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
        """Drop the replica (its temporary file goes with it)."""
        self.db.close()


_CACHE_KIB = 65536  # the replica's page cache; beyond it, pages go to its temp file


def _same(stored: Any, expected: Any) -> bool:
    # Text must be text and numbers numbers: '5' is not 5 (a driver may widen 5 to 5.0).
    if type(stored) is not type(expected) and not (
        isinstance(stored, int | float) and isinstance(expected, int | float)
    ):
        return False
    return bool(stored == expected)
