"""The CLI against a broken metadata store, and the audit commands on edited derived rows.

Every database failure (a file that is not a database, a lock another process holds, a
PostgreSQL server that cannot be reached, a missing table) is one line on stderr and exit
code 4, never a traceback; the audit commands name derived rows that disagree with the
events (exit 3) and rebuild them.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.e2e


PIPELINE = """
from pipetrail import pipeline, step

@step
def make(n: int) -> dict:
    return {"values": list(range(n))}

@step
def total(data: dict, offset: int = 0) -> int:
    return sum(data["values"]) + offset

@pipeline
def pipe(n: int = 4, offset: int = 0):
    return total(make(n), offset=offset)
"""

COMMANDS = [["runs"], ["show", "latest"], ["run", "pipe.py", "-q"], ["audit", "verify"]]

HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode=EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
conn.execute("SELECT COUNT(*) FROM events").fetchone()
print("locked", flush=True)
time.sleep(120)
"""


def cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return cli_inline(cwd, *args, env=env)


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _project(root: Path) -> Path:
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "pipe.py").write_text(textwrap.dedent(PIPELINE))
    return root


def _ran(project: Path) -> Path:
    result = cli(project, "run", "pipe.py", "-q")
    assert result.returncode == 0, result.stderr
    return project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _project(tmp_path / "proj")


