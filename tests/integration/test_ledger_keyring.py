"""The keyring kept in the ledger: a team sharing a database distributes only the KEK."""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import StoreError
from pipetrail.execution.project import Project
from pipetrail.execution.reencryption import reencrypt_project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.read.project import Project as ReadProject

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

NAME = "Zebulon-Quartermain"

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    return path.read_text().upper()

@pipeline
def p():
    return read(source("patients.txt", classification="pii"))
"""


def _toml(metadata: str, objects: Path, keyring: str = "ledger") -> str:
    return (
        f'[pipetrail]\nmetadata = "{metadata}"\nartifacts = "{objects}"\n'
        f'[encryption]\nprovider = "env"\nkeyring = "{keyring}"\n'
    )


def _keyring_events(project: Project) -> list[dict]:
    return [e.payload for e in project.ledger.iter_events() if e.kind == "keys.keyring"]


@pytest.mark.postgres
def test_a_team_shares_the_keyring_through_the_ledger(
    metadata_url: str,
    tmp_path: Path,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kek = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("PIPETRAIL_KEK", kek)
    objects = tmp_path / "shared-objects"
    (project_root / "pipetrail.toml").write_text(_toml(metadata_url, objects))
    (project_root / "patients.txt").write_text(f"{NAME}, room 12\n")
    definition = files.load(unique("pii"), PIPELINE)
    proj = Project.at(project_root)
    try:
        run = run_pipeline(definition, {}, proj, RunOptions())
        (ring,) = _keyring_events(proj)
        text = json.dumps(ring)
        assert "wrapped" in text
        assert not (project_root / ".pipetrail" / "keyring.json").exists()
        output = next(
            e.payload["outputs"]["output"]
            for e in proj.ledger.iter_events()
            if e.kind == "step.completed"
        )
    finally:
        proj.close()

    # A colleague's checkout: the same database and store, the KEK, no keyring file.
    other = tmp_path / "colleague"
    other.mkdir()
    (other / "pipetrail.toml").write_text(_toml(metadata_url, objects))
    reader = ReadProject.at(other)
    try:
        assert reader.load(output) == f"{NAME}, room 12\n".upper()
    finally:
        reader.close()

    # Re-encryption and rotation keep their keyring in the ledger too.
    colleague = Project.at(other)
    try:
        done = reencrypt_project(colleague)
        assert done["objects"] >= 2
        assert len(_keyring_events(colleague)) == 3  # pending, then switched
        from pipetrail.execution.key_rotation import rotate_project_keys

        monkeypatch.setenv("OLD_KEK", kek)
        monkeypatch.setenv("PIPETRAIL_KEK", base64.b64encode(os.urandom(32)).decode())
        rotated = rotate_project_keys(colleague, old_variable="OLD_KEK")
        assert rotated["new_kek"] not in rotated["old_keks"]
    finally:
        colleague.close()
    again = ReadProject.at(project_root)
    try:
        assert again.load(output) == f"{NAME}, room 12\n".upper()
        assert run.id
    finally:
        again.close()
    # Without the KEK nothing opens, whatever the ledger holds.
    monkeypatch.delenv("PIPETRAIL_KEK")
    blind = ReadProject.at(other)
    try:
        with pytest.raises(StoreError, match="PIPETRAIL_KEK"):
            blind.load(output)
    finally:
        blind.close()


def test_a_keyring_file_is_imported_into_the_ledger_once(
    tmp_path: Path,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPETRAIL_KEK", base64.b64encode(os.urandom(32)).decode())
    metadata = f"sqlite:///{tmp_path / 'ledger.db'}"
    objects = tmp_path / "objects"
    (project_root / "pipetrail.toml").write_text(
        _toml(metadata, objects, ".pipetrail/keyring.json")
    )
    (project_root / "patients.txt").write_text(f"{NAME}, room 12\n")
    definition = files.load(unique("pii"), PIPELINE)
    proj = Project.at(project_root)
    try:
        run_pipeline(definition, {}, proj, RunOptions())
        assert _keyring_events(proj) == []
    finally:
        proj.close()
    file_ring = json.loads((project_root / ".pipetrail" / "keyring.json").read_text())
    (project_root / "pipetrail.toml").write_text(_toml(metadata, objects))
    proj = Project.at(project_root)
    try:
        second = run_pipeline(definition, {}, proj, RunOptions())  # a cache hit, same key
        assert [e.kind for e in proj.ledger.iter_events() if e.run_id == second.id].count(
            "step.cached"
        ) == 1
        (ring,) = _keyring_events(proj)
        assert ring["keyring"] == file_ring
    finally:
        proj.close()
