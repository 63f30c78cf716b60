"""Many SQLite rows read in batches, each row handed over whole by a function of the query.

The sqlite3 module of CPython 3.11 lets other threads run while it asks SQLite each
value's type: reading a row of eight columns takes and gives back the interpreter's lock
nine times, which on ``audit verify``'s millions of rows costs about as much as making
the values. A function called in the query (``SELECT f(a, b, c) FROM ...``) is given
the row's values all at once, with the lock taken once per row: :func:`sqlite_batches`
reads the rows that way, as the same tuples of the same values (an ``INTEGER`` as
``int``, a ``REAL`` as ``float``, ``TEXT`` as ``str``, a ``BLOB`` as ``bytes``, NULL as
None: both ways make them from SQLite's values alike, and the connection must not
convert any, see below). A million events of eight columns read this way measured about
a quarter less CPU.

The function is called as SQLite makes each row, and the module makes the next row
before it hands over the one at hand: the rows the function kept are taken from the
front, as many as the fetch returned. That holds only when SQLite makes the rows in the
order it returns them, which a query sorting its rows (a temporary B-tree for its
``ORDER BY``) does not: only queries reading a table in its own order, or in the order
of the key it is sorted by, may be given (tests/unit/ledger/test_sqlite_rows.py checks
the plans of those that are).

A row whose text is not valid UTF-8 makes the function fail where the plain read fails
with its own message: on any error, the rows not handed over yet are read again the
plain way, from the first not handed over, so the same rows come, or the same error is
raised.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping, Sequence

__all__ = ["sqlite_batches"]

_names = itertools.count()
_SKIP = 5000  # rows skipped at a time, read again the plain way


def sqlite_batches(
    connection: sqlite3.Connection,
    columns: str,
    rest: str,
    params: Sequence[Any] | Mapping[str, Any] = (),
    *,
    size: int,
) -> Generator[list[tuple[Any, ...]], None, None]:
    """The rows of ``SELECT {columns} {rest}``, ``size`` at a time, as the module reads them.

    ``columns``: the selected columns, comma-separated; ``rest``: the query after them,
    from ``FROM`` on, which must make its rows in the order it returns them (see the
    module docstring). The connection must read text as ``str`` and convert no value
    (no ``text_factory``, no ``detect_types``): the plain read would, the function not.

    The query runs at once, as ``connection.execute`` runs it (and raises what it
    raises); its rows are read as the batches are taken.
    """
    name = f"pipetrail_row_{next(_names)}"
    kept: list[tuple[Any, ...]] = []

    def row(*values: Any) -> None:
        kept.append(values)

    text = f"SELECT {columns} {rest}"
    connection.create_function(name, -1, row)
    try:
        cursor = connection.execute(f"SELECT {name}({columns}) {rest}", params)
    except sqlite3.Error:
        _forget(connection, name)
        return _plain(connection.execute(text, params), size)
    return _whole_rows(cursor, kept, name, (text, params, size))


def _whole_rows(
    cursor: sqlite3.Cursor,
    kept: list[tuple[Any, ...]],
    name: str,
    plain: tuple[str, Sequence[Any] | Mapping[str, Any], int],
) -> Generator[list[tuple[Any, ...]], None, None]:
    """The batches of :func:`sqlite_batches`, the rows its function ``name`` kept.

    ``plain``: the query read the plain way, its parameters and the batch size.
    """
    connection = cursor.connection
    text, params, size = plain
    done = 0
    try:
        while fetched := cursor.fetchmany(size):
            count = len(fetched)
            batch = kept[:count]
            del kept[:count]
            done += count
            yield batch
        return
    except sqlite3.Error:
        pass  # read again the plain way, from the first row not handed over
    finally:
        _close(cursor)
        _forget(connection, name)
    again = connection.execute(text, params)
    while done:
        skipped = len(again.fetchmany(min(done, _SKIP)))
        done = done - skipped if skipped else 0
    yield from _plain(again, size)


def _plain(cursor: sqlite3.Cursor, size: int) -> Generator[list[tuple[Any, ...]], None, None]:
    """A cursor's rows, ``size`` at a time."""
    try:
        while fetched := cursor.fetchmany(size):
            yield fetched
    finally:
        _close(cursor)


def _forget(connection: sqlite3.Connection, name: str) -> None:
    """Drop the row function's rows; left in place while another statement runs.

    (SQLite refuses to replace a function then; the name is never used again.)
    """
    with contextlib.suppress(sqlite3.Error):
        connection.create_function(name, -1, None)


def _close(cursor: sqlite3.Cursor) -> None:
    """Close a cursor; one whose connection was closed first is left as it is.

    (A batch generator not read to its end is closed when freed, which may be after its
    connection was.)
    """
    with contextlib.suppress(sqlite3.Error):
        cursor.close()
