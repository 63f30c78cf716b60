"""A cache hit hands downstream steps what a miss hands them: the stored value.

Each pipeline here is run twice in one project: the producer executes the first time and
is a cache hit the second time, while the consumer (declared ``cache=False``) executes
both times and records what it received in its module's ``SEEN`` list.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pytest

from pipetrail.errors import StepFailedError
from pipetrail.execution.explain import explain_step
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.store import LocalStore, SerializerRegistry
from pipetrail.store.serializers.json_format import JsonSerializer
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.integration


def _run(definition: Any, project: Project, **params: Any) -> Any:
    return run_pipeline(definition, params, project, RunOptions())


def _seen(definition: Any) -> list[Any]:
    # Loading a pipeline file leaves sys.modules as it was: reach the pipeline's module
    # through its function's globals.
    seen: list[Any] = definition.func.__globals__["SEEN"]
    return seen


TUPLE_PIPELINE = """
from pipetrail import pipeline, step

SEEN = []

@step
def make() -> tuple:
    return (1, (2, 3), {"k": (4,)})

@step(cache=False)
def use(value: object) -> str:
    SEEN.append((type(value).__name__, repr(value)))
    return "ok"

@pipeline
def flow():
    return use(make())
"""


def test_a_tuple_reaches_downstream_as_stored_on_miss_and_on_hit(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("tuples")
    definition = files.load(name, TUPLE_PIPELINE)
    first = _run(definition, project)
    second = _run(definition, project)
    assert statuses(first) == {"make": "completed", "use": "completed"}
    assert statuses(second) == {"make": "cached", "use": "completed"}
    miss, hit = _seen(definition)
    assert miss == hit == ("list", "[1, [2, 3], {'k': [4]}]")


SHARED_PIPELINE = """
from pipetrail import pipeline, step

SEEN = []

@step
def make() -> dict:
    return {"rows": [1, 2]}

@step
def spoil(data: dict) -> int:
    data["rows"].append(99)
    data["extra"] = True
    return len(data["rows"])

@step
def read(data: dict, after: int) -> int:
    SEEN.append(repr(data))
    return len(data["rows"])

@pipeline
def flow():
    data = make()
    return read(data, spoil(data))
"""


def test_a_consumer_mutating_its_input_does_not_change_another_consumer_input(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("shared")
    definition = files.load(name, SHARED_PIPELINE)
    run = _run(definition, project)
    assert _seen(definition) == ["{'rows': [1, 2]}"]
    assert run.outputs == 2


RETENTION_PIPELINE = """
import gc
import weakref

import numpy as np
from pipetrail import pipeline, step

REFS = []
SEEN = []

@step
def make() -> np.ndarray:
    value = np.arange(1000.0)
    REFS.append(weakref.ref(value))
    return value

@step
def total(values: np.ndarray) -> float:
    return float(values.sum())

@step
def report(t: float) -> str:
    gc.collect()
    SEEN.append(REFS[-1]() is None)
    return f"{t:.1f}"

@pipeline
def flow():
    return report(total(make()))
"""


def test_the_runner_keeps_no_step_output_object_alive(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("retention")
    definition = files.load(name, RETENTION_PIPELINE)
    run = _run(definition, project)
    # While a later step runs, the array the first step returned has been released...
    assert _seen(definition) == [True]
    # ...and the finished run still loads every output (from the store).
    assert run.outputs == "499500.0"
    assert float(run.output_of("total")) == 499500.0
    assert definition.func.__globals__["REFS"][-1]() is None


NUMPY_SCALARS_PIPELINE = """
import numpy as np
from pipetrail import pipeline, step

SEEN = []

@step
def evaluate() -> dict:
    scores = np.array([0.5, 0.75, 1.0])
    return {
        "mean": scores.mean(),
        "count": np.int64(3),
        "passed": np.bool_(True),
        "per_fold": [np.float32(0.5), np.uint8(7)],
        "label": np.str_("ok"),
    }

@step(cache=False)
def use(metrics: dict) -> str:
    SEEN.append(
        (repr(metrics), sorted((k, type(v).__name__) for k, v in metrics.items()),
         [type(v).__name__ for v in metrics["per_fold"]])
    )
    return "ok"

@pipeline
def flow():
    return use(evaluate())
"""


def test_numpy_scalars_inside_plain_data_are_stored_as_json(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("npscalars")
    definition = files.load(name, NUMPY_SCALARS_PIPELINE)
    first = _run(definition, project)
    second = _run(definition, project)
    assert statuses(second) == {"evaluate": "cached", "use": "completed"}
    miss, hit = _seen(definition)
    assert miss == hit
    assert miss[1] == [
        ("count", "int"),
        ("label", "str"),
        ("mean", "float"),
        ("passed", "bool"),
        ("per_fold", "list"),
    ]
    assert miss[2] == ["float", "int"]
    artifact = project.reader().artifact(first.step("evaluate")["outputs"]["output"])
    assert artifact is not None
    assert artifact["serializer"] == "json"


UNSTORABLE_PIPELINE = """
import numpy as np
from pipetrail import pipeline, step

@step
def evaluate() -> dict:
    return {"mean": 0.5, "folds": [{"labels": {"a", "b"}}]}

@pipeline
def flow():
    return evaluate()
