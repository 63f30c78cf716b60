"""A keyring lost from a project that holds sealed content is never made again: it fails closed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import PipetrailError, StoreError
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger.event_reads import sealed_content
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

# A sensitive source kept by reference, read by a step that fails: the ledger records the
# source under its keyed digest and nothing sealed.
KEYED_ONLY = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    raise ValueError("not today")

@pipeline
def p():
    return read(source("patients.txt", classification="pii", by_reference=True))
"""


def _output(project: Project, run_id: str) -> str:
    return str(
        next(
            e.payload["outputs"]["output"]
            for e in project.ledger.iter_events()
            if e.run_id == run_id and e.kind == "step.completed"
        )
    )


def _refused(caught: pytest.ExceptionInfo[PipetrailError], ring: Path) -> None:
    message = str(caught.value)
    assert f"no keyring at {ring}" in message
    assert "already holds sealed artifacts" in message
    assert "restore the keyring" in message
    assert "from a backup" in message


def test_a_keyring_deleted_under_a_running_process_is_not_made_again(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    """A long-lived process (a server, a notebook) fails closed instead of sealing anew."""
    (project_root / "patients.txt").write_text(f"{NAME}, room 12\n")
    definition = files.load(unique("pii"), PIPELINE)
    ring = project_root / ".pipetrail" / "keyring.json"
    long_lived = ReadProject.at(project_root)
    try:
        first = run_pipeline(definition, {}, long_lived, RunOptions())
        output = _output(long_lived, first.id)
        backup = ring.read_bytes()
        ring.unlink()
        (project_root / "patients.txt").write_text(f"{NAME}, room 14\n")  # new content
        with pytest.raises(PipetrailError) as caught:
            run_pipeline(definition, {}, long_lived, RunOptions())
        _refused(caught, ring)
        assert not ring.exists()  # no keyring nobody has a backup of
        with pytest.raises(StoreError, match="no keyring"):
            long_lived.load(output)
        ring.write_bytes(backup)  # restored: everything reads and seals again
        ring.chmod(0o600)
        assert long_lived.load(output) == f"{NAME.upper()}, ROOM 12\n"
        again = run_pipeline(definition, {}, long_lived, RunOptions())
        assert again.load(_output(long_lived, again.id)) == f"{NAME.upper()}, ROOM 14\n"
        assert ring.read_bytes() == backup
    finally:
        long_lived.close()


@pytest.mark.postgres
def test_a_new_process_reads_the_ledger_to_know_the_keyring_was_lost(
    metadata_url: str,
    tmp_path: Path,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
) -> None:
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\nmetadata = "{metadata_url}"\nartifacts = "{tmp_path / "objects"}"\n'
    )
    (project_root / "patients.txt").write_text(f"{NAME}, room 12\n")
    definition = files.load(unique("pii"), PIPELINE)
    ring = project_root / ".pipetrail" / "keyring.json"
    proj = Project.at(project_root)
    try:
        assert sealed_content(proj.reader()) is None  # nothing yet: the first write makes one
        run_pipeline(definition, {}, proj, RunOptions())
        held = sealed_content(proj.reader())
        assert held is not None
        assert held.startswith("sealed artifacts (such as blake3:")
    finally:
        proj.close()
    ring.unlink()
    (project_root / "patients.txt").write_text(f"{NAME}, room 14\n")
    fresh = Project.at(project_root)
    try:
        with pytest.raises(PipetrailError) as caught:
            run_pipeline(definition, {}, fresh, RunOptions())
        _refused(caught, ring)
        assert not ring.exists()
    finally:
        fresh.close()


@pytest.mark.postgres
def test_a_source_recorded_under_a_keyed_digest_needs_its_keyring(
    metadata_url: str,
    tmp_path: Path,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
) -> None:
    """Keyed digests alone (no sealed object) also tie the ledger to the keyring's keys."""
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\nmetadata = "{metadata_url}"\nartifacts = "{tmp_path / "objects"}"\n'
    )
    (project_root / "patients.txt").write_text(f"{NAME}, room 12\n")
    proj = Project.at(project_root)
    try:
        with pytest.raises(PipetrailError, match="not today"):
            run_pipeline(files.load(unique("keyed"), KEYED_ONLY), {}, proj, RunOptions())
        held = sealed_content(proj.reader())
        assert held is not None
        assert held.startswith("sensitive sources recorded under keyed digests (run ")
    finally:
        proj.close()
    (project_root / ".pipetrail" / "keyring.json").unlink()
    fresh = Project.at(project_root)
    try:
        with pytest.raises(StoreError, match="already holds sensitive sources recorded under"):
            fresh.sealing_keys(create=True)
    finally:
        fresh.close()


def test_a_process_that_opened_the_keyring_never_makes_another(project_root: Path) -> None:
    """Even before anything sealed is recorded, keys opened here mean a keyring existed."""
    proj = Project.at(project_root)
    try:
        keys = proj.sealing_keys(create=True)  # the project's first keyring
        ring = project_root / ".pipetrail" / "keyring.json"
        ring.unlink()
        with pytest.raises(StoreError, match="content sealed by this process") as caught:
            proj.sealing_keys(create=True)
        assert str(ring) in str(caught.value)
        assert not ring.exists()
        other = Project.at(project_root)  # nothing is recorded: a new process may start over
        try:
            assert other.sealing_keys(create=True).current != keys.current
        finally:
            other.close()
    finally:
        proj.close()
