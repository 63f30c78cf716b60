"""How an output is read is a fact of the step run that stored it, not of its digest.

Equal bytes are one artifact (content is identity), but a step that returns ``bytes``
equal to a source file's content, or ``b"1"`` where another step returned ``1``, must still
hand its consumers ``bytes``: on the run that executes it, on a cache hit, and in a fresh
project. A consumer's key covers how each input is read, and a step's key covers its
output names (docs/adr/0013-how-an-output-is-read.md).

Consumers that record what they received are declared ``cache=False`` (their ``SEEN``
list is a global they read, so it is part of their key anyway); consumers whose cache
decision is under test return the type name instead.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.core.clock import new_id
from pipetrail.errors import TamperedLedgerError
from pipetrail.execution.explain import explain_step, run_summary
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventDraft, EventKind
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pipetrail.execution.run import Run

pytestmark = pytest.mark.integration


def _run(definition: Any, project: Project, **params: Any) -> Any:
    return run_pipeline(definition, params, project, RunOptions())


def _seen(definition: Any) -> list[Any]:
    seen: list[Any] = definition.func.__globals__["SEEN"]
    return seen


def _step(run: Any, node_id: str) -> dict[str, Any]:
    return next(s for s in run.steps() if s["node_id"] == node_id)


@pytest.fixture
def fresh_project(tmp_path: Path) -> Iterator[Callable[[Path], Project]]:
    """Open projects at other roots (closed at the end)."""
    opened: list[Project] = []

    def make(root: Path) -> Project:
        root.mkdir(parents=True, exist_ok=True)
        (root / "pipetrail.toml").write_text("[pipetrail]\n")
        opened.append(Project.at(root))
        return opened[-1]

    yield make
    for project in opened:
        project.close()


SOURCE_BYTES = """
from pathlib import Path
from pipetrail import pipeline, source, step

SEEN = []

@step
def load(path: Path) -> bytes:
    return path.read_bytes()

@step(cache=False)
def use(data: object) -> str:
    SEEN.append(type(data).__name__)
    return type(data).__name__

@pipeline
def flow():
    data = load(source("data.bin"))
    return {"data": data, "seen": use(data)}
"""


def test_bytes_equal_to_a_source_file_reach_the_consumer_as_bytes(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    (project_root / "data.bin").write_bytes(b"same bytes\n")
    definition = files.load(unique("srcbytes"), SOURCE_BYTES)
    first = _run(definition, project)
    second = _run(definition, project)
    assert statuses(second)["load"] == "cached"
    # One artifact: the source file and the step's output have one digest.
    (source_row,) = project.reader().sources(first.id)
    assert _step(second, "load")["outputs"]["output"] == source_row["digest"]
    assert _seen(definition) == ["bytes", "bytes"]
    for run in (first, second):
        assert run.outputs == {"data": b"same bytes\n", "seen": "bytes"}
        assert run.output_of("load") == b"same bytes\n"
        assert run.load(source_row["digest"]) == b"same bytes\n"


def test_bytes_equal_to_a_source_file_recorded_first_by_another_run(
    files: PipelineFiles,
    fresh_project: Callable[[Path], Project],
    tmp_path: Path,
    unique: Callable[[str], str],
) -> None:
    """In a fresh project whose ledger met the file as a source before, then as bytes."""
    definition = files.load(unique("srcbytes"), SOURCE_BYTES)
    reader_only = files.load(
        unique("srconly"),
        """
        from pathlib import Path
        from pipetrail import pipeline, source, step

        @step
        def size(path: Path) -> int:
            return path.stat().st_size

        @pipeline
        def flow():
            return size(source("data.bin"))
        """,
    )
    root = tmp_path / "fresh"
    project = fresh_project(root)
    (root / "data.bin").write_bytes(b"same bytes\n")
    _run(reader_only, project)  # the digest is recorded as a file first
    first = _run(definition, project)
    second = _run(definition, project)
    assert statuses(second)["load"] == "cached"
    assert _seen(definition) == ["bytes", "bytes"]
    assert first.outputs["data"] == second.outputs["data"] == b"same bytes\n"


JSON_AND_BYTES = """
from pipetrail import pipeline, step

