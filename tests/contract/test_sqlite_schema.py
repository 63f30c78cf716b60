"""A new SQLite ledger is made from stored statements: the same database the migrations make.

See pipetrail.ledger.sqlite_schema. These tests fail when a migration is added without
writing the statements again (``python scripts/write_sqlite_schema.py``).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipetrail.errors import LedgerError
from pipetrail.ledger import ledger as ledger_module
from pipetrail.ledger import sqlite_schema
from pipetrail.ledger.events import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION
from pipetrail.ledger.sqlite_schema import SCHEMA_FILE, render_from_migrations, schema_statements
from tests.support.spawned import run_spawned

REPO = Path(__file__).resolve().parents[2]


def _database(path: Path) -> dict[str, Any]:
    """Everything that makes the schema of a SQLite file, as comparable values."""
    connection = sqlite3.connect(str(path))
    try:
        return {
            "master": connection.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
            ).fetchall(),
            "revision": connection.execute("SELECT version_num FROM alembic_version").fetchall(),
            "page_size": connection.execute("PRAGMA page_size").fetchone(),
            "journal_mode": connection.execute("PRAGMA journal_mode").fetchone(),
        }
    finally:
        connection.close()


def _migrated(tmp_path: Path) -> dict[str, Any]:
    folder = tmp_path / "migrations"
    folder.mkdir()
    render_from_migrations(folder)
    return _database(folder / "migrated.db")


def _source_payload(i: int) -> dict[str, Any]:
    return {
        "run_id": "R1",
        "path": f"data/{i}.csv",
        "digest": f"blake3:{i:064x}",
        "size": i,
        "mtime_ns": i,
        "observed_at": "2026-01-01T00:00:00.000000Z",
    }


def _source(i: int) -> EventDraft:
    return EventDraft(EventKind.SOURCE_OBSERVED, _source_payload(i), run_id="R1")


def test_a_new_ledger_is_the_database_the_migrations_make(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger.open(f"sqlite:///{path}", actor="tester").close()
    made = _database(path)
    assert made == _migrated(tmp_path)
    assert made["revision"] == [(HEAD_REVISION,)]
    assert len(made["master"]) > 20


def test_the_statements_file_is_what_the_migrations_make_today(tmp_path: Path) -> None:
    text = render_from_migrations(tmp_path)
    assert SCHEMA_FILE.read_text(encoding="utf-8") == text, (
        f"{SCHEMA_FILE.name} is out of date: run scripts/write_sqlite_schema.py"
    )


def test_a_new_ledger_is_made_and_written_without_sqlalchemy_or_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    program = (
        "import json, sys\n"
        "from pipetrail.ledger.events import EventDraft, EventKind\n"
        "from pipetrail.ledger.ledger import Ledger\n"
        f"ledger = Ledger.open({url!r}, actor='t')\n"
        f"payload = {_source_payload(1)!r}\n"
        "ledger.append([EventDraft(EventKind.SOURCE_OBSERVED, payload, run_id='R1')])\n"
        "ok = ledger.verify().ok\n"
        "ledger.close()\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic'})\n"
        "print(json.dumps({'ok': ok, 'loaded': loaded}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert json.loads(out) == {"ok": True, "loaded": []}


def _open_and_append(url: str, worker: int) -> None:
    ledger = Ledger.open(url, actor=f"w{worker}")
    try:
        ledger.append([_source(worker * 10 + i) for i in range(5)])
    finally:
        ledger.close()


def test_processes_making_one_new_ledger_together_share_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    run_spawned(_open_and_append, [(url, w) for w in range(4)])
    ledger = Ledger.open(url, actor="checker")
    try:
        report = ledger.verify()
        assert report.ok, report
        assert report.checked == 20
    finally:
        ledger.close()
    assert _database(path) == _migrated(tmp_path)


def test_a_failure_while_making_the_schema_leaves_the_file_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    broken = [*schema_statements(), "CREATE TABLE half_made (x INTEGER,"]
    monkeypatch.setattr(ledger_module, "schema_statements", lambda: broken)
    with pytest.raises(LedgerError):
        Ledger.open(f"sqlite:///{path}", actor="tester")
    connection = sqlite3.connect(str(path))
    try:
        assert connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone() == (0,)
    finally:
        connection.close()
    monkeypatch.undo()
    Ledger.open(f"sqlite:///{path}", actor="tester").close()
    assert _database(path) == _migrated(tmp_path)


@pytest.mark.parametrize("problem", ["missing", "other revision", "truncated"])
def test_a_statements_file_that_cannot_be_used_leaves_it_to_the_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    stored = SCHEMA_FILE.read_text(encoding="utf-8")
    copy = tmp_path / "sqlite_schema.sql"
    if problem == "other revision":
        copy.write_text(stored.replace(f"revision {HEAD_REVISION}", "revision 0001", 1))
    elif problem == "truncated":
        copy.write_text(stored[: len(stored) // 2])
    monkeypatch.setattr(sqlite_schema, "SCHEMA_FILE", copy)
    with pytest.raises((OSError, ValueError)):
        schema_statements()
    path = tmp_path / "ledger.db"
    Ledger.open(f"sqlite:///{path}", actor="tester").close()
    assert _database(path) == _migrated(tmp_path)


def test_a_database_holding_other_tables_is_left_to_the_migrations(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    connection = sqlite3.connect(str(path))
    connection.execute("CREATE TABLE notes (x TEXT)")
    connection.execute("INSERT INTO notes VALUES ('kept')")
    connection.commit()
    connection.close()
    Ledger.open(f"sqlite:///{path}", actor="tester").close()
    made = _database(path)
    assert made["revision"] == [(HEAD_REVISION,)]
    notes = [row for row in made["master"] if row[1] == "notes"]
    assert notes == [("table", "notes", "notes", "CREATE TABLE notes (x TEXT)")]
    others = [row for row in made["master"] if row[1] != "notes"]
    assert others == _migrated(tmp_path)["master"]