@pytest.fixture
def ran(project: Path) -> Path:
    return _ran(project)


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project the commands below cannot reach their ledger for: they share it."""
    return _project(tmp_path_factory.mktemp("unreachable") / "proj")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_a_file_that_is_not_a_database(project: Path, command: list[str]) -> None:
    db = project / ".pipetrail" / "ledger.db"
    garbage = bytes(range(256)) * 64
    db.write_bytes(garbage)
    line = assert_one_line(
        cli(project, *command), 4, "ledger.db", "is damaged or is not a SQLite database"
    )
    assert "restore" in line
    assert db.read_bytes() == garbage  # nothing written into it


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project after a run whose ledger another process holds locked (for the module)."""
    ran = _ran(_project(tmp_path_factory.mktemp("locked") / "proj"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(ran / ".pipetrail" / "ledger.db")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield ran
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_a_database_another_process_holds_locked(locked: Path, command: list[str]) -> None:
    db = locked / ".pipetrail" / "ledger.db"
    before = db.read_bytes()
    url = f"sqlite:///{db}?timeout=0.5"
    result = cli(locked, *command, env={"PIPETRAIL_METADATA": url})
    line = assert_one_line(result, 4, "is locked by another process")
    assert "try again" in line
    assert db.read_bytes() == before  # the next command meets the same ledger


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_a_postgresql_server_that_cannot_be_reached(untouched: Path, command: list[str]) -> None:
    url = f"postgresql://pipetrail:secret@127.0.0.1:{_closed_port()}/ledger"
    line = assert_one_line(
        cli(untouched, *command, env={"PIPETRAIL_METADATA": url}), 4, "cannot be reached"
    )
    assert "secret" not in line  # credentials are never printed
    assert "PIPETRAIL_METADATA" in line


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_a_missing_table(ran: Path, command: list[str]) -> None:
    with sqlite3.connect(ran / ".pipetrail" / "ledger.db") as conn:
        conn.execute("DROP TABLE step_runs")
    assert_one_line(cli(ran, *command), 4, "has a missing or damaged schema", "step_runs")


def _tamper(root: Path, statement: str) -> None:
    with sqlite3.connect(root / ".pipetrail" / "ledger.db") as conn:
        assert conn.execute(statement).rowcount == 1


def test_audit_names_an_edited_row_and_rebuild_repairs_it(ran: Path, tmp_path: Path) -> None:
    from pipetrail.execution.project import Project

    with sqlite3.connect(ran / ".pipetrail" / "ledger.db") as conn:
        outputs = conn.execute("SELECT outputs FROM step_runs WHERE step = 'make'").fetchone()[0]
    digest = json.loads(outputs)["output"]
    # Bytes that create a file when unpickled, stored under their own digest; make's
    # output row is then edited to say "pickle, trusted, in that object".
    marker = tmp_path / "unpickled-attacker-bytes"
    project = Project.at(ran)
    evil = project.store.put_bytes(b"cbuiltins\nopen\n(V" + str(marker).encode() + b"\nVw\ntR.")
    project.close()
    with sqlite3.connect(ran / ".pipetrail" / "ledger.db") as conn:
        conn.execute(
            "UPDATE artifacts SET serializer = 'pickle', blob = ?, meta = ? WHERE digest = ?",
            (evil, '{"protocol":5,"trusted":true}', digest),
        )

    human = cli(ran, "audit", "verify")
    assert human.returncode == 3
    assert (
        f"derived row disagrees with the events: artifacts[{digest}]: blob is '{evil}', "
        f"the events say '{digest}'; serializer is 'pickle', the events say 'json'"
    ) in human.stderr
    assert "pipetrail audit rebuild" in human.stderr
    report = json.loads(cli(ran, "audit", "verify", "--json").stdout)
    assert report["ok"] is False
    assert report["first_bad_seq"] is None
    assert [(p["table"], p["key"], p["problem"]) for p in report["derived"]] == [
        ("artifacts", digest, "differs")
    ]
    assert [c["column"] for c in report["derived"][0]["columns"]] == ["blob", "serializer", "meta"]

    # The next run (make cached, total executed) reads make's output as make's step event
    # records (docs/adr/0013-how-an-output-is-read.md), not through the edited row.
    first = cli(ran, "run", "pipe.py", "-q", "-p", "offset=1")
    assert first.returncode == 0, first.stderr
    assert not marker.exists()
    # What reads the artifact's own record refuses the row.
    export = cli(ran, "export", "latest", "--format", "prov", "-o", str(tmp_path / "prov.json"))
    assert_one_line(export, 3, f"artifacts[{digest}]")
    assert not marker.exists()

    rebuilt = cli(ran, "audit", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"fixed artifacts[{digest}]: blob is '{evil}'" in rebuilt.stdout
    assert "1 of " in rebuilt.stdout
    assert cli(ran, "audit", "verify").returncode == 0
    again = json.loads(cli(ran, "audit", "rebuild", "--json").stdout)
    assert again["changed"] == []
    done = cli(ran, "run", "pipe.py", "-q", "-p", "offset=2")
    assert done.returncode == 0, done.stderr
    assert "1 executed, 1 cached" in done.stdout
    assert not marker.exists()


def test_audit_lists_missing_and_extra_rows(ran: Path) -> None:
    _tamper(ran, "DELETE FROM runs")
    _tamper(
        ran,
        "INSERT INTO step_run_io (step_run_id, direction, name, digest, run_id) "
        "VALUES ('S', 'out', 'output', 'blake3:00', 'R')",
    )
    report = json.loads(cli(ran, "audit", "verify", "--json").stdout)
    assert sorted((p["table"], p["problem"]) for p in report["derived"]) == [
        ("runs", "missing"),
        ("step_run_io", "extra"),
    ]
    rebuilt = cli(ran, "audit", "rebuild")
    assert "added runs[" in rebuilt.stdout
    assert "removed step_run_io[S, out, output]" in rebuilt.stdout
    assert cli(ran, "audit", "verify").returncode == 0


def test_audit_rebuild_refuses_a_broken_chain(ran: Path) -> None:
    _tamper(ran, "UPDATE events SET actor = 'mallory' WHERE seq = 2")
    _tamper(ran, "UPDATE runs SET status = 'failed'")
    line = assert_one_line(cli(ran, "audit", "rebuild"), 3, "broken at sequence 2", "not rebuilt")
    assert "restore the ledger from a backup" in line
    with sqlite3.connect(ran / ".pipetrail" / "ledger.db") as conn:
        assert conn.execute("SELECT status FROM runs").fetchone()[0] == "failed"
    verify = cli(ran, "audit", "verify")
    assert verify.returncode == 3
    assert "TAMPERED at sequence 2" in verify.stderr
