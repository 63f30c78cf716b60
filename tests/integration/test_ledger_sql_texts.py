"""The ledger's SQL texts through SQLAlchemy's compiler, on SQLite and PostgreSQL.

Every text the ledger runs is a ``text()`` with ``:name`` parameters: on PostgreSQL it is
compiled by SQLAlchemy for psycopg; on SQLite it runs as written, which these tests hold
equal to what SQLAlchemy's SQLite compiler makes of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from pipetrail.execution.project import Project
from pipetrail.execution.runner import run_pipeline
from pipetrail.ledger import driver as driver_module
from pipetrail.ledger.driver import Driver, compile_text, positional_text

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPE = """
from pipetrail import log_metric, pipeline, step

@step
def make(n: int) -> list[int]:
    return list(range(n))

@step
def score(xs: list[int]) -> float:
    log_metric("total", float(sum(xs)))
    return float(sum(xs))

@pipeline
def texts(n: int = 3):
    return score(make(n))
"""


def _driver(url: str) -> tuple[Driver, Any]:
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    return Driver(raw.driver_connection, dialect), engine


def test_texts_with_percent_colons_and_repeated_names(metadata_url: str) -> None:
    driver, engine = _driver(metadata_url)
    try:
        rows = driver.fetch(
            "SELECT :a || '%' || 'blake3:ab' AS v, :a || :b AS w, "
            "CASE WHEN 'metric:x' LIKE 'metric:%' THEN 1 ELSE 0 END AS m",
            {"a": "x", "b": "y"},
        )
        assert rows == [{"v": "x%blake3:ab", "w": "xy", "m": 1}]
        driver.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)")
        with driver.write():
            driver.executemany("INSERT INTO t (k, n) VALUES (:k, :n)", [{"k": "a", "n": 1}])
            assert driver.execute("UPDATE t SET n = :n WHERE k = :k", {"k": "a", "n": 2}) == 1
        assert driver.rows("SELECT k, n FROM t WHERE k LIKE :p", {"p": "a%"}) == [("a", 2)]
    finally:
        driver.close()
        engine.dispose()


def test_postgresql_texts_are_compiled_by_sqlalchemy() -> None:
    text = "SELECT * FROM events WHERE run_id = :r AND kind LIKE 'step.%' AND x = :r"
    compiled = compile_text(text, "postgresql")
    assert (
        compiled
        == "SELECT * FROM events WHERE run_id = %(r)s AND kind LIKE 'step.%%' AND x = %(r)s"
    )
    assert compile_text(text, "postgresql") is compiled  # compiled once, then cached
    assert compile_text(text, "sqlite") == text


def test_every_text_a_run_uses_is_what_sqlalchemy_compiles_for_sqlite(
    tmp_path: Path, files: PipelineFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: set[str] = set()
    original = driver_module.compile_text

    def recording(text: str, dialect: str) -> str:
        seen.add(text)
        return original(text, dialect)

    monkeypatch.setattr(driver_module, "compile_text", recording)
    definition = files.load("texts_mod", PIPE)
    project = Project.at(files.root)
    try:
        run = run_pipeline(definition, {}, project)
        run_pipeline(definition, {}, project)  # cache hits
        reader = project.reader()
        reader.get_run(run.id)
        reader.step_runs(run.id)
    finally:
        project.close()
    assert len(seen) > 5
    named = SQLiteDialect_pysqlite(paramstyle="named")  # type: ignore[no-untyped-call]
    for text in seen:
        assert str(sa.text(text).compile(dialect=named)) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "INSERT INTO t (a, b, c) VALUES (:a, :b, :a)",
            ("INSERT INTO t (a, b, c) VALUES (?1, ?2, ?1)", ("a", "b")),
        ),
        (
            "UPDATE t SET n = :n_2 WHERE k = :k AND x = y::text",
            ("UPDATE t SET n = ?1 WHERE k = ?2 AND x = y::text", ("n_2", "k")),
        ),
        # A quote may hold a colon that is no parameter: bound by name, as written.
        ("INSERT INTO t (k) SELECT :k WHERE 'a:b' = 'a:b'", None),
        ('INSERT INTO "t" (k) VALUES (:k)', None),
        ("DELETE FROM t", None),
    ],
)
def test_sqlite_write_texts_are_numbered_once_per_name(
    text: str, want: tuple[str, tuple[str, ...]] | None
) -> None:
    assert positional_text(text) == want
    assert positional_text(text) is positional_text(text)  # made once, then remembered


def _table_driver(tmp_path: Path) -> Driver:
    """A SQLite driver on a new file holding one table ``t (k, a, b, n)``."""
    import sqlite3

    driver = Driver(sqlite3.connect(tmp_path / "t.db"), "sqlite")
    driver.execute("CREATE TABLE t (k TEXT PRIMARY KEY, a TEXT, b TEXT, n INTEGER)")
    return driver


def test_rows_bound_by_position_hold_what_their_names_say(tmp_path: Path) -> None:
    driver = _table_driver(tmp_path)
    try:
        with driver.write():
            driver.executemany(
                "INSERT INTO t (k, a, b, n) VALUES (:k, :v, :v, :n)",
                # keys in another order than the text's, and one the text does not use
                [{"n": 1, "v": "x", "k": "one", "extra": 0}, {"k": "two", "n": None, "v": "y"}],
            )
            # a text with a quoted literal is bound by name
            driver.executemany(
                "INSERT INTO t (k, a, b, n) VALUES (:k, 'a:b', :k, :n)", [{"k": "three", "n": 3}]
            )
        assert driver.rows("SELECT k, a, b, n FROM t ORDER BY n") == [
            ("two", "y", "y", None),
            ("one", "x", "x", 1),
            ("three", "a:b", "three", 3),
        ]
    finally:
        driver.close()


def test_rows_given_as_values_are_bound_in_the_order_of_their_columns(tmp_path: Path) -> None:
    driver = _table_driver(tmp_path)
    try:
        with driver.write():
            # columns in another order than the text's parameters, one of them used twice
            driver.executemany_values(
                "INSERT INTO t (k, a, b, n) VALUES (:k, :v, :v, :n)",
                ("n", "v", "k"),
                [(1, "x", "one"), (None, "y", "two")],
            )
            # the columns in the text's order, and a text with a quoted literal (by name)
            driver.executemany_values(
                "INSERT INTO t (k, a, b, n) VALUES (:k, :a, :b, :n)",
                ("k", "a", "b", "n"),
                [("three", "p", "q", 3)],
            )
            driver.executemany_values(
                "INSERT INTO t (k, a, b, n) VALUES (:k, 'a:b', :k, :n)", ("k", "n"), [("four", 4)]
            )
            driver.executemany_values("INSERT INTO t (k) VALUES (:k)", ("k",), [])
        assert driver.rows("SELECT k, a, b, n FROM t ORDER BY n") == [
            ("two", "y", "y", None),
            ("one", "x", "x", 1),
            ("three", "p", "q", 3),
            ("four", "a:b", "four", 4),
        ]
    finally:
        driver.close()
