"""A source may not be, or hold, pipetrail's own state: the ``.pipetrail`` folder and the store.

Whatever the path that leads there (``..``, a symlink, ``allow_outside=True``), such a
source is refused before anything is recorded.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import DefinitionError
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from tests.integration.test_runner import FOLDER

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.core.pipeline import PipelineDefinition
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration


def _pipeline(
    files: PipelineFiles, unique: Callable[[str], str], declared: str
) -> PipelineDefinition:
    return files.load(unique("pipe"), FOLDER.replace('source("data/texts")', declared))


def _first_run(files: PipelineFiles, project: Project, unique: Callable[[str], str]) -> int:
    texts = project.root / "data" / "texts"
    texts.mkdir(parents=True)
    (texts / "a.txt").write_text("1\n")
    run_pipeline(_pipeline(files, unique, 'source("data/texts")'), {}, project, RunOptions())
    return project.reader().event_count()


@pytest.mark.parametrize(
    "declared",
    [
        'source(".pipetrail/objects")',
        'source(".pipetrail/ledger.db")',
        'source(".pipetrail/cache")',
        'source("data/../.pipetrail/objects")',
        'source("./.pipetrail//objects/")',
        'source(".pipetrail/objects", allow_outside=True)',
        'source(".pipetrail/objects", by_reference=True)',
    ],
)
def test_sources_inside_the_state_folder_are_refused(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], declared: str
) -> None:
    events = _first_run(files, project, unique)
    with pytest.raises(DefinitionError, match="where pipetrail keeps its own state") as caught:
        run_pipeline(_pipeline(files, unique, declared), {}, project, RunOptions())
    assert ".pipetrail" in str(caught.value)
    assert project.reader().event_count() == events


def test_a_symlink_into_the_state_folder_is_refused(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    events = _first_run(files, project, unique)
    os.symlink(project.root / ".pipetrail" / "objects", project.root / "linked")
    with pytest.raises(DefinitionError, match=r"leads to .*objects, which is inside"):
        run_pipeline(_pipeline(files, unique, 'source("linked")'), {}, project, RunOptions())
    assert project.reader().event_count() == events


def test_a_store_outside_the_project_is_protected_too(
    files: PipelineFiles, project_root: Path, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    store = tmp_path / "elsewhere" / "store"
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nartifacts = "{store}"\n')
    project = Project.at(project_root)
    try:
        events = _first_run(files, project, unique)
        for declared in (
            f'source("{store}", allow_outside=True)',
            f'source("{store.parent}", allow_outside=True)',
        ):
            with pytest.raises(DefinitionError, match=str(store)):
                run_pipeline(_pipeline(files, unique, declared), {}, project, RunOptions())
        assert project.reader().event_count() == events
    finally:
        project.close()


@pytest.mark.parametrize("allow_outside", [True, False], ids=["allow_outside", "confined"])
@pytest.mark.parametrize(
    ("link_to", "where"),
    [
        (".pipetrail/objects", "inside"),
        (".pipetrail/ledger.db", "inside"),
        (".pipetrail", "inside"),
        (".", "a folder holding"),  # the project root holds .pipetrail
    ],
    ids=["objects", "ledger", "state", "root"],
)
def test_a_symlink_inside_a_folder_source_into_the_state_folder_is_refused(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    link_to: str,
    where: str,
    allow_outside: bool,
) -> None:
    events = _first_run(files, project, unique)
    link = project.root / "data" / "texts" / "linked"
    os.symlink(project.root / link_to, link)
    target = os.path.realpath(project.root / link_to)
    declared = 'source("data/texts"' + (", allow_outside=True)" if allow_outside else ")")
    with pytest.raises(DefinitionError) as caught:
        run_pipeline(_pipeline(files, unique, declared), {}, project, RunOptions())
    message = str(caught.value)
    assert message.startswith(f"source 'data/texts': {link} is a symlink to {target}, {where} ")
    assert "where pipetrail keeps its own state" in message
    assert "remove the link" in message
    assert project.reader().event_count() == events


def test_a_symlink_inside_a_folder_source_into_a_store_outside_the_project_is_refused(
    files: PipelineFiles, project_root: Path, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    store = tmp_path / "elsewhere" / "store"
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nartifacts = "{store}"\n')
    project = Project.at(project_root)
    try:
        events = _first_run(files, project, unique)
        nested = project_root / "data" / "texts" / "deeper"
        nested.mkdir()
        os.symlink(store, nested / "objects")
        declared = 'source("data/texts", allow_outside=True)'
        with pytest.raises(DefinitionError, match=rf"is a symlink to {store}, inside {store}"):
            run_pipeline(_pipeline(files, unique, declared), {}, project, RunOptions())
        assert project.reader().event_count() == events
        # A symlink to data outside the project stays allowed with allow_outside=True.
        (nested / "objects").unlink()
        outside = tmp_path / "outside-data"
        outside.mkdir()
        (outside / "b.txt").write_text("1\n2\n")
        os.symlink(outside, nested / "more")
        run = run_pipeline(_pipeline(files, unique, declared), {}, project, RunOptions())
        assert run.outputs == {"a.txt": 1}  # count_lines reads the top level's *.txt only
        observed = project.reader().sources(run.id)[0]
        manifest = json.loads(project.store.get_bytes(observed["digest"]))
        assert sorted(manifest["files"]) == ["a.txt", "deeper/more/b.txt"]
    finally:
        project.close()
