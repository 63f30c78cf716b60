"""Grants and read records from the command line: grant, revoke, refusals, access log."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.cli import cli_as as cli
from tests.support.cli import ok

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    return path.read_text()

@step
def shout(text: str) -> str:
    return text.upper()

@pipeline
def p():
    return shout(read(source("data/patients.txt", classification="pii")))
"""


def log(root: Path, *args: str) -> list[dict[str, Any]]:
    shown = ok(cli(root, "alice", "access", "log", "--json", *args))
    rows: list[dict[str, Any]] = json.loads(shown)
    return rows


@pytest.fixture
def clinic(tmp_path: Path) -> Path:
    root = tmp_path / "clinic"
    root.mkdir()
    ok(cli(root, "alice", "init"))
    (root / "data").mkdir()
    (root / "data" / "patients.txt").write_text("Zebulon Quartermain, room 12\n")
    (root / "p.py").write_text(textwrap.dedent(PIPELINE))
    return root


def test_reads_need_a_grant_once_governed_and_every_read_is_logged(clinic: Path) -> None:
    # `init` made alice the first admin: her run reads the pii output of `read` by role.
    run = json.loads(ok(cli(clinic, "alice", "run", "p.py", "--json")))
    (first,) = log(clinic)
    assert (first["outcome"], first["user"], first["basis"]) == ("read", "alice", "role:admin")
    rita_key = ok(cli(clinic, "rita", "user", "key", "create")).strip()
    ok(cli(clinic, "alice", "user", "add", "rita", "--key", rita_key, "--role", "researcher"))
    target = f"{run['run_id']}:read"

    refused = cli(clinic, "rita", "get", target, "-o", "-")
    assert refused.returncode == 7, refused.stderr
    assert "labelled pii" in refused.stderr
    assert "pipetrail grant rita --label pii --purpose" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "Zebulon" not in refused.stdout

    # Only an admin grants; the grant names a purpose and an end.
    denied = cli(clinic, "rita", "grant", "rita", "--label", "pii", "--purpose", "mine")
    assert denied.returncode == 7
    assert "needs the role admin" in denied.stderr
    unknown = cli(clinic, "alice", "grant", "bob", "--label", "pii", "--purpose", "x")
    assert unknown.returncode == 2  # bad input, as for every unknown user
    assert "'bob' is not a user" in unknown.stderr
    shown = ok(
        cli(clinic, "alice", "grant", "rita", "--label", "pii", "--purpose", "readmission study",
            "--until", "2999-01-31")
    )  # fmt: skip
    assert "granted rita access to pii content until 2999-01-31" in shown
    listed = json.loads(ok(cli(clinic, "alice", "grant", "list", "--json")))
    assert [(g["user"], g["label"], g["until"]) for g in listed] == [("rita", "pii", "2999-01-31")]

    got = cli(clinic, "rita", "get", target, "-o", "-")
    assert got.returncode == 0, got.stderr
    assert "Zebulon Quartermain" in got.stdout

    ok(cli(clinic, "alice", "grant", "revoke", "rita", "--label", "pii"))
    assert cli(clinic, "rita", "get", target, "-o", "-").returncode == 7
    assert json.loads(ok(cli(clinic, "alice", "grant", "list", "--json"))) == []

    rows = log(clinic, "--label", "pii")
    assert [(r["outcome"], r["user"], r["action"]) for r in rows] == [
        ("read", "alice", "run"),
        ("refused", "rita", "get"),
        ("read", "rita", "get"),
        ("refused", "rita", "get"),
    ]
    assert rows[2]["purpose"] == "readmission study"
    assert all(r["label"] == "pii" and r["digest"].startswith("blake3:") for r in rows)
    assert log(clinic, "--label", "phi") == []
    text = ok(cli(clinic, "alice", "access", "log"))
    assert "refused" in text
    assert "readmission study" in text

    # A run by rita that consumes the pii output is refused too: exit code 7, recorded.
    rerun = cli(clinic, "rita", "run", "p.py", "--no-cache")
    assert rerun.returncode == 7, rerun.stderr + rerun.stdout
    assert "may not read artifact" in rerun.stderr + rerun.stdout
    assert log(clinic)[-1]["action"] == "run"