"""


def test_an_unstorable_value_names_the_inner_path_and_type(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("unstorable"), UNSTORABLE_PIPELINE)
    with pytest.raises(StepFailedError) as caught:
        _run(definition, project)
    message = str(caught.value)
    assert "'evaluate'" in message
    assert "output['folds'][0]['labels']: builtins.set" in message
    assert "sorted list" in message


# -- format versions are part of the key -----------------------------------------------

CHAIN_PIPELINE = """
from pipetrail import pipeline, step

@step
def make(n: int) -> list:
    return list(range(n))

@step
def total(xs: list) -> int:
    return sum(xs)

@pipeline
def flow(n: int = 4):
    return total(make(n))
"""


class JsonVersion2(JsonSerializer):
    """The json serializer as a later release would declare it after a format change."""

    version = 2


def _registry_with_json_v2() -> SerializerRegistry:
    builtins = SerializerRegistry.with_builtins()
    serializers = [
        JsonVersion2() if name == "json" else builtins.by_name(name) for name in builtins.names
    ]
    return SerializerRegistry(serializers, fallback=builtins.by_name("pickle"))


def test_a_new_serializer_format_version_re_executes_steps(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("formats"), CHAIN_PIPELINE)
    _run(definition, project)
    assert set(statuses(_run(definition, project)).values()) == {"cached"}
    upgraded = Project(project.config, registry=_registry_with_json_v2())
    try:
        run = _run(definition, upgraded)
        assert set(statuses(run).values()) == {"completed"}
        assert run.outputs == 6
        record = upgraded.reader().artifact(run.step("make")["outputs"]["output"])
        assert record is not None
        # Equal bytes, equal digest: the artifact was recorded once, by the first run.
        assert record["meta"]["format_version"] == 1
        explained = explain_step(upgraded.reader(), run.id, "make")
        assert explained["changed"] == ["formats"]
        change = next(c for c in explained["components"] if c["component"] == "formats")
        assert "json@2" in change["value"].split()
        assert "json@1" in change["previous"].split()
        assert set(statuses(_run(definition, upgraded)).values()) == {"cached"}
    finally:
        upgraded.close()


# -- outputs a run just wrote are handed on without reading the store -------------------


class CountingStore(LocalStore):
    """The project's local store, counting reads of each object."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()

    def get_bytes(self, digest: str) -> bytes:
        self.reads[digest] += 1
        return super().get_bytes(digest)

    def open(self, digest: str) -> BinaryIO:
        self.reads[digest] += 1
        return super().open(digest)

    def local_path(self, digest: str) -> Path:
        self.reads[digest] += 1
        return super().local_path(digest)


FAN_PIPELINE = """
import numpy as np
import pandas as pd
from pipetrail import pipeline, step

@step
def make(n: int) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.DataFrame({"x": np.arange(n, dtype=float)})
    return frame, np.full(n, 2.0)

@step
def scale(frame: pd.DataFrame, factor: np.ndarray) -> pd.DataFrame:
    return frame.assign(x=frame["x"] * factor)

@step
def first(frame: pd.DataFrame) -> float:
    return float(frame["x"].iloc[-1])

@step
def last(frame: pd.DataFrame, big: bytes) -> float:
    return float(frame["x"].sum()) + len(big)

@step
def blob(n: int) -> bytes:
    return bytes(n * 1000)

@pipeline
def flow(n: int = 10):
    frame, factor = make(n)
    scaled = scale(frame, factor)
    return {"first": first(scaled), "last": last(scaled, blob(n))}
"""


def test_consumers_of_outputs_just_written_do_not_read_them_back(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    config = Project.at(project_root).config
    store = CountingStore(config.artifacts)
    counting = Project(config, store=store)
    try:
        definition = files.load(unique("fan"), FAN_PIPELINE)
        # bytes(n * 1000) is larger than the keep limit for n = 9000: read from the store.
        run = run_pipeline(definition, {"n": 9000}, counting, RunOptions())
        outputs = {s["node_id"]: s["outputs"] for s in run.steps()}
        written = [
            outputs["make"]["output_0"],
            outputs["make"]["output_1"],
            outputs["scale"]["output"],
        ]
        blobs = [counting.reader().artifact(d)["blob"] for d in written]  # type: ignore[index]
        assert [store.reads[b] for b in blobs] == [0, 0, 0]
        big = counting.reader().artifact(outputs["blob"]["output"])
        assert big is not None
        assert store.reads[big["blob"]] == 1
        expected_sum = float(np.arange(9000.0).sum() * 2) + 9_000_000
        assert run.outputs == {"first": 17998.0, "last": expected_sum}
    finally:
        counting.close()


FOLDER_PIPELINE = """
import tempfile
from pathlib import Path
from pipetrail import pipeline, step

SEEN = []

@step
def make() -> Path:
    root = Path(tempfile.mkdtemp())
    (root / "a.txt").write_text("alpha")
    return root

@step
def passthrough(folder: Path) -> Path:
    SEEN.append(folder)
    return folder

@step
def read(folder: Path) -> str:
    SEEN.append(folder)
    return (folder / "a.txt").read_text()

@pipeline
def flow():
    return read(passthrough(make()))
"""


def test_disk_copies_of_inputs_are_removed_once_the_step_has_run(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("copies")
    definition = files.load(name, FOLDER_PIPELINE)
    run = _run(definition, project)
    first, second = _seen(definition)
    assert first != second
    assert not first.exists()
    assert not second.exists()
    # A step returning its input folder stored it before the copy went away.
    assert run.outputs == "alpha"
    assert (run.output_of("passthrough") / "a.txt").read_text() == "alpha"
