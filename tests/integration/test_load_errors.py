"""A step's input that cannot be loaded (intact bytes) is a LoadError naming what failed.

Real runs in a SQLite project; the failing load is a registered serializer that raises
for one value, so the artifact and its digest can be checked in the error and the record.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.cli.exits import EXIT_RUN_FAILED, exit_code
from pipetrail.errors import LoadError, SerializationError
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.store import SerializerRegistry, StoredArtifact

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PARTS = """
from pipetrail import pipeline, step
from {module} import Part


@step
def make(n: int) -> Part:
    return Part(n)


@step
def total(parts: list, tag: int = 0) -> int:
    return sum(p.n for p in parts) + tag


@pipeline
def parts(tag: int = 0):
    return total([make(1), make(2)], tag=tag)
"""


class Part:
    """A value only :class:`PartSerializer` stores."""

    def __init__(self, n: int) -> None:
        self.n = n


class PartSerializer:
    """Stores a Part as its number; loading part 2 raises once ``broken`` says so."""

    name = "part"
    broken = False

    def handles(self, value: Any) -> bool:
        return isinstance(value, Part)

    def dump(self, value: Part, store: Any) -> StoredArtifact:
        data = str(value.n).encode()
        digest = store.put_bytes(data)
        return StoredArtifact(digest, digest, self.name, "Part", len(data), {})

    def load(self, record: StoredArtifact, store: Any) -> Part:
        data = store.get_bytes(record.blob)
        if self.broken and data == b"2":
            raise ValueError("part 2 does not parse")
        return Part(int(data))


@pytest.fixture
def broken_project(project: Project) -> tuple[Project, PartSerializer]:
    serializer = PartSerializer()
    registry = SerializerRegistry.with_builtins()
    registry.register(serializer, first=True)
    project._registry = registry
    return project, serializer


def test_the_failing_item_of_a_list_input_is_named_and_the_run_recorded_failed(
    files: PipelineFiles,
    broken_project: tuple[Project, PartSerializer],
    unique: Callable[[str], str],
) -> None:
    project, serializer = broken_project
    definition = files.load(unique("parts"), PARTS.format(module=__name__))
    first = run_pipeline(definition, {}, project, RunOptions())
    assert first.outputs == 3
    second_part = first.step("make[1]")["outputs"]["output"]
    serializer.broken = True

    with pytest.raises(LoadError) as caught:
        run_pipeline(definition, {"tag": 1}, project, RunOptions())

    error = caught.value
    run = project.reader().list_runs(limit=1)[0]
    assert (error.step, error.run_id, error.input_name, error.digest) == (
        "total",
        run["run_id"],
        "parts",
        second_part,
    )
    assert str(error).startswith(
        f"step 'total' of run {run['run_id']} cannot load its input 'parts' (output 'output' "
        f"of step 'make[1]', artifact {second_part}): Artifact {second_part} (Part) could "
        "not be loaded by the 'part' serializer: ValueError: part 2 does not parse."
    )
    assert isinstance(error, SerializationError)
    assert isinstance(error.__cause__, SerializationError)
    assert exit_code(error) == EXIT_RUN_FAILED
    assert run["status"] == "failed"
    steps = {s["node_id"]: s["status"] for s in project.reader().step_runs(run["run_id"])}
    assert steps == {"make": "cached", "make[1]": "cached", "total": "failed"}


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (
            KeyError("size"),
            "KeyError: 'size'; run `pipetrail audit verify` and `pipetrail store verify`",
        ),
        (PermissionError(13, "Permission denied", "/x/copies"), "give the current user access"),
    ],
)
def test_a_failure_outside_the_serializer_is_a_load_error_too(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    raised: Exception,
    expected: str,
) -> None:
    """What raises around the serializer (reading the record, making copies) is named too."""
    from pipetrail.execution.recompute import load_inputs
    from pipetrail.execution.run_state import NodeOutput, RunState

    definition = files.load(unique("parts"), PARTS.format(module=__name__))
    project._registry = SerializerRegistry.with_builtins()
    project._registry.register(PartSerializer(), first=True)
    first = run_pipeline(definition, {}, project, RunOptions())
    graph = definition.build({"tag": 0})
    state = RunState(run_id="R", graph=graph, project=project, run_seed=0)
    for node in ("make", "make[1]"):
        state.outputs[node] = [NodeOutput(first.step(node)["outputs"]["output"])]

    def load(value: Any) -> Any:
        raise raised

    with pytest.raises(LoadError) as caught:
        load_inputs(state, graph.nodes["total"], load, lambda node, reason: None)
    message = str(caught.value)
    digest = state.outputs["make"][0].digest
    assert message.startswith(
        f"step 'total' of run R cannot load its input 'parts' (output 'output' of step "
        f"'make', artifact {digest}): {type(raised).__name__}: "
    )
    assert expected in message
    assert caught.value.__cause__ is raised


def test_a_full_disk_while_loading_stays_an_os_error(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    """The CLI reports it as a full disk naming the folder (exit 4), not as a load error."""
    from pipetrail.execution.recompute import load_inputs
    from pipetrail.execution.run_state import RunState

    definition = files.load(unique("parts"), PARTS.format(module=__name__))
    graph = definition.build({"tag": 0})
    state = RunState(run_id="R", graph=graph, project=project, run_seed=0)
    full = OSError(errno.ENOSPC, "No space left on device", "/x/copies")

    def load(value: Any) -> Any:
        raise full

    with pytest.raises(OSError) as caught:
        load_inputs(state, graph.nodes["total"], load, lambda node, reason: None)
    assert caught.value is full
