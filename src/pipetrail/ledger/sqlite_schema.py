"""New SQLite ledgers made from the head revision's statements, without Alembic.

Making a ledger through the migrations imports SQLAlchemy and Alembic and runs every
migration from the first: about 0.4 s of a project's first run on a 2-CPU
machine, more than the rest of a small run. A new (empty) SQLite ledger is instead made
by running the statements kept in ``sqlite_schema.sql``, in one transaction:

* the ``CREATE`` statements SQLite keeps in ``sqlite_master`` for a ledger the migrations
  brought to :data:`~pipetrail.ledger.migrate.HEAD_REVISION` (tables first, in the order
  they were made, then their indexes), text for text;
* the ``alembic_version`` row of that revision, so that Alembic takes the ledger from
  there when a later pipetrail brings a migration.

The database that results is the one the migrations make: the contract tests
(``tests/contract/test_sqlite_schema.py``) build both and compare every entry of
``sqlite_master``, and fail when the file is not what the migrations give today. After
adding a migration, ``python scripts/write_sqlite_schema.py`` writes it again.

A database that already holds anything (a ledger at an older revision, a file that is not
a ledger) is left to the migrations, as before; so is PostgreSQL. See docs/adr/0042.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipetrail.ledger.migrate import HEAD_REVISION

__all__ = ["SCHEMA_FILE", "create_new", "render_from_migrations", "schema_statements"]

SCHEMA_FILE = Path(__file__).with_name("sqlite_schema.sql")
_SEPARATOR = ";\n\n"
_HEADER = (
    "-- The schema of a new SQLite ledger at revision {revision}: what the migrations make,\n"
    "-- statement for statement. Written by scripts/write_sqlite_schema.py; do not edit.\n"
)


def schema_statements() -> list[str]:
    """The statements that make a new ledger at the head revision, in order.

    Raises:
        OSError: the file cannot be read (a broken installation).
        ValueError: the file is not the head revision's (it was not written again after
            a migration was added), or a statement in it is incomplete.
    """
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    header = _HEADER.format(revision=HEAD_REVISION)
    if not text.startswith(header):
        raise ValueError(
            f"{SCHEMA_FILE.name} is not the schema of revision {HEAD_REVISION}: "
            "run scripts/write_sqlite_schema.py"
        )
    # Each statement is followed by the separator; a statement's text is kept as it is
    # (SQLite stores a CREATE statement's text as given, trailing blanks included).
    body = text[len(header) :]
    if not body.endswith(_SEPARATOR):
        raise ValueError(f"{SCHEMA_FILE.name} is truncated: run scripts/write_sqlite_schema.py")
    statements = body[: -len(_SEPARATOR)].split(_SEPARATOR)
    for statement in statements:
        if not sqlite3.complete_statement(statement + ";"):
            raise ValueError(f"{SCHEMA_FILE.name} holds an incomplete statement: {statement!r}")
    return statements


def create_new(connection: sqlite3.Connection, statements: list[str]) -> bool:
    """Run ``statements`` (:func:`schema_statements`) if ``connection``'s database is empty.

    Runs under the write lock (``BEGIN IMMEDIATE``): of several processes opening the same
    new ledger, the first makes the schema and the others find it made. Either every
    statement takes effect or none does.

    Returns:
        True when the schema was made; False when the database already held something
        (made by another process meanwhile, or not empty to begin with).
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        if connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None:
            connection.execute("ROLLBACK")
            return False
        for statement in statements:
            connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return True


def render_from_migrations(folder: Path) -> str:
    """The text of ``sqlite_schema.sql``, from a ledger the migrations make in ``folder``.

    Imports Alembic and SQLAlchemy: for the contract tests and the script that writes the
    file, never on the way to opening a ledger.
    """
    from pipetrail.ledger.ledger import Ledger, _connect_sqlite
    from pipetrail.ledger.migrate import ensure_schema

    path = folder / "migrated.db"
    if path.exists():
        raise FileExistsError(f"{path} exists: the schema is rendered from a new database")
    _connect_sqlite(path, 60.0).close()  # the page size and WAL, as a new ledger gets them
    ledger = Ledger(f"sqlite:///{path}", actor="schema")
    try:
        ensure_schema(ledger.engine)
    finally:
        ledger.close()
    connection = sqlite3.connect(str(path))
    try:
        rows = connection.execute(
            "SELECT type, sql FROM sqlite_master "
            "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
        ).fetchall()
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    finally:
        connection.close()
    if revision != HEAD_REVISION:
        raise ValueError(f"the migrations end at {revision!r}, not at {HEAD_REVISION!r}")
    order = {"table": 0, "index": 1, "trigger": 2, "view": 3}
    statements = [sql for _, sql in sorted(rows, key=lambda row: order[row[0]])]
    # The revision is four digits, checked equal to HEAD_REVISION above.
    statements.append(f"INSERT INTO alembic_version (version_num) VALUES ('{revision}')")  # noqa: S608
    return _HEADER.format(revision=revision) + "".join(s + _SEPARATOR for s in statements)
