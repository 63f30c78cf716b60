"""Pipelines loaded from files run with their own modules and leave the process clean."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from pipetrail.execution.loader import load_pipeline
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from tests.integration.conftest import statuses

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

# The step imports its helper lazily: the folder must be on sys.path while it runs, and
# the code fingerprint must find the helper to cover it.
PIPELINE = """
from pipetrail import pipeline, step

@step
def bump(x: int) -> int:
    import helpers_lr

    return helpers_lr.bump(x)

@pipeline
def {name}(x: int = 1):
    return bump(x)
"""


def write(root: Path, folder: str, body: str) -> Path:
    path = root / folder
    path.mkdir(exist_ok=True)
    (path / "helpers_lr.py").write_text(f"def bump(x):\n    return {body}\n")
    pipeline_file = path / f"pipe_lr_{folder}.py"
    pipeline_file.write_text(textwrap.dedent(PIPELINE.format(name=f"pipe_lr_{folder}")))
    return pipeline_file


def test_two_folders_with_helpers_of_one_name_run_their_own(project_root: Path) -> None:
    one = write(project_root, "one", "x + 1")
    two = write(project_root, "two", "x + 100")
    paths, modules = list(sys.path), set(sys.modules)
    project = Project.at(project_root)
    try:
        first = run_pipeline(load_pipeline(str(one))[0], {}, project, RunOptions())
        second = run_pipeline(load_pipeline(str(two))[0], {}, project, RunOptions())
        assert (first.outputs, second.outputs) == (2, 101)
        assert sys.path == paths
        assert not {"helpers_lr", "pipe_lr_one", "pipe_lr_two"} & set(sys.modules)
        left = {m for m in set(sys.modules) - modules if m.startswith(("helpers_lr", "pipe_lr"))}
        assert not left

        # The helper is covered by the key: editing it is a miss, with the new result.
        again = run_pipeline(load_pipeline(str(two))[0], {}, project, RunOptions())
        assert statuses(again) == {"bump": "cached"}
        write(project_root, "two", "x + 1000")
        edited = run_pipeline(load_pipeline(str(two))[0], {}, project, RunOptions())
        assert statuses(edited) == {"bump": "completed"}
        assert edited.outputs == 1001
    finally:
        project.close()
