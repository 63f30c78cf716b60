"""Sensitive data from the command line: show, lineage, exports, store verify, keys rotate."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_cli import cli, run_json

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    text = path.read_text()
    print("first row:", text.splitlines()[0])  # what a step prints may show the data
    return text

@step
def shout(text: str) -> str:
    return text.upper()

@pipeline
def p():
    return shout(read(source("data/patients.txt", classification="pii")))
"""
PATIENT_ROW = "Zebulon Quartermain, 1961-04-02, room 12\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "clinic"
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "data").mkdir()
    (root / "data" / "patients.txt").write_text(PATIENT_ROW)
    (root / "p.py").write_text(textwrap.dedent(PIPELINE))
    return root


def _everything_written(root: Path) -> bytes:
    state = root / ".pipetrail"
    return b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())


def test_labels_show_everywhere_and_nothing_leaks(project: Path) -> None:
    run = run_json(project, "p.py")
    run_id = run["run_id"]
    assert b"Zebulon" not in _everything_written(project)
    assert b"ZEBULON" not in _everything_written(project)

    shown = cli(project, "show", run_id, check=True).stdout
    assert "data/patients.txt" in shown
    assert "[pii]" in shown
    assert "shout: classification output pii" in shown

    summary = json.loads(cli(project, "show", run_id, "--json", check=True).stdout)
    shout = next(s for s in summary["steps"] if s["node_id"] == "shout")
    digest = shout["outputs"]["output"]
    lineage = cli(project, "lineage", digest, "--up", check=True).stdout
    assert "[pii, encrypted, keyed digest]" in lineage

    exported = cli(project, "export", run_id, "--format", "openlineage", check=True).stdout
    events = [json.loads(line) for line in exported.splitlines() if line.strip()]
    facets = [
        d["facets"]["pipetrail_classification"]
        for e in events
        for d in [*e.get("inputs", []), *e.get("outputs", [])]
        if "pipetrail_classification" in d["facets"]
    ]
    assert facets
    assert {f["label"] for f in facets} == {"pii"}
    assert all(f["keyedDigest"] for f in facets)
    prov = json.loads(cli(project, "export", run_id, "--format", "prov", check=True).stdout)
    labels = {e.get("pipetrail:classification") for e in prov["entity"].values()}
    assert "pii" in labels

    # The captured output is sealed too, and reads back decrypted.
    logs = cli(project, "logs", run_id, "read", check=True).stdout
    assert "first row: Zebulon Quartermain" in logs

    # The value reads back decrypted.
    got = cli(project, "get", digest, "-o", "-", check=True).stdout
    assert "ZEBULON" in got


def test_store_verify_decrypts_and_keys_rotate_keeps_everything_readable(project: Path) -> None:
    run_json(project, "p.py")
    verified = cli(project, "store", "verify", check=True).stdout
    assert "encrypted objects decrypted" in verified
    assert "store intact" in verified

    rotated = json.loads(cli(project, "keys", "rotate", "--json", check=True).stdout)
    assert rotated["retired"] is True
    assert rotated["new_kek"] not in rotated["old_keks"]
    from pipetrail.execution.project import Project

    opened = Project.at(project)
    try:
        (event,) = [e for e in opened.ledger.iter_events() if e.kind == "keys.rotated"]
        assert event.payload["new_kek"] == rotated["new_kek"]
        assert event.payload["old_keks"] == rotated["old_keks"]
    finally:
        opened.close()
    again = cli(project, "store", "verify", check=True).stdout
    assert "store intact" in again
    run_json(project, "p.py")  # after rotation, the sealed outputs are still cache hits
    audit = cli(project, "audit", "verify", check=True)
    assert audit.returncode == 0

    # Without the key file: reads fail closed, naming the artifact; verify says so.
    (project / ".pipetrail" / "private" / "kek").unlink()
    summary = json.loads(cli(project, "show", "latest", "--json", check=True).stdout)
    digest = next(s for s in summary["steps"] if s["node_id"] == "shout")["outputs"]["output"]
    got = cli(project, "get", digest, "-o", "-")
    assert got.returncode != 0
    assert "Traceback" not in got.stderr
    assert digest in got.stderr or digest[:19] in got.stderr
    assert "no key file" in got.stderr
    blind = cli(project, "store", "verify", check=True).stdout
    assert "re-hashed but not decrypted" in blind


