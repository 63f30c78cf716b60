"""Refs to step outputs and captured logs, resolved against real runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import NotFoundError, StepFailedError
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.lineage.readout import open_output, resolve_output, step_logs

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

FANOUT = """
from pipetrail import pipeline, step

@step
def base() -> int:
    print("base ran")
    return 10

@step
def scale(x: int, k: int) -> int:
    return x * k

@step(cache=False)
def fail_late(x: int) -> int:
    raise RuntimeError("no")

@pipeline
def fan(ks: list[int] = [1, 2, 3]):
    b = base()
    return [scale(b, k=k) for k in ks]

@pipeline
def broken():
    return fail_late(base())
"""


@pytest.fixture
def fan(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> Callable[[str], str]:
    name = unique("fan")

    def run(target: str = "fan") -> str:
        definition = files.load(name, FANOUT, target)
        try:
            return run_pipeline(definition, {}, project, RunOptions()).id
        except StepFailedError as exc:  # a failed run still has an id
            return str(exc.run_id)

    return run


def test_fan_out_nodes_are_named_by_node_id(project: Project, fan: Callable[[str], str]) -> None:
    run_id = fan("fan")
    reader = project.reader()
    nodes = sorted(row["node_id"] for row in reader.step_runs(run_id) if row["step"] == "scale")
    assert len(nodes) == 3
    for node in nodes:
        assert resolve_output(reader, f"{run_id}:{node}").node_id == node
    found = resolve_output(reader, f"{run_id}:scale[1]")
    assert (found.node_id, found.output) == ("scale[1]", "output")
    with open_output(project.store, found) as data:
        assert data.read() == b"20"
    same = resolve_output(reader, f"{run_id[:10]}:scale[1].output")
    assert same == found
    assert resolve_output(reader, found.digest[:20]).digest == found.digest


def test_a_failed_step_has_no_outputs_and_says_so(
    project: Project, fan: Callable[[str], str]
) -> None:
    run_id = fan("broken")
    reader = project.reader()
    assert resolve_output(reader, f"{run_id}:base").node_id == "base"
    with pytest.raises(NotFoundError, match="ended failed"):
        resolve_output(reader, f"{run_id}:fail_late")
    logs = {log.node_id: log for log in step_logs(reader, project.store, run_id, None)}
    assert logs["base"].text.strip() == "[stdout] base ran"
    assert logs["fail_late"].status == "failed"


def test_logs_of_an_unknown_step_name_the_steps(
    project: Project, fan: Callable[[str], str]
) -> None:
    run_id = fan("fan")
    with pytest.raises(NotFoundError, match="its steps are: base, scale"):
        step_logs(project.reader(), project.store, run_id, "nosuch")
