"""``pipetrail export RUN --format intoto --sign`` and ``pipetrail attest verify FILE``."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING

import pytest

from pipetrail.governance.keys import create_key
from tests.e2e.test_audit_checkpoints_cli import Project, project

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e
__all__ = ["project"]  # the fixture, shared


def alice_key(project: Project) -> str:
    from pipetrail.governance.keys import load_signer

    return "alice=" + load_signer("alice", folder=project.home).public_key.text


def test_a_signed_statement_verifies_and_carries_sha256_of_the_bytes(
    project: Project, tmp_path: Path
) -> None:
    out = tmp_path / "run.intoto.json"
    done = project.cli("export", "latest", "--format", "intoto", "--sign", "-o", str(out))
    assert done.returncode == 0, done.stderr
    envelope = json.loads(out.read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    for subject in statement["subject"]:
        target = tmp_path / subject["name"]
        got = project.cli("get", f"blake3:{subject['digest']['blake3']}", "-o", str(target))
        assert got.returncode == 0, got.stderr
        # What a SLSA tool compares: the SHA-256 of the bytes a user gets.
        expected = hashlib.sha256(target.read_bytes()).hexdigest()
        assert subject["digest"]["sha256"] == expected
    checked = project.cli("attest", "verify", str(out), "--key", alice_key(project), "--json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["signed_by"] == ["alice"]
    assert {s["stored"] for s in report["subjects"]} == {"matches"}


def test_tampered_or_foreign_attestations_exit_3(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "run.intoto.json"
    assert (
        project.cli("export", "latest", "--format", "intoto", "--sign", "-o", str(out)).returncode
        == 0
    )
    envelope = json.loads(out.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(envelope))
    done = project.cli("attest", "verify", str(bad), "--key", alice_key(project))
    assert done.returncode == 3
    assert "does not verify: the payload was changed" in done.stderr
    create_key("mallory", folder=project.home)
    from pipetrail.governance.keys import load_signer

    mallory = "mallory=" + load_signer("mallory", folder=project.home).public_key.text
    done = project.cli("attest", "verify", str(out), "--key", mallory)
    assert done.returncode == 3
    assert "no signature by a known key" in done.stderr
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    done = project.cli("attest", "verify", str(junk), "--key", alice_key(project))
    assert done.returncode == 3
    assert "not a DSSE envelope" in done.stderr


def test_bad_input_exits_2(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    cases = [
        (("export", "latest", "--format", "prov", "--sign"), "--sign works with --format intoto"),
        (("attest", "verify", str(out)), "name the keys you trust"),
        (("attest", "verify", str(out), "--key", alice_key(project)), "cannot read"),
    ]
    for args, message in cases:
        done = project.cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr
    done = project.cli("export", "latest", "--format", "intoto", "--sign", user="bob")
    assert done.returncode == 2
    assert "no signing key for 'bob'" in done.stderr