SEEN = []

@step
def number() -> int:
    return 1

@step
def raw() -> bytes:
    return b"1"

@step(cache=False)
def use(value: object) -> str:
    SEEN.append(type(value).__name__)
    return type(value).__name__

@pipeline
def flow():
    n, b = number(), raw()
    return {"n": n, "b": b, "seen_n": use(n), "seen_b": use(b)}
"""


def test_json_one_and_bytes_one_stay_apart_on_miss_and_on_hit(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("jsonbytes"), JSON_AND_BYTES)
    first = _run(definition, project)
    second = _run(definition, project)
    assert statuses(second)["number"] == statuses(second)["raw"] == "cached"
    assert _step(first, "number")["outputs"] == _step(first, "raw")["outputs"]  # one digest
    assert _seen(definition) == ["int", "bytes", "int", "bytes"]
    for run in (first, second):
        assert run.outputs == {"n": 1, "b": b"1", "seen_n": "int", "seen_b": "bytes"}
        assert type(run.output_of("number")) is int
        assert type(run.output_of("raw")) is bytes


SAME_TYPE_OTHER_READING = """
import numpy as np
from pipetrail import pipeline, step

SEEN = []

@step
def as_bytes() -> bytes:
    return b"abc"

@step
def as_bytearray() -> bytearray:
    return bytearray(b"abc")

@step
def scalar() -> object:
    return np.float64(2.5)

@step
def array0() -> object:
    return np.array(2.5)

@step(cache=False)
def use(value: object) -> str:
    SEEN.append(type(value).__name__)
    return type(value).__name__

@pipeline
def flow():
    return [use(as_bytes()), use(as_bytearray()), use(scalar()), use(array0())]
"""


def test_bytes_and_bytearray_and_numpy_scalars_keep_their_types_on_a_hit(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("readings"), SAME_TYPE_OTHER_READING)
    _run(definition, project)
    second = _run(definition, project)
    assert statuses(second)["as_bytearray"] == statuses(second)["array0"] == "cached"
    expected = ["bytes", "bytearray", "float64", "ndarray"]
    assert _seen(definition) == expected * 2
    assert second.outputs == expected


TABLES = """
import pandas as pd
import polars as pl
from pipetrail import pipeline, step

SEEN = []

@step
def with_pandas() -> object:
    return pd.DataFrame({"a": [1, 2, 3]})

@step
def with_polars() -> object:
    return pl.DataFrame({"a": [1, 2, 3]})

@step(cache=False)
def use(value: object) -> str:
    SEEN.append(type(value).__module__.split(".")[0])
    return "ok"

@pipeline
def flow():
    pd_frame, pl_frame = with_pandas(), with_polars()
    return {"pd": pd_frame, "pl": pl_frame, "a": use(pd_frame), "b": use(pl_frame)}
"""


def test_equal_tables_from_pandas_and_polars_come_back_as_each_library(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("polars")
    definition = files.load(unique("tables"), TABLES)
    first = _run(definition, project)
    second = _run(definition, project)
    assert _step(first, "with_pandas")["outputs"] == _step(first, "with_polars")["outputs"]
    assert statuses(second)["with_polars"] == "cached"
    assert _seen(definition) == ["pandas", "polars"] * 2
    outputs = second.outputs
    assert type(outputs["pd"]).__module__.startswith("pandas")
    assert type(outputs["pl"]).__module__.startswith("polars")


PRODUCER_BYTES = """
from pipetrail import pipeline, step

@step
def make() -> object:
    return b"payload"

@step
def kind(data: object) -> str:
    return type(data).__name__

@pipeline
def flow():
    return kind(make())
