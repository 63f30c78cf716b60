"""A thin layer over one DB-API connection: pipetrail's SQL conventions on any backend.

SQL texts are SQLAlchemy ``text()`` constructs in all but name: ``:name`` parameters.
On SQLite that is the DB-API driver's own style (``sqlite3`` "named"), so a text runs as
written. On PostgreSQL (psycopg 3) each distinct text is compiled once by SQLAlchemy's
compiler for the psycopg dialect (``text(...).compile(dialect=...)``: ``%(name)s``
parameters, ``%`` doubled) and the compiled string is cached, so the hot path pays a dict
look-up, not a compilation. The connection runs in autocommit mode and transactions are
explicit: :meth:`Driver.write` opens one that holds the ledger's write lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``BEGIN`` plus a transaction-scoped advisory lock), so
reads never leave a transaction open.

Why compiled strings on the DB-API cursor rather than ``Connection.execute(text(...))``,
and why SQLite does not import SQLAlchemy for this: see
docs/adr/0016-sql-through-sqlalchemy.md (figures from benchmarks/ledger_sql.py). Schema
and migrations stay in SQLAlchemy/Alembic.
"""

from __future__ import annotations

import operator
import re
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import TracebackType

__all__ = ["APPEND_LOCK_KEY", "Driver", "abandon_inherited", "compile_text", "positional_text"]

# Arbitrary constant naming pipetrail's append lock among PostgreSQL advisory locks.
APPEND_LOCK_KEY = 0x70697065  # "pipe"

# Connections a forked child inherited from its parent. The child must neither use nor
# close them: closing a SQLite connection may checkpoint or unlock on the parent's
# behalf, and closing a PostgreSQL one ends the parent's session. Keeping a reference
# stops the garbage collector from closing them; the child opens its own.
_INHERITED: list[Any] = []


def abandon_inherited(connection: Any) -> None:
    """Forget a connection a forked child inherited, without closing it."""
    _INHERITED.append(connection)


# Compiled PostgreSQL texts, shared by every driver of the process. The ledger's texts
# are a bounded set of literals; the bound only guards against a caller building texts
# without end.
_COMPILED: dict[str, str] = {}
_COMPILED_MAX = 4096
_COMPILE_LOCK = threading.Lock()
# Rows fetched at a time by Driver.whole_rows.
_WHOLE = 1000


def compile_text(text: str, dialect: str) -> str:
    """Return ``text`` (``:name`` parameters) as the DB-API driver of ``dialect`` takes it.

    SQLite takes the text as it is. For PostgreSQL, SQLAlchemy compiles
    ``sqlalchemy.text(text)`` for its psycopg dialect, once per distinct text.
    """
    if dialect != "postgresql":
        return text
    found = _COMPILED.get(text)
    if found is None:
        found = str(_text(text).compile(dialect=_postgresql_dialect()))
        with _COMPILE_LOCK:
            if len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.clear()
            _COMPILED[text] = found
    return found


# ``:name`` parameters, but not ``::`` casts nor a name inside a longer word.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_POSITIONAL: dict[str, tuple[str, tuple[str, ...]] | None] = {}


def positional_text(text: str) -> tuple[str, tuple[str, ...]] | None:
    """Return ``text`` with numbered SQLite parameters, and the name each number stands for.

    ``INSERT ... VALUES (:a, :b, :a)`` gives ``INSERT ... VALUES (?1, ?2, ?1)`` and
    ``("a", "b")``. None for a text with a quote (a ``:name`` inside a literal is not a
    parameter) or without parameters: it is bound by name as written. Remembered per
    text, like the compiled PostgreSQL texts.
    """
    try:
        return _POSITIONAL[text]
    except KeyError:
        pass
    found: tuple[str, tuple[str, ...]] | None = None
    if "'" not in text and '"' not in text:
        names: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"?{names.setdefault(match.group(1), len(names) + 1)}"

        sql = _NAMED.sub(number, text)
        if names:
            found = (sql, tuple(names))
    with _COMPILE_LOCK:
        if len(_POSITIONAL) >= _COMPILED_MAX:
            _POSITIONAL.clear()
        _POSITIONAL[text] = found
    return found


