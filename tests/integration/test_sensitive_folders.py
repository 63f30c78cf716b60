"""Sensitive folder sources sealed file by file; sensitive s3:// sources refused with why."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import DefinitionError
from pipetrail.execution.gc import collect_garbage
from pipetrail.execution.integrity import verify_artifacts
from pipetrail.execution.reencryption import reencrypt_project
from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

NAMES = ["Zebulon-Quartermain", "Ottilie-Farnsworth"]

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(folder: Path) -> str:
    return "|".join(sorted(p.read_text() for p in folder.rglob("*.txt")))

@pipeline
def p():
    return read(source("ward", classification="pii"))
"""


def _write_folder(root: Path) -> None:
    (root / "ward" / "beds").mkdir(parents=True)
    (root / "ward" / "a.txt").write_text(f"{NAMES[0]}, room 12")
    (root / "ward" / "beds" / "b.txt").write_text(f"{NAMES[1]}, room 14")
    (root / "ward" / "beds" / "same.txt").write_text(f"{NAMES[1]}, room 14")


def _on_disk(root: Path) -> bytes:
    found = []
    for folder, _, names in os.walk(root / ".pipetrail"):
        for name in names:
            found.append((root / folder / name).read_bytes())
    return b"\n".join(found)


def test_a_sensitive_folder_is_sealed_file_by_file_and_reproduced(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    _write_folder(project_root)
    definition = files.load(unique("ward"), PIPELINE)
    run = run_pipeline(definition, {}, project, RunOptions())
    assert not any(n.encode() in _on_disk(project_root) for n in NAMES)
    assert b"same.txt" not in _on_disk(project_root)  # file names are sealed too
    (observed,) = [e.payload for e in project.ledger.iter_events() if e.kind == "source.observed"]
    assert observed["kind"] == "folder"
    assert observed["by_reference"] is False
    folder = project.reader().artifact(observed["digest"])
    assert folder is not None
    assert folder["meta"]["sealed"]
    assert folder["meta"]["folder"]
    assert len(folder["meta"]["files"]) == 2  # two distinct contents
    for keyed in folder["meta"]["files"]:
        row = project.reader().artifact(keyed)
        assert row is not None
        assert row["meta"]["sealed"]
    report = verify_artifacts(project)
    assert report["ok"], report
    assert report["sealed"]["decrypted"] == 4  # the manifest, the two files, the output

    # Reproduced from the sealed copy, not from today's folder.
    (project_root / "ward" / "a.txt").write_text("someone else")
    from pipetrail.verify import reproduce_run

    done = reproduce_run(project, run.id, definition=definition)
    assert done.verdict == "reproduced", done
    assert not any(n.encode() in _on_disk(project_root) for n in NAMES)

    # Re-encryption covers every file; garbage collection keeps them.
    moved = reencrypt_project(project)
    assert moved["objects"] == 4  # manifest, two files, the output
    collect_garbage(project, grace=0)
    report = verify_artifacts(project)
    assert report["ok"], report
    assert report["sealed"]["decrypted"] == 4


def test_a_sensitive_s3_source_is_refused_with_the_reason(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    source = PIPELINE.replace('source("ward"', 'source("s3://bucket/ward/"')
    with pytest.raises(DefinitionError, match=r"would have to write the object's plaintext"):
        run_pipeline(files.load(unique("s3"), source), {}, project, RunOptions())


def test_a_kept_run_keeps_the_sealed_files_of_a_folder_a_deleted_run_stored(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    from pipetrail.execution.deletion import delete_runs

    _write_folder(project_root)
    definition = files.load(unique("ward"), PIPELINE)
    first = run_pipeline(definition, {}, project, RunOptions())
    second = run_pipeline(definition, {}, project, RunOptions())  # names the same folder
    delete_runs(project, [first.id], reason="scratch")
    collect_garbage(project, grace=0)
    report = verify_artifacts(project)
    assert report["ok"], report
    assert report["missing"] == []
    assert report["sealed"]["decrypted"] == 4
    assert second.id
