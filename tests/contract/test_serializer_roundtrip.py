"""Contract: for every serializer, a cache hit hands a consumer what a miss hands it.

Each case is a two-step pipeline run twice in one project: the producer returns a value
its serializer stores, and executes on the first run and is a cache hit on the second;
the consumer (``cache=False``) executes both times and records the type and a full
description of the value it received. The two descriptions must be equal, and equal to
what the case expects. Every built-in serializer (the fallback included) must have a case.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.store import SerializerRegistry, StoredArtifact
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Case:
    """A value, the serializer expected to store it, and how the consumer describes it."""

    id: str
    serializer: str
    produce: str  # the body of the producer step, returning the value
    describe: str  # an expression of ``value``: everything that must survive
    received_type: str  # the qualified type name the consumer must receive
    imports: str = ""
    options: str = ""


CASES = [
    Case(
        "json-plain",
        "json",
        'return {"a": [1, 2.5, None, True], "b": "text", "nan": float("nan")}',
        "repr(value)",
        "builtins.dict",
    ),
    Case(
        "json-tuple",
        "json",
        'return (1, ("nested", 2), {"k": (3,)})',
        "repr(value)",
        "builtins.list",
    ),
    Case(
        "json-numpy-scalars",
        "json",
        'return {"mean": np.float64(0.25), "n": np.int64(4), "ok": np.bool_(True), '
        '"f32": [np.float32(0.1)]}',
        "repr(value), sorted((k, type(v).__name__) for k, v in value.items())",
        "builtins.dict",
        imports="import numpy as np",
    ),
    Case("bytes", "bytes", 'return b"\\x00raw bytes"', "repr(value)", "builtins.bytes"),
    Case(
        "bytearray",
        "bytes",
        'return bytearray(b"mutable")',
        "repr(value)",
        "builtins.bytearray",
    ),
    Case(
        "file",
        "file",
        'path = Path(tempfile.mkdtemp()) / "report.csv"\n'
        'path.write_text("a,b\\n1,2\\n")\n'
        "return path",
        "value.read_bytes(), value.stat().st_mode & 0o222",
        "pathlib.PosixPath",
        imports="import tempfile\nfrom pathlib import Path",
    ),
    Case(
        "folder",
        "folder",
        "root = Path(tempfile.mkdtemp())\n"
        '(root / "sub").mkdir()\n'
        '(root / "a.txt").write_text("alpha")\n'
        '(root / "sub" / "b.bin").write_bytes(b"\\x00\\x01")\n'
        "return root",
        'sorted((p.relative_to(value).as_posix(), p.read_bytes()) for p in value.rglob("*") '
        "if p.is_file())",
        "pathlib.PosixPath",
        imports="import tempfile\nfrom pathlib import Path",
    ),
    Case(
        "pandas",
        "parquet",
        'frame = pd.DataFrame({"x": [1.5, None, 3.0], "s": ["a", None, "c"], '
        '"c": pd.Categorical(["u", "v", "u"])}, index=pd.Index([10, 20, 30], name="key"))\n'
        "return frame",
        # repr: NaN != NaN, but its repr compares equal.
        "repr(value.to_dict('list')), [str(t) for t in value.dtypes], list(value.index), "
        "value.index.name",
        "pandas.DataFrame",
        imports="import pandas as pd",
    ),
    Case(
        "pyarrow",
        "parquet",
        'return pa.table({"x": pa.array([1, 2], pa.int32()), "s": pa.array(["a", None])})',
        "value.schema.to_string(), value.to_pydict()",
        "pyarrow.lib.Table",
        imports="import pyarrow as pa",
    ),
    Case(
        "polars",
        "parquet",
        'return pl.DataFrame({"x": [1, 2, 3], "s": ["a", None, "c"]})',
        "str(value.schema), value.to_dict(as_series=False)",
        "polars.dataframe.frame.DataFrame",
        imports="import polars as pl",
    ),
    Case(
        "npy-array",
        "npy",
        "return np.arange(6, dtype=np.int16).reshape(2, 3)",
        "str(value.dtype), value.shape, value.tolist()",
        "numpy.ndarray",
        imports="import numpy as np",
    ),
    Case(
        "npy-scalar",
        "npy",
        "return np.float32(0.1)",
        "repr(value)",
        "numpy.float32",
        imports="import numpy as np",
    ),
    Case(
        "skops",
        "skops",
        "model = LogisticRegression(C=0.5)\n"
        "return model.fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])",
        "repr(value.get_params()), value.coef_.tolist(), value.intercept_.tolist(), "
        "value.predict([[0.5], [2.5]]).tolist()",
        "sklearn.linear_model._logistic.LogisticRegression",
        imports="from sklearn.linear_model import LogisticRegression",
    ),
    Case(
        "pickle",
        "pickle",
        'return Thing("kept", {"n": (1, 2)})',
        "repr(value)",
        "{module}.Thing",
        options="allow_pickle=True",
    ),
]

TEMPLATE = """
from __future__ import annotations

