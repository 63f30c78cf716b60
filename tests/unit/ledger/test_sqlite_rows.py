"""Rows read whole through a function of the query: the rows, and the errors, of a plain read."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.ledger import audit, trusted_sql
from pipetrail.ledger import queries as queries_module
from pipetrail.ledger.audit_model import TableModel
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.sqlite_rows import sqlite_batches

if TYPE_CHECKING:
    from pathlib import Path

ROWS: list[tuple[Any, ...]] = [
    (1, 5, "x", 1.5, None),
    (2, 5.0, "a\x00b", b"\x00\xff", 7),
    (3, 1e300, "é", "text", 2**63 - 1),
    (4, None, "", b"", -(2**63)),
    (5, 0.1, "last", 0, 3.0),
]


def _table() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, r REAL, s TEXT, b, i INTEGER)")
    connection.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", ROWS)
    return connection


def _typed(rows: list[tuple[Any, ...]]) -> list[tuple[tuple[Any, type], ...]]:
    return [tuple((value, type(value)) for value in row) for row in rows]


@pytest.mark.parametrize("size", [1, 2, 3, 5000])
def test_the_rows_are_the_plain_reads_own(size: int) -> None:
    connection = _table()
    plain = connection.execute("SELECT n, r, s, b, i FROM t ORDER BY n").fetchall()
    batches = list(sqlite_batches(connection, "n, r, s, b, i", "FROM t ORDER BY n", size=size))
    assert all(0 < len(batch) <= size for batch in batches)
    assert _typed([row for batch in batches for row in batch]) == _typed(plain)


def test_parameters_and_a_reader_that_stops_early() -> None:
    connection = _table()
    found = sqlite_batches(connection, "n, s", "FROM t WHERE n >= :n ORDER BY n", {"n": 2}, size=2)
    assert next(found) == [(2, "a\x00b"), (3, "é")]
    found.close()
    # the connection is free to run anything once the reader stopped
    assert connection.execute("SELECT COUNT(*) FROM t").fetchone() == (5,)


def test_text_with_no_utf8_fails_as_the_plain_read_fails() -> None:
    connection = _table()
    connection.execute("INSERT INTO t VALUES (6, 1.0, CAST(x'c328' AS TEXT), NULL, 0)")
    with pytest.raises(sqlite3.OperationalError) as plain:
        connection.execute("SELECT n, s FROM t ORDER BY n").fetchall()
    found: list[tuple[Any, ...]] = []

    def read() -> None:
        for batch in sqlite_batches(connection, "n, s", "FROM t ORDER BY n", size=2):
            found.extend(batch)

    with pytest.raises(sqlite3.OperationalError) as whole:
        read()
    assert str(whole.value) == str(plain.value)
    assert [row[0] for row in found] == [1, 2, 3, 4]  # each row before it, once


def test_a_query_that_cannot_run_raises_at_once() -> None:
    connection = _table()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        sqlite_batches(connection, "n", "FROM missing", size=2)


def test_the_audit_queries_make_their_rows_in_the_order_they_return_them(tmp_path: Path) -> None:
    """No query read this way sorts its rows (a sort would make them in another order)."""
    path = tmp_path / "ledger.db"
    Ledger.open(f"sqlite:///{path}", actor="tester").close()
    connection = sqlite3.connect(":memory:")
    connection.execute("ATTACH DATABASE ? AS ledger", (str(path),))
    model = TableModel()
    queries = [
        (f"SELECT {audit._EVENT_COLUMNS} {audit._EVENTS_IN_ORDER}", {}),
        *[(model.layout[table].select + f"ledger.{table}", {}) for table in model.layout],
    ]
    for text, params in queries:
        plan = connection.execute(f"EXPLAIN QUERY PLAN {text}", params).fetchall()
        assert not any("TEMP B-TREE" in str(step[-1]) for step in plan), (text, plan)


def test_the_step_queries_make_their_rows_in_the_order_they_return_them(tmp_path: Path) -> None:
    """The cache's read-ahead and a run's step runs, read as whole rows, sort nothing."""
    path = tmp_path / "ledger.db"
    Ledger.open(f"sqlite:///{path}", actor="tester").close()
    connection = sqlite3.connect(path)
    queries = [
        (
            f"SELECT {trusted_sql.STEP_WITH_EVENT_VALUES} {trusted_sql.RUN_CACHE_REST}",
            {"r": "r", "after": 0, "n": 10},
        ),
        (f"SELECT {queries_module._STEP_COLUMNS} {queries_module._RUN_STEP_ROWS}", {"r": "r"}),
    ]
    for text, params in queries:
        plan = connection.execute(f"EXPLAIN QUERY PLAN {text}", params).fetchall()
        assert not any("TEMP B-TREE" in str(step[-1]) for step in plan), (text, plan)
        # the run's rows come through its index, in the order they were written
        assert any("ix_step_runs_run_id" in str(step[-1]) for step in plan), (text, plan)


def test_a_sorting_query_is_caught_by_the_plan_check(tmp_path: Path) -> None:
    """The check above fails for a query that sorts (so it can fail)."""
    path = tmp_path / "ledger.db"
    Ledger.open(f"sqlite:///{path}", actor="tester").close()
    connection = sqlite3.connect(path)
    text = f"SELECT {queries_module._STEP_COLUMNS} {queries_module._RUN_STEP_ROWS} ORDER BY seed"
    plan = connection.execute(f"EXPLAIN QUERY PLAN {text}", {"r": "r"}).fetchall()
    assert any("TEMP B-TREE" in str(step[-1]) for step in plan)