# How many parameters a read has for it to be bound by position (see Driver.rows).
_POSITIONAL_FROM = 16

# (text, columns) -> the positional text, and what puts a row's values in its order
# (None when they are in it already); None for a text bound by name.
_ORDERS: dict[tuple[str, tuple[str, ...]], tuple[str, Any] | None] = {}


def _value_order(text: str, columns: tuple[str, ...]) -> tuple[str, Any] | None:
    """The positional text of ``text`` and how to order values given in ``columns``."""
    key = (text, columns)
    try:
        return _ORDERS[key]
    except KeyError:
        pass
    found: tuple[str, Any] | None = None
    positional = positional_text(text)
    if positional is not None and set(positional[1]) <= set(columns):
        sql, names = positional
        if names == columns:
            found = (sql, None)
        elif len(names) > 1:
            found = (sql, operator.itemgetter(*(columns.index(n) for n in names)))
        else:
            at = columns.index(names[0])
            found = (sql, lambda row: (row[at],))
    with _COMPILE_LOCK:
        if len(_ORDERS) >= _COMPILED_MAX:
            _ORDERS.clear()
        _ORDERS[key] = found
    return found


def _text(text: str) -> Any:
    from sqlalchemy import text as sql_text

    return sql_text(text)


_DIALECTS: dict[str, Any] = {}


def _postgresql_dialect() -> Any:
    found = _DIALECTS.get("postgresql")
    if found is None:
        from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

        # SQLAlchemy's dialect constructors carry no annotations.
        found = _DIALECTS["postgresql"] = PGDialect_psycopg()  # type: ignore[no-untyped-call]
    return found