def test_reproduce_reads_the_sealed_copy_of_a_sensitive_source(project: Path) -> None:
    run_id = run_json(project, "p.py")["run_id"]
    # The live file changes: the reproduction uses the run's sealed copy, not today's data.
    (project / "data" / "patients.txt").write_text("someone else entirely\n")
    done = cli(project, "reproduce", run_id, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"] == "reproduced"
    assert b"Zebulon" not in _everything_written(project)
    # Without the key the sealed copy cannot be read: refused with a message.
    (project / ".pipetrail" / "private" / "kek").unlink()
    refused = cli(project, "reproduce", run_id)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "key file" in refused.stderr


def test_keys_rotate_reencrypt_rewrites_sealed_objects(project: Path) -> None:
    first = run_json(project, "p.py")
    before = cli(project, "logs", first["run_id"], "read", check=True).stdout
    assert "Zebulon" in before
    done = cli(project, "keys", "rotate", "--reencrypt", check=True).stdout
    assert "sealed object(s) re-encrypted under data key" in done
    again = cli(project, "keys", "rotate", "--reencrypt", "--json", check=True)
    payload = json.loads(again.stdout)
    assert payload["reencrypted"] is True
    assert payload["objects"] >= 4  # both outputs, the source's copy, the sealed log
    assert cli(project, "gc", check=True).returncode == 0
    verified = cli(project, "store", "verify", check=True).stdout
    assert "store intact" in verified
    assert cli(project, "logs", first["run_id"], "read", check=True).stdout == before
    second = run_json(project, "p.py")
    assert second["run_id"] != first["run_id"]
    assert cli(project, "audit", "verify", check=True).returncode == 0
    assert b"Zebulon" not in _everything_written(project)


def test_keys_rotate_reencrypt_with_a_wrong_old_key_changes_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64
    import os

    with (project / "pipetrail.toml").open("a") as toml:
        toml.write('\n[encryption]\nprovider = "env"\n')
    monkeypatch.setenv("PIPETRAIL_KEK", base64.b64encode(os.urandom(32)).decode())
    run_json(project, "p.py")
    ring = (project / ".pipetrail" / "keyring.json").read_bytes()
    monkeypatch.setenv("OLD_KEK", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("PIPETRAIL_KEK", base64.b64encode(os.urandom(32)).decode())
    refused = cli(project, "keys", "rotate", "--reencrypt", "--old-variable", "OLD_KEK")
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "does not hold" in refused.stderr
    assert (project / ".pipetrail" / "keyring.json").read_bytes() == ring


RUNNING = """
import subprocess, sys
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    return path.read_text()

@step
def rotate_meanwhile(text: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipetrail.cli.main", "keys", "rotate", "--reencrypt"],
        capture_output=True, text=True,
    )
    return f"{done.returncode}|{done.stderr}"

@pipeline
def p():
    return rotate_meanwhile(read(source("data/patients.txt", classification="pii")))
"""


def test_keys_rotate_reencrypt_is_refused_while_a_run_is_running(project: Path) -> None:
    (project / "r.py").write_text(textwrap.dedent(RUNNING))
    run = run_json(project, "r.py")
    summary = json.loads(cli(project, "show", run["run_id"], "--json", check=True).stdout)
    digest = next(s for s in summary["steps"] if s["node_id"] == "rotate_meanwhile")
    got = cli(project, "get", digest["outputs"]["output"], "-o", "-", check=True).stdout
    code, _, message = got.partition("|")
    assert code != "0"
    assert "cannot re-encrypt while runs are running" in message
    assert "Traceback" not in message