"""

PRODUCER_PATH = """
import tempfile
from pathlib import Path
from pipetrail import pipeline, step

@step
def make() -> object:
    path = Path(tempfile.mkdtemp()) / "payload.bin"
    path.write_bytes(b"payload")
    return path

@step
def kind(data: object) -> str:
    return type(data).__name__

@pipeline
def flow():
    return kind(make())
"""


def test_a_consumer_misses_when_its_input_turns_from_bytes_into_a_path(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("switch")
    before = _run(files.load(name, PRODUCER_BYTES), project)
    after = _run(files.load(name, PRODUCER_PATH), project)
    assert before.outputs == "bytes"
    # The producer's code changed, its output's digest did not: the consumer reads a
    # Path now, so it must execute again rather than reuse "bytes".
    assert _step(before, "make")["outputs"] == _step(after, "make")["outputs"]
    assert statuses(after) == {"make": "completed", "kind": "completed"}
    assert after.outputs == "PosixPath"
    why = explain_step(project.reader(), after.id, "kind")
    assert why["changed"] == ["input_formats"]
    (entry,) = [c for c in why["components"] if c["component"] == "input_formats"]
    assert entry["previous"]["data"].startswith("bytes@1 builtins.bytes ")
    assert entry["value"]["data"].startswith("file@1 pathlib.Path ")


TWO_OUTPUTS = """
from pipetrail import pipeline, step

@step(outputs=({names}))
def split() -> tuple:
    return 1, 2

@step
def add(x: int, y: int) -> int:
    return x + y

@pipeline
def flow():
    x, y = split()
    return add(x, y)
