"""Running a pipeline leaves the process as it found it: modules, paths, random states, streams."""

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


RANDOM_STEP = """
import random

import numpy as np
from pipetrail import pipeline, step

@step(cache=False)
def draw() -> list[float]:
    return [random.random(), float(np.random.rand())]

@pipeline
def {name}():
    return draw()
"""


def test_a_run_leaves_the_random_states_as_it_found_them(project_root: Path) -> None:
    import random

    import numpy as np

    pipeline_file = project_root / "pipe_rng.py"
    pipeline_file.write_text(textwrap.dedent(RANDOM_STEP.format(name="pipe_rng")))
    project = Project.at(project_root)
    try:
        random.seed(99)
        np.random.seed(99)
        expected = (random.random(), float(np.random.rand()))
        random.seed(99)
        np.random.seed(99)
        run = run_pipeline(load_pipeline(str(pipeline_file))[0], {}, project, RunOptions())
        assert (random.random(), float(np.random.rand())) == expected
        # The step itself still drew from its own seed: the same values every run.
        again = run_pipeline(load_pipeline(str(pipeline_file))[0], {}, project, RunOptions())
        assert run.outputs == again.outputs
        assert run.outputs[0] != expected[0]
    finally:
        project.close()


PRINTING_STEP = """
import time
from pathlib import Path
from pipetrail import pipeline, step

@step(cache=False)
def talk(gate: str) -> int:
    print("from the step")
    (Path(gate) / "ready").write_text("1")
    while not (Path(gate) / "release").exists():
        time.sleep(0.005)
    print("step again")
    return 1

@pipeline
def {name}(gate: str):
    return talk(gate)
"""


def test_another_thread_printing_during_a_step_stays_out_of_its_log(
    project_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading
    import time

    pipeline_file = project_root / "pipe_talk.py"
    pipeline_file.write_text(textwrap.dedent(PRINTING_STEP.format(name="pipe_talk")))
    gate = project_root / "gate"
    gate.mkdir()

    def other() -> None:
        deadline = time.monotonic() + 30
        while not (gate / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        print("from another thread")
        (gate / "release").write_text("1")

    thread = threading.Thread(target=other)
    thread.start()
    project = Project.at(project_root)
    try:
        run = run_pipeline(
            load_pipeline(str(pipeline_file))[0], {"gate": str(gate)}, project, RunOptions()
        )
        thread.join()
        from pipetrail.capture.log_lines import render_text

        logs = render_text(project.store.get_bytes(run.step("talk")["logs"]))
        assert logs == "[stdout] from the step\n[stdout] step again\n"
        assert "from another thread\n" in capsys.readouterr().out
    finally:
        project.close()