{imports}
from pipetrail import pipeline, step

SEEN = []


class Thing:
    def __init__(self, name, data):
        self.name = name
        self.data = data

    def __repr__(self):
        return f"Thing({{self.name!r}}, {{self.data!r}})"


@step({options})
def produce() -> object:
{produce}


@step(cache=False)
def consume(value: object) -> str:
    kind = type(value)
    SEEN.append((f"{{kind.__module__}}.{{kind.__qualname__}}", ({describe},)))
    return "ok"


@pipeline
def flow():
    return consume(produce())
"""


@pytest.fixture
def files(tmp_path: Path) -> Iterator[PipelineFiles]:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    helper = PipelineFiles(root)
    sys.path.insert(0, str(root))
    yield helper
    helper.cleanup()
    sys.path.remove(str(root))


@pytest.fixture
def project(files: PipelineFiles) -> Iterator[Project]:
    opened = Project.at(files.root)
    yield opened
    opened.close()


def _source(case: Case) -> str:
    return TEMPLATE.format(
        imports=case.imports,
        options=case.options,
        produce=textwrap.indent(case.produce, "    "),
        describe=case.describe,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hit_and_a_miss_hand_the_consumer_equal_values(
    case: Case, files: PipelineFiles, project: Project
) -> None:
    name = f"roundtrip_{case.id.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    definition = files.load(name, _source(case))
    first = run_pipeline(definition, {}, project, RunOptions())
    second = run_pipeline(definition, {}, project, RunOptions())
    assert statuses(first) == {"produce": "completed", "consume": "completed"}
    assert statuses(second) == {"produce": "cached", "consume": "completed"}

    # Loading a pipeline file leaves sys.modules as it was: reach the module through
    # the pipeline function's globals.
    miss, hit = definition.func.__globals__["SEEN"]
    assert miss == hit
    assert miss[0] == case.received_type.format(module=name)

    record = project.reader().artifact(first.step("produce")["outputs"]["output"])
    assert record is not None
    assert record["serializer"] == case.serializer
    versions = project.registry.format_versions()
    assert record["meta"]["format_version"] == versions[case.serializer]
    # What the run hands back afterwards is the stored value too.
    loaded = project.registry.load(StoredArtifact.from_dict(record), project.store)
    assert type(loaded).__qualname__ == miss[0].rsplit(".", 1)[1]
    # Read as the step events record (the reading each run's step event holds).
    for run in (first, second):
        assert type(run.output_of("produce")).__qualname__ == miss[0].rsplit(".", 1)[1]


def test_every_built_in_serializer_has_a_case() -> None:
    registry = SerializerRegistry.with_builtins()
    assert {c.serializer for c in CASES} == set(registry.format_versions())
    assert set(registry.names) | {"pickle"} == set(registry.format_versions())