"""


def test_renaming_outputs_misses_and_why_names_the_output_names(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("renamed")
    first = _run(files.load(name, TWO_OUTPUTS.format(names='"a", "b"')), project)
    second = _run(files.load(name, TWO_OUTPUTS.format(names='"first", "second"')), project)
    assert first.outputs == second.outputs == 3
    assert statuses(second)["split"] == "completed"
    assert set(_step(second, "split")["outputs"]) == {"first", "second"}
    why = explain_step(project.reader(), second.id, "split")
    assert why["changed"] == ["output_names"]
    assert second.output_of("split", "first") == 1


def test_a_hit_whose_record_lacks_an_output_executes_again(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    """A recorded step run with the key but not the output (an older record) is no hit."""
    definition = files.load(unique("lacking"), TWO_OUTPUTS.format(names='"a", "b"'))
    first = _run(definition, project)
    event = next(
        e
        for e in project.ledger.iter_events()
        if e.kind == EventKind.STEP_COMPLETED and e.payload["node_id"] == "split"
    )
    payload = dict(event.payload)
    payload.update(
        step_run_id=new_id(),
        outputs={"a": payload["outputs"]["a"], "old": payload["outputs"]["b"]},
    )
    if "output_formats" in payload:
        payload["output_formats"] = {"a": payload["output_formats"]["a"]}
    project.ledger.append([EventDraft(EventKind.STEP_COMPLETED, payload, run_id=first.id)])
    second = _run(definition, project)
    assert second.outputs == 3
    split = _step(second, "split")
    assert split["status"] == "completed"
    assert split["cache_reason"] == (
        f"the cached step run {payload['step_run_id']} recorded no output 'b' (its outputs: "
        "'a', 'old'); executing again"
    )


def test_a_hit_whose_record_does_not_say_how_an_output_is_read_executes_again(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("unread"), TWO_OUTPUTS.format(names='"a", "b"'))
    first = _run(definition, project)
    event = next(
        e
        for e in project.ledger.iter_events()
        if e.kind == EventKind.STEP_COMPLETED and e.payload["node_id"] == "split"
    )
    payload = {k: v for k, v in event.payload.items() if k != "output_formats"}
    payload["step_run_id"] = new_id()
    project.ledger.append([EventDraft(EventKind.STEP_COMPLETED, payload, run_id=first.id)])
    second = _run(definition, project)
    split = _step(second, "split")
    assert split["status"] == "completed"
    assert "does not record how its output 'a' is read" in split["cache_reason"]
    # The run read back from events without output_formats falls back to the artifacts.
    assert first.output_of("split", "a") == 1


def test_a_hit_whose_reading_this_version_cannot_follow_executes_again(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    """A reading with a key this pipetrail does not know (a newer one wrote it) is no hit."""
    definition = files.load(unique("newer"), TWO_OUTPUTS.format(names='"a", "b"'))
    first = _run(definition, project)
    event = next(
        e
        for e in project.ledger.iter_events()
        if e.kind == EventKind.STEP_COMPLETED and e.payload["node_id"] == "split"
    )
    payload = dict(event.payload)
    formats = dict(payload["output_formats"])
    formats["b"] = {**formats["b"], "codec": "zstd"}
    payload.update(step_run_id=new_id(), output_formats=formats)
    project.ledger.append([EventDraft(EventKind.STEP_COMPLETED, payload, run_id=first.id)])
    second = _run(definition, project)
    assert second.outputs == 3
    split = _step(second, "split")
    assert split["status"] == "completed"
    assert split["cache_reason"].startswith(
        f"the cached step run {payload['step_run_id']} cannot be reused: The record of how "
        f"artifact {payload['outputs']['b']} is read is not one this pipetrail can follow "
        "(unknown keys ['codec']); upgrade pipetrail"
    )
    assert split["cache_reason"].endswith("Executing again.")


def test_step_events_record_how_each_output_is_read(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    (project_root / "data.bin").write_bytes(b"same bytes\n")
    definition = files.load(unique("recorded"), SOURCE_BYTES)
    _run(definition, project)
    second = _run(definition, project)
    shown = {s["node_id"]: s for s in run_summary(project.reader(), second.id)["steps"]}
    assert shown["load"]["output_formats"] == {"output": "bytes@1"}
    assert shown["use"]["output_formats"] == {"output": "json@1"}
    events = [
        e.payload
        for e in project.ledger.iter_events()
        if e.kind in (EventKind.STEP_COMPLETED, EventKind.STEP_CACHED)
        and e.payload["node_id"] == "load"
    ]
    assert [p["decision"] for p in events] == ["miss", "hit"]
    for payload in events:
        assert payload["output_formats"] == {
            "output": {
                "format": "bytes@1",
                "type_name": "builtins.bytes",
                "size": 11,
                "meta": {"python_type": "bytes"},
            }
        }
    recorded = project.reader().artifact(events[0]["outputs"]["output"])
    assert recorded is not None
    assert recorded["serializer"] == "file"  # the artifact: first met as the source


BACKEND_PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

SEEN = []

@step
def number() -> int:
    return 1

@step
def load(path: Path) -> bytes:
    return path.read_bytes()

@step(cache=False)
def use(value: object) -> str:
    SEEN.append(type(value).__name__)
    return type(value).__name__

@pipeline
def flow():
    n, f = number(), load(source("data.bin"))
    return {"seen_n": use(n), "seen_f": use(f)}
"""


