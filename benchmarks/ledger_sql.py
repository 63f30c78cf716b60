"""Per-statement cost of the ledger's SQL: raw DB-API against two ways through SQLAlchemy.

For the decision recorded in docs/adr/0016-sql-through-sqlalchemy.md. On each backend
(SQLite file, PostgreSQL), a table shaped like the ledger's ``step_runs`` (a text key,
a few columns, a JSON text) holds ``ROWS`` rows; each repetition times ``STATEMENTS``
statements of two kinds, the ledger's commonest:

* ``select``: a point query by key (``SELECT ... WHERE step_run_id = :k``), rows fetched;
* ``insert``: one-row inserts inside one transaction (rolled back after the timing).

Three ways of executing the same ``:name`` text, interleaved in each repetition:

* ``raw``: the text written by hand in the driver's own parameter style (``:k`` for
  ``sqlite3``, ``%(k)s`` for psycopg), executed on a DB-API cursor: the floor;
* ``sqlalchemy``: ``Connection.execute(text(...), params)`` on a SQLAlchemy engine's
  connection (its compiled cache on, as by default);
* ``compiled``: :func:`pipetrail.ledger.driver.compile_text` (SQLAlchemy's compiler, once
  per text, cached) then the DB-API cursor: what :class:`~pipetrail.ledger.driver.Driver`
  does.

Figures are microseconds per statement (median over repetitions), and the overhead of
each way over ``raw``. One informational row more: the whole-process cost of importing
SQLAlchemy (``python -c "import sqlalchemy.sql"`` against ``python -c pass``), which SQLite
readers avoid by not compiling at all. PostgreSQL: ``PIPETRAIL_BENCH_PG_URL`` names a
server to use, otherwise a throwaway cluster is started as the tests do (rows are "not
measured" when neither is possible). The target: the ``compiled`` way costs at most 10%
more than ``raw`` per statement on each backend (``ROWS`` = ``STATEMENTS`` = 2,000;
9 timed repetitions, ``--quick`` 3, after one untimed).

Run: ``.venv/bin/python benchmarks/ledger_sql.py [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    PYTHON,
    REPO_ROOT,
    Result,
    bench_env,
    log,
    main,
    not_measured,
    run_timed,
    summarize,
)

ROWS = 2000
STATEMENTS = 2000
MAX_OVERHEAD_PERCENT = 10.0

_CREATE = (
    "CREATE TABLE bench_step_runs (step_run_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, "
    "node_id TEXT NOT NULL, status TEXT NOT NULL, payload TEXT NOT NULL)"
)
_SELECT = "SELECT run_id, node_id, status, payload FROM bench_step_runs WHERE step_run_id = :k"
_INSERT = (
    "INSERT INTO bench_step_runs (step_run_id, run_id, node_id, status, payload) "
    "VALUES (:k, :r, :n, :s, :p)"
)
_NATIVE = {  # the same texts written by hand in each DB-API driver's parameter style
    "sqlite": {"select": _SELECT, "insert": _INSERT},
    "postgresql": {
        "select": _SELECT.replace(":k", "%(k)s"),
        "insert": "INSERT INTO bench_step_runs (step_run_id, run_id, node_id, status, "
        "payload) VALUES (%(k)s, %(r)s, %(n)s, %(s)s, %(p)s)",
    },
}


def _row(i: int, prefix: str = "sr") -> dict[str, Any]:
    payload = '{"outputs": {"output": "blake3:' + "ab" * 32 + '"}}'
    return {"k": f"{prefix}{i:08d}", "r": f"run{i // 10:06d}", "n": f"node{i % 10}",
            "s": "completed", "p": payload}  # fmt: skip


class _Backend:
    """One database, reached three ways: DB-API cursor, SQLAlchemy connection, Driver."""

    def __init__(self, url: str, dialect: str) -> None:
        import sqlalchemy as sa

        from pipetrail.ledger.driver import compile_text

        self.dialect = dialect
        self.compile_text = compile_text
        self.engine = sa.create_engine(url)
        self.sa_conn = self.engine.connect()
        raw = self.engine.raw_connection()
        self.raw = raw
        self.dbapi = raw.driver_connection
        self.sa = sa
        self.sa_conn.execute(sa.text(_CREATE))
        self.sa_conn.execute(sa.text(_INSERT), [_row(i) for i in range(ROWS)])
        self.sa_conn.commit()

    def close(self) -> None:
        self.sa_conn.execute(self.sa.text("DROP TABLE bench_step_runs"))
        self.sa_conn.commit()
        self.sa_conn.close()
        self.raw.close()
        self.engine.dispose()

    def run(self, way: str, kind: str, rep: int) -> float:
        """Time STATEMENTS statements of ``kind`` the ``way`` way; seconds per statement."""
        keys = [_row((rep * 7919 + i * 31) % ROWS) for i in range(STATEMENTS)]
        fresh = [_row(i, prefix=f"{way}{rep}x") for i in range(STATEMENTS)]
        params = keys if kind == "select" else fresh
        text = _SELECT if kind == "select" else _INSERT
        if way == "sqlalchemy":
            statement = self.sa.text(text)
            conn = self.sa_conn
            start = time.perf_counter()
            for p in params:
                result = conn.execute(statement, p)
                if kind == "select":
                    result.fetchall()
            elapsed = time.perf_counter() - start
            conn.rollback()
            return elapsed / STATEMENTS
        cursor = self.dbapi.cursor()
        if self.dialect == "sqlite":
            cursor.execute("BEGIN")
        native = _NATIVE[self.dialect][kind]
        start = time.perf_counter()
        for p in params:
            sql = native if way == "raw" else self.compile_text(text, self.dialect)
            cursor.execute(sql, p)
            if kind == "select":
                cursor.fetchall()
        elapsed = time.perf_counter() - start
        self.dbapi.rollback()
        cursor.close()
        return elapsed / STATEMENTS


def _measure(backend: _Backend, name: str, reps: int) -> list[Result]:
    ways = ("raw", "sqlalchemy", "compiled")
    results: list[Result] = []
    for kind in ("select", "insert"):
        samples: dict[str, list[float]] = {way: [] for way in ways}
        for rep in range(reps + 1):
            order = ways if rep % 2 else tuple(reversed(ways))
            timed = {way: backend.run(way, kind, rep) for way in order}
            if rep == 0:
                continue  # warm-up: statement caches, page cache
            for way in ways:
                samples[way].append(timed[way])
        raw = samples["raw"]
        for way in ways:
            micros = [s * 1e6 for s in samples[way]]
            results.append(
                summarize(f"ledger_sql.{name}.{kind}.{way}", f"{kind}, {way}", micros, "us")
            )
        for way in ("sqlalchemy", "compiled"):
            overhead = [100 * (s / r - 1) for s, r in zip(samples[way], raw, strict=True)]
            results.append(
                summarize(
                    f"ledger_sql.{name}.{kind}.{way}_overhead",
                    f"{kind}: {way} over raw, per statement",
                    overhead,
                    "%",
                    at_most=MAX_OVERHEAD_PERCENT if way == "compiled" else None,
                )
            )
    return results


def _postgres() -> tuple[str | None, Any, str | None]:
    """A PostgreSQL URL, the cluster to stop afterwards (or None), or why there is none."""
    url = os.environ.get("PIPETRAIL_BENCH_PG_URL")
    if url:
        return url, None, None
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from tests.support.postgres import start_cluster
    except ImportError as exc:
        return None, None, f"the test support code is not importable: {exc}"
    try:
        cluster = start_cluster()
    except RuntimeError as exc:
        return None, None, f"no PostgreSQL server: {str(exc).splitlines()[0]}"
    return cluster.create_database("pipetrail_bench"), cluster, None


def _import_cost(reps: int) -> Result:
    env = bench_env()
    deltas = []
    for _ in range(reps + 1):
        bare, _ = run_timed([PYTHON, "-c", "pass"], env=env)
        with_sa, _ = run_timed([PYTHON, "-c", "import sqlalchemy.sql"], env=env)
        deltas.append((with_sa - bare) * 1000)
    return summarize(
        "ledger_sql.import_sqlalchemy",
        "import sqlalchemy.sql, whole process, over python -c pass",
        deltas[1:],
        "ms",
    )


def run(quick: bool) -> list[Result]:
    reps = 3 if quick else 9
    results: list[Result] = []
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bench-sql-"))
    try:
        log(f"ledger_sql: SQLite, {reps} x {STATEMENTS} statements of each kind and way")
        backend = _Backend(f"sqlite:///{folder / 'ledger.db'}", "sqlite")
        try:
            results += _measure(backend, "sqlite", reps)
        finally:
            backend.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    url, cluster, missing = _postgres()
    if url is None:
        for kind in ("select", "insert"):
            results.append(
                not_measured(
                    f"ledger_sql.postgresql.{kind}.compiled_overhead",
                    f"{kind}: compiled over raw, per statement",
                    "%",
                    missing or "no PostgreSQL",
                    target=f"<= {MAX_OVERHEAD_PERCENT:g} %",
                )
            )
    else:
        try:
            log(f"ledger_sql: PostgreSQL, {reps} x {STATEMENTS} statements of each kind and way")
            backend = _Backend(url, "postgresql")
            try:
                results += _measure(backend, "postgresql", reps)
            finally:
                backend.close()
        finally:
            if cluster is not None:
                cluster.stop()
    results.append(_import_cost(reps))
    log(
        "ledger_sql: medians "
        + ", ".join(f"{r.name.split('.', 1)[1]}={r.median:.1f}{r.unit}" for r in results)
    )
    return results


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0] if __doc__ else "ledger_sql"))
