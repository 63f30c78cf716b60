"""The CLI at its boundaries: outside a project, bad params, full disks.

Commands run in this process, except the params past the limits: a child process takes
them, so a limit that failed would cost that child and not the test session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    import socket
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]


def cli(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``pipetrail ARGS`` in ``folder``, run in this process."""
    return cli_inline(folder, *args, env={"COLUMNS": "80", **env}, unset=("PIPETRAIL_",))


def cli_process(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pipetrail ARGS`` in ``folder`` in a child process (for input that could harm one)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPETRAIL_")}
    return subprocess.run(
        [*PIPETRAIL, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean,
    )


READ_ONLY = [
    ("audit", "verify"),
    ("runs",),
    ("show", "latest"),
    ("why", "latest", "train"),
    ("lineage", "latest"),
    ("lineage", "path", "abc", "def"),
    ("diff", "latest", "latest"),
    ("compare", "latest"),
    ("contracts", "latest"),
    ("env", "diff", "latest", "latest"),
    ("env", "export", "latest"),
    ("export", "latest", "--format", "prov"),
    ("store", "verify"),
]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_commands_outside_a_project_say_so_and_create_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = cli(empty, *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: no pipetrail project here")
    assert str(empty) in lines[0]
    assert "pipetrail init" in lines[0]
    assert list(empty.iterdir()) == []


def _tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# `audit verify` opens the ledger itself; what it may create is tested with the ledger.
@pytest.mark.parametrize(
    "args", [args for args in READ_ONLY if args != ("audit", "verify")], ids=" ".join
)
def test_read_only_commands_in_a_new_project_create_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    project = tmp_path / "new"
    project.mkdir()
    assert cli(project, "init").returncode == 0
    before = _tree(project)
    done = cli(project, *args)
    assert done.returncode in (0, 2), done.stderr  # 2: no run to show yet
    assert "Traceback" not in done.stderr
    assert _tree(project) == before


def test_store_verify_in_a_new_project_finds_an_empty_store(tmp_path: Path) -> None:
    project = tmp_path / "new"
    project.mkdir()
    assert cli(project, "init").returncode == 0
    done = cli(project, "store", "verify", "--json")
    assert done.returncode == 0, done.stderr
    assert '"checked": 0' in done.stdout
    assert not (project / ".pipetrail" / "objects").exists()


def test_read_only_commands_work_in_a_folder_with_state_but_no_config(tmp_path: Path) -> None:
    # `pipetrail run` without `pipetrail init` makes the working folder a project.
    folder = tmp_path / "bare"
    (folder / ".pipetrail").mkdir(parents=True)
    done = cli(folder, "runs")
    assert done.returncode == 0, done.stderr
    assert "no runs yet" in done.stdout


def test_read_only_commands_search_parent_folders(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text("[pipetrail]\n")
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    done = cli(below, "runs")
    assert done.returncode == 0, done.stderr
    assert list(below.iterdir()) == []


MISUSED_PLACEHOLDER = """
from pipetrail import pipeline, step

@step
def load() -> list[int]:
    return [1, 2, 3]

@step
def total(rows: list[int]) -> int:
    return sum(rows)

@pipeline
def misuse():
    rows = load()
    if len(rows) > 2:
        return total(rows)
    return rows
"""


def test_misusing_a_placeholder_in_a_pipeline_is_one_line_and_records_nothing(
    tmp_path: Path,
) -> None:
    assert cli(tmp_path, "init").returncode == 0
    (tmp_path / "misuse.py").write_text(MISUSED_PLACEHOLDER)
    done = cli(tmp_path, "run", "misuse.py", "-q")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: the output 'output' of step 'load' has no value while the pipeline is being "
        "built, so len() cannot be taken; do this inside a step, which receives the real value"
    ]
    assert _runs_recorded(tmp_path) == 0


ONE_STEP = """
from pipetrail import pipeline, step

@step
def make(n: int) -> list[int]:
    return list(range(n))

@pipeline
def one(n: int = 3):
    return make(n)
"""


@pytest.mark.parametrize("ref", ["", "%", "_", "\\", "*"])
def test_a_ref_that_is_no_prefix_matches_no_run(tmp_path: Path, ref: str) -> None:
    assert cli(tmp_path, "init").returncode == 0
    (tmp_path / "one.py").write_text(ONE_STEP)
    assert cli(tmp_path, "run", "one.py", "-q").returncode == 0
    for args in (("show", ref), ("export", ref, "--format", "prov"), ("lineage", ref)):
        done = cli(tmp_path, *args)
        assert done.returncode == 2, (args, done.stdout)
        assert done.stderr.startswith("error: "), done.stderr
        assert "matches several" not in done.stderr


TAKES_ANYTHING = """
from typing import Any
from pipetrail import pipeline, step

@step
def use(x: Any) -> int:
    return 1

@pipeline
def anything(x: list = []):
    return use(x)
"""


def test_params_past_the_limits_are_one_line_and_exit_2_quickly(tmp_path: Path) -> None:
    from tests.unit.execution.test_params_limits import BOMB

    assert cli(tmp_path, "init").returncode == 0
    (tmp_path / "anything.py").write_text(TAKES_ANYTHING)
    (tmp_path / "bomb.yaml").write_text(BOMB)
    (tmp_path / "deep.json").write_text('{"x": ' + "[" * 5000 + "]" * 5000 + "}")
    cases = [
        (("-c", "bomb.yaml"), "params file bomb.yaml, line "),
        (("-c", "deep.json"), "params file deep.json, line 1: "),
        (("-p", "x=" + "[" * 5000 + "]" * 5000), "override (-p or run() argument): parameter 'x'"),
    ]
    for args, start in cases:
        started = time.monotonic()
        done = cli_process(tmp_path, "run", "anything.py", "-q", *args)
        assert time.monotonic() - started < 20
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: " + start), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert _runs_recorded(tmp_path) == 0


def test_export_send_to_a_trickling_collector_stops_at_the_deadline(tmp_path: Path) -> None:
    from tests.unit.lineage_exports.test_transport import RawServer

    def trickle(conn: socket.socket) -> None:
        server.send(conn, b"HTTP/1.1 201 Created\r\nX-Slow: ")
        for _ in range(300):
            server.send(conn, b"a")
            time.sleep(0.05)

    server = RawServer(trickle)
    try:
        assert cli(tmp_path, "init").returncode == 0
        (tmp_path / "one.py").write_text(ONE_STEP)
        assert cli(tmp_path, "run", "one.py", "-q").returncode == 0
        started = time.monotonic()
        args = ("export", "latest", "--format", "openlineage", "--send", server.url)
        done = cli(tmp_path, *args, "--timeout", "1")
        assert time.monotonic() - started < 8
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            f"error: the OpenLineage collector at {server.url}/api/v1/lineage did not take the "
            "START event of job 'one' within 1 s (the deadline for the whole request, "
            "--timeout); check that the collector is healthy, or allow more time"
        ]
    finally:
        server.close()


def _runs_recorded(root: Path) -> int:
    """How many run events the project's ledger holds (``init`` records only its admin)."""
    import sqlite3

    path = root / ".pipetrail" / "ledger.db"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM events WHERE kind LIKE 'run.%'").fetchone()[0])
    finally:
        db.close()