class Driver:
    """Executes pipetrail's SQL texts on one DB-API connection (not thread-safe).

    Args:
        connection: a DB-API connection (``sqlite3`` or psycopg 3).
        dialect: ``"sqlite"`` or ``"postgresql"``.
        errors: exception classes of the driver to translate (passed to ``on_error``).
    """

    def __init__(self, connection: Any, dialect: str) -> None:
        self.connection = connection
        self.dialect = dialect
        self._in_write = False
        if dialect == "postgresql":
            connection.autocommit = True
        else:
            connection.isolation_level = None  # autocommit; transactions are explicit

    def sql(self, text: str) -> str:
        """Return ``text`` in the driver's parameter style (see :func:`compile_text`)."""
        return compile_text(text, self.dialect)

    def fetch(self, text: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query; return its rows as dicts."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self.sql(text), params or {})
            names = [col[0] for col in cursor.description]
            # A row has one value per name: zip's length check would only cost time.
            return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def rows(self, text: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query; return its rows as tuples (cheaper than dicts for many rows).

        On SQLite a query with many parameters (an ``IN`` list) binds them by position
        when the text allows it (see :func:`positional_text`): SQLite finds each named
        parameter by a search through the names, which makes a query of 500 of them cost
        four times its positional twin. A query with a few binds them by name, as their
        reordering would cost more than it saves.
        """
        cursor = self.connection.cursor()
        try:
            if params and len(params) >= _POSITIONAL_FROM and self.dialect == "sqlite":
                found = positional_text(text)
                if found is not None and all(name in params for name in found[1]):
                    cursor.execute(found[0], [params[name] for name in found[1]])
                    return [tuple(row) for row in cursor.fetchall()]
            cursor.execute(self.sql(text), params or {})
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def whole_rows(
        self, columns: str, rest: str, params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """The rows of ``SELECT {columns} {rest}`` as tuples, as :meth:`rows` returns them.

        On SQLite each row is handed over whole by a function of the query
        (:func:`~pipetrail.ledger.sqlite_rows.sqlite_batches`), which costs less for rows
        of many columns: ``columns`` must then be plain expressions (no ``AS``) and the
        query must make its rows in the order it returns them (no sort; the plans of
        the queries read this way are checked in tests/unit/ledger/test_sqlite_rows.py).
        """
        if self.dialect != "sqlite":
            return self.rows(f"SELECT {columns} {rest}", params)
        from pipetrail.ledger.sqlite_rows import sqlite_batches

        found: list[tuple[Any, ...]] = []
        for batch in sqlite_batches(self.connection, columns, rest, params or {}, size=_WHOLE):
            found += batch
        return found

    def batches(
        self, text: str, params: dict[str, Any] | None = None, *, size: int = 2000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Run a query; yield its rows as tuples, ``size`` at a time (bounded memory).

        On PostgreSQL the rows stay on the server until fetched (a named cursor), which
        needs an open transaction (:meth:`snapshot` or :meth:`write`).
        """
        if self.dialect == "postgresql":
            cursor = self.connection.cursor(name="pipetrail_batches")
        else:
            cursor = self.connection.cursor()
        try:
            cursor.execute(self.sql(text), params or {})
            if self.dialect == "sqlite":  # its rows are tuples already
                while rows := cursor.fetchmany(size):
                    yield rows
                return
            while rows := cursor.fetchmany(size):
                yield [tuple(row) for row in rows]
        finally:
            cursor.close()

    def execute(self, text: str, params: dict[str, Any] | None = None) -> int:
        """Run a statement; return the number of rows it changed."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self.sql(text), params or {})
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def executemany(self, text: str, rows: Sequence[dict[str, Any]]) -> None:
        """Run a statement once per row.

        On SQLite the rows are bound by position (see :func:`positional_text`): the
        driver then binds each value without making its parameter's name anew.
        """
        if not rows:
            return
        cursor = self.connection.cursor()
        try:
            if self.dialect == "sqlite":
                found = positional_text(self.sql(text))
                if found is not None:
                    sql, names = found
                    if len(names) > 1:  # one itemgetter call per row gives its values
                        cursor.executemany(sql, list(map(operator.itemgetter(*names), rows)))
                    else:
                        cursor.executemany(sql, [(row[names[0]],) for row in rows])
                    return
            cursor.executemany(self.sql(text), rows)
        finally:
            cursor.close()

    def executemany_values(
        self, text: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """:meth:`executemany` of rows given as values, ``columns`` naming their places.

        The rows a projection builds as values need not become dicts first: on SQLite
        each row's values are put in the order of the statement's parameters by one
        ``itemgetter`` call (remembered per text and columns), and bound by position.
        """
        if not rows:
            return
        if self.dialect == "sqlite":
            found = _value_order(self.sql(text), columns)
            if found is not None:
                sql, order = found
                cursor = self.connection.cursor()
                try:
                    cursor.executemany(sql, rows if order is None else list(map(order, rows)))
                finally:
                    cursor.close()
                return
        self.executemany(text, [dict(zip(columns, row, strict=True)) for row in rows])

    def write(self) -> _WriteTransaction:
        """Hold the ledger's write lock for one transaction; commit, or roll back on error.

        Use as ``with driver.write() as db:`` (``db`` is this driver).
        """
        return _WriteTransaction(self)

    def _begin_write(self) -> None:
        if self._in_write:
            raise RuntimeError("nested ledger write transactions are not supported")
        if self.dialect == "postgresql":
            self.execute("BEGIN")
            self.execute("SELECT pg_advisory_xact_lock(:k)", {"k": APPEND_LOCK_KEY})
        else:
            self.execute("BEGIN IMMEDIATE")
        self._in_write = True

    @contextmanager
    def snapshot(self) -> Iterator[Driver]:
        """Read in one transaction, so that every query sees the same committed state.

        SQLite gives a deferred transaction a stable snapshot (WAL); PostgreSQL needs
        ``REPEATABLE READ``. Nothing is written, so the transaction is rolled back.
        """
        if self._in_write:
            yield self  # already one transaction, under the write lock
            return
        if self.dialect == "postgresql":
            self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        else:
            self.execute("BEGIN")
        try:
            yield self
        finally:
            self.execute("ROLLBACK")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


class _WriteTransaction:
    """The context manager :meth:`Driver.write` returns (a class: every append enters one).

    Entering begins the transaction under the write lock; leaving commits it, or rolls it
    back when the block raised (the block's exception then propagates).
    """

    __slots__ = ("_driver",)

    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    def __enter__(self) -> Driver:
        self._driver._begin_write()  # noqa: SLF001 - the driver's own transaction
        return self._driver

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        driver = self._driver
        driver._in_write = False  # noqa: SLF001 - the driver's own transaction
        driver.execute("COMMIT" if exc_type is None else "ROLLBACK")
