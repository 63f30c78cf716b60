"""``pipetrail show --logs --git-diff``: captured output and the git diff, read verified."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pipetrail import pipeline, step

@step
def shout(n: int) -> int:
    import logging

    print("hello from shout")
    logging.getLogger("shout").warning("a warning")
    return n * 2

@step
def quiet(x: int) -> int:
    return x + 1

@pipeline
def loud(n: int = 2):
    return quiet(shout(n))
"""


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_inline(root, *args, env={"COLUMNS": "80"})


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if shutil.which("git") is None:  # pragma: no cover - git is part of the test image
        pytest.fail("git is needed for this test")
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    (root / "notes.txt").write_text("first line\n")
    (root / ".gitignore").write_text(".pipetrail/\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "start")
    (root / "notes.txt").write_text("first line\nsecond line, uncommitted\n")
    return root


def _pack_blob(root: Path, digest: str) -> bool:
    with sqlite3.connect(root / ".pipetrail" / "objects" / "pack.db") as conn:
        found = conn.execute("SELECT 1 FROM objects WHERE digest = ?", (digest,)).fetchone()
    return found is not None


def test_show_prints_captured_output_and_git_diff(project: Path) -> None:
    first = _cli(project, "run", "pipeline.py", "--json")
    assert first.returncode == 0, first.stderr
    shown = _cli(project, "show", "latest", "--logs", "--git-diff")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "--- logs of step shout" in out
    assert "[stdout] hello from shout" in out
    assert "WARNING shout: a warning" in out
    assert "--- logs of step quiet\n(nothing captured)" in out
    assert "--- git diff" in out
    assert "+second line, uncommitted" in out
    # Without the options, show prints neither.
    assert "hello from shout" not in _cli(project, "show", "latest").stdout
    # A cached step shows the log of the step run it reused.
    again = _cli(project, "show", "latest", "--logs", "--json")
    data = json.loads(again.stdout)
    assert data["captured_logs"]["shout"]["text"].startswith("[stdout] hello from shout")
    assert "git_diff" not in data
    second = _cli(project, "run", "pipeline.py", "--json")
    assert second.returncode == 0, second.stderr
    cached = _cli(project, "show", "latest", "--logs")
    assert cached.returncode == 0, cached.stderr
    assert "--- logs of step shout (cached: captured by step run" in cached.stdout
    assert "[stdout] hello from shout" in cached.stdout


def test_a_clean_tree_has_no_diff_to_show(project: Path) -> None:
    _git(project, "commit", "-qam", "clean")
    assert _cli(project, "run", "pipeline.py").returncode == 0
    shown = _cli(project, "show", "latest", "--git-diff")
    assert shown.returncode == 0, shown.stderr
    assert "(no uncommitted changes when the run started)" in shown.stdout


def test_a_corrupt_or_missing_blob_is_named_not_printed(project: Path) -> None:
    run = _cli(project, "run", "pipeline.py", "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(_cli(project, "show", "latest", "--json").stdout)
    logs = next(s["logs"] for s in data["steps"] if s["node_id"] == "shout")
    diff = data["git"]["diff_digest"]
    assert _pack_blob(project, logs)
    assert _pack_blob(project, diff)
    with sqlite3.connect(project / ".pipetrail" / "objects" / "pack.db") as conn:
        conn.execute("UPDATE objects SET data = ? WHERE digest = ?", (b"[stdout] forged\n", logs))
        conn.execute("DELETE FROM objects WHERE digest = ?", (diff,))
    shown = _cli(project, "show", "latest", "--logs", "--git-diff")
    assert shown.returncode == 3, shown.stdout + shown.stderr
    assert "forged" not in shown.stdout
    assert "Traceback" not in shown.stderr
    assert f"error: the logs of step shout cannot be shown: Object {logs} is corrupt" in (
        shown.stderr
    )
    assert f"error: the git diff ({diff}) is not in the content store" in shown.stderr
    assert "(could not be read; see the error below)" in shown.stdout
    # The JSON form says the same per blob, and exits 3 too.
    as_json = _cli(project, "show", "latest", "--logs", "--git-diff", "--json")
    assert as_json.returncode == 3
    found = json.loads(as_json.stdout)
    assert found["captured_logs"]["shout"]["text"] is None
    assert "not in the content store" in found["captured_logs"]["shout"]["error"]  # quarantined
    assert found["git_diff"]["error"].startswith("the git diff")