@pytest.mark.postgres
def test_readings_on_each_metadata_backend(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    """Step events carry how outputs are read, and cache lookups return it, on both backends."""
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    (project_root / "data.bin").write_bytes(b"1")  # the digest of the json output 1, too
    definition = files.load(unique("backends"), BACKEND_PIPELINE)
    project = Project.at(project_root)
    try:
        first = _run(definition, project)
        second = _run(definition, project)
        assert statuses(second)["load"] == statuses(second)["number"] == "cached"
        assert first.outputs == second.outputs == {"seen_n": "int", "seen_f": "bytes"}
        found = project.reader().cache_lookup(_step(second, "load")["cache_key"])
        steps = project.reader().step_outputs(second.id)
    finally:
        project.close()
    assert _seen(definition) == ["int", "bytes"] * 2
    assert found is not None
    assert found["output_formats"]["output"]["format"] == "bytes@1"
    formats = {s["node_id"]: s["output_formats"] for s in steps}
    assert formats["number"]["output"]["format"] == "json@1"
    assert formats["load"]["output"]["format"] == "bytes@1"


def _edit_event(root: Path, seq: int, payload: dict[str, Any]) -> None:
    with sqlite3.connect(root / ".pipetrail" / "ledger.db") as conn:
        conn.execute(
            "UPDATE events SET payload = ? WHERE seq = ?",
            (json.dumps(payload, sort_keys=True, separators=(",", ":")), seq),
        )


def test_an_edited_output_format_is_refused_not_followed(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    """How an output is read comes from the step event, which the chain covers."""
    definition = files.load(unique("edited"), JSON_AND_BYTES)
    project = Project.at(project_root)
    try:
        first = _run(definition, project)
        event = next(
            e
            for e in project.ledger.iter_events()
            if e.kind == EventKind.STEP_COMPLETED and e.payload["node_id"] == "raw"
        )
    finally:
        project.close()
    payload = dict(event.payload)
    payload["output_formats"] = {
        "output": {"format": "pickle@1", "type_name": "x", "size": 1, "meta": {"trusted": True}}
    }
    _edit_event(project_root, event.seq, payload)
    project = Project.at(project_root)
    try:
        with pytest.raises(TamperedLedgerError, match=f"event {event.seq} was edited"):
            _run(definition, project)
        with pytest.raises(TamperedLedgerError, match=f"event {event.seq} was edited"):
            project.reader().step_outputs(first.id)
    finally:
        project.close()


def test_an_edited_step_row_is_refused_when_a_run_reads_its_outputs(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("edited"), JSON_AND_BYTES)
    project = Project.at(project_root)
    try:
        run = _run(definition, project)
        number = _step(run, "number")
    finally:
        project.close()
    with sqlite3.connect(project_root / ".pipetrail" / "ledger.db") as conn:
        conn.execute(
            "UPDATE step_runs SET outputs = ? WHERE step_run_id = ?",
            ('{"output":"blake3:' + "0" * 64 + '"}', number["step_run_id"]),
        )
    project = Project.at(project_root)
    try:
        again = type(run)(
            run.id, project, pipeline=run.pipeline, status=run.status, result=run.result
        )
        with pytest.raises(TamperedLedgerError, match=rf"step_runs\[{number['step_run_id']}\]"):
            again.output_of("number")
    finally:
        project.close()


POLARS = """
import polars as pl
from pipetrail import pipeline, step

@step
def with_polars() -> object:
    return pl.DataFrame({"a": [1, 2, 3]})

@step
def rows(frame: object) -> int:
    return len(frame)

@pipeline
def flow():
    frame = with_polars()
    return {"pl": frame, "rows": rows(frame)}
"""


def _remove_object(root: Path, blob: str) -> None:
    objects = root / ".pipetrail" / "objects"
    loose = objects / blob[7:9] / blob[9:]
    if loose.exists():
        loose.chmod(0o644)
        loose.unlink()
    with sqlite3.connect(objects / "pack.db") as db:
        db.execute("DELETE FROM objects WHERE digest = ?", (blob,))


def test_a_hit_checks_the_object_its_reading_names(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    """A table's reading names its own Parquet object; without it, the step executes again."""
    pytest.importorskip("pandas")
    pytest.importorskip("polars")
    definition = files.load(unique("gone"), POLARS)
    project = Project.at(project_root)
    try:
        first = _run(definition, project)
        (reading,) = [
            s["output_formats"]["output"]
            for s in project.reader().step_outputs(first.id)
            if s["node_id"] == "with_polars"
        ]
    finally:
        project.close()
    digest = _step(first, "with_polars")["outputs"]["output"]
    assert reading["blob"] != digest
    _remove_object(project_root, reading["blob"])
    project = Project.at(project_root)
    try:
        second = _run(definition, project)
        polars_step = _step(second, "with_polars")
        assert polars_step["status"] == "completed"
        assert polars_step["cache_reason"] == (
            f"the cached output 'output' ({digest[:19]}) is missing from the store; executing again"
        )
        assert type(second.outputs["pl"]).__module__.startswith("polars")
    finally:
        project.close()


CHAIN_OF_THREE = """
from pipetrail import pipeline, step

@step
def first() -> int:
    return 1

@step
def second(x: int) -> int:
    return x + 1

@step
def third(x: int) -> int:
    return x * 10

@pipeline
def flow():
    return third(second(first()))
"""


def _edit_outputs(project_root: Path, step_run_id: str) -> None:
    with sqlite3.connect(project_root / ".pipetrail" / "ledger.db") as conn:
        conn.execute(
            "UPDATE step_runs SET outputs = ? WHERE step_run_id = ?",
            ('{"output":"blake3:' + "0" * 64 + '"}', step_run_id),
        )


def test_a_runs_result_is_read_from_the_events_of_the_nodes_it_names(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    """Run.outputs verifies the result's steps, not every step of the run."""
    definition = files.load(unique("chain"), CHAIN_OF_THREE)
    project = Project.at(project_root)
    try:
        run = _run(definition, project)
        rows = project.reader().step_outputs(run.id, node_ids=["third", "first"])
        assert [row["node_id"] for row in rows] == ["first", "third"]  # in run order
        assert project.reader().step_outputs(run.id, node_ids=[]) == []
        first, third = _step(run, "first"), _step(run, "third")
    finally:
        project.close()
    _edit_outputs(project_root, first["step_run_id"])  # a step the result does not name
    project = Project.at(project_root)
    try:
        again = _reopened(run, project)
        assert again.outputs == 20
        with pytest.raises(TamperedLedgerError, match=rf"step_runs\[{first['step_run_id']}\]"):
            again.output_of("first")
    finally:
        project.close()
    _edit_outputs(project_root, third["step_run_id"])  # the step the result names
    project = Project.at(project_root)
    try:
        again = _reopened(run, project)
        with pytest.raises(TamperedLedgerError, match=rf"step_runs\[{third['step_run_id']}\]"):
            _ = again.outputs
    finally:
        project.close()


def test_a_result_naming_many_nodes_is_read_with_the_whole_run(
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beyond the bound, one query over the run's steps, not one listing every node."""
    import pipetrail.execution.run as run_module

    definition = files.load(unique("wide"), JSON_AND_BYTES)
    project = Project.at(project_root)
    try:
        first = _run(definition, project)
        read: list[Any] = []
        reader_type = type(project.reader())
        step_outputs = reader_type.step_outputs

        def spy(self: Any, run_id: str, node_ids: Any = None) -> Any:
            read.append(node_ids)
            return step_outputs(self, run_id, node_ids)

        monkeypatch.setattr(reader_type, "step_outputs", spy)
        expected = {"n": 1, "b": b"1", "seen_n": "int", "seen_b": "bytes"}
        again = _reopened(first, project)
        assert again.outputs == expected
        assert read == [["number", "raw", "use", "use[1]"]]  # the nodes it names, once
        monkeypatch.setattr(run_module, "_NODES_READ_APART", 3)
        read.clear()
        again = _reopened(first, project)
        assert again.outputs == expected
        assert read == [None]  # the whole run's steps
    finally:
        project.close()


def _reopened(run: Run, project: Project) -> Run:
    """The same run read again through ``project`` (nothing of ``run`` read yet)."""
    return type(run)(
        run.id,
        project,
        pipeline=run.pipeline,
        status=run.status,
        result=run.result,
        result_outputs=run._result_outputs,
    )
