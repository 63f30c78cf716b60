"""attach_report: dicts as canonical JSON, PNG/SVG files as bytes, clear refusals."""

from __future__ import annotations

import enum
import json
from typing import TYPE_CHECKING

import pytest

from pipetrail import attach_report
from pipetrail.errors import DefinitionError
from pipetrail.execution.metrics import StepRecorder, recording
from pipetrail.store import MemoryStore, SerializerRegistry

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>\n'


@pytest.fixture
def registry() -> SerializerRegistry:
    return SerializerRegistry.with_builtins()


@pytest.fixture
def recorder(registry: SerializerRegistry) -> Iterator[StepRecorder]:
    rec = StepRecorder("evaluate", MemoryStore(), registry)
    with recording(rec):
        yield rec


class Color(enum.IntEnum):
    RED = 1


def test_outside_a_step_raises() -> None:
    with pytest.raises(DefinitionError, match=r"attach_report\(\) was called outside"):
        attach_report("eval/summary", {"auc": 0.9})


def test_a_dict_is_stored_as_canonical_json(
    recorder: StepRecorder, registry: SerializerRegistry
) -> None:
    attach_report("eval/summary", {"b": [1, (2, 3)], "a": {"x": None, "c": Color.RED}})
    record = recorder.reports["eval/summary"]
    assert record.serializer == "json"
    assert record.meta == {
        "python_type": "dict",
        "format_version": 1,
        "media_type": "application/json",
    }
    data = recorder.store.get_bytes(record.blob)
    assert data == b'{"a":{"c":1,"x":null},"b":[1,[2,3]]}'
    assert registry.load(record, recorder.store) == json.loads(data)


def test_numpy_values_in_a_dict_become_python_numbers(recorder: StepRecorder) -> None:
    np = pytest.importorskip("numpy")
    attach_report("eval/summary", {"auc": np.float64(0.5), "n": np.int64(3), "ok": np.bool_(1)})
    data = recorder.store.get_bytes(recorder.reports["eval/summary"].blob)
    assert json.loads(data) == {"auc": 0.5, "n": 3, "ok": True}
    with pytest.raises(DefinitionError, match=r"at the top level\['arr'\] is a ndarray.*tolist"):
        attach_report("eval/arr", {"arr": np.arange(3)})


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({1: "a"}, "key 1 at the top level is a int; report dicts need string keys"),
        ({"a": {"b": {1, 2}}}, r"value at the top level\['a'\]\['b'\] is a set"),
        ({"a": [object()]}, r"the top level\['a'\]\[0\] is a object"),
    ],
)
def test_non_json_dicts_are_refused(recorder: StepRecorder, value: object, match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        attach_report("r", value)  # type: ignore[arg-type]
    assert recorder.reports == {}


@pytest.mark.parametrize(
    ("suffix", "data", "media_type"),
    [(".png", PNG, "image/png"), (".PNG", PNG, "image/png"), (".svg", SVG, "image/svg+xml")],
)
def test_image_files_are_stored_as_bytes_with_their_media_type(
    recorder: StepRecorder,
    registry: SerializerRegistry,
    tmp_path: Path,
    suffix: str,
    data: bytes,
    media_type: str,
) -> None:
    path = tmp_path / f"roc{suffix}"
    path.write_bytes(data)
    attach_report("eval/roc", path)
    attach_report("eval/roc-str", str(path))
    record = recorder.reports["eval/roc"]
    assert record.serializer == "bytes"
    assert record.type_name == media_type
    assert record.meta["media_type"] == media_type
    assert registry.load(record, recorder.store) == data
    assert recorder.reports["eval/roc-str"] == record


def test_other_files_are_refused(recorder: StepRecorder, tmp_path: Path) -> None:
    jpg = tmp_path / "roc.jpg"
    jpg.write_bytes(b"\xff\xd8\xff")
    with pytest.raises(
        DefinitionError, match=r"extension '\.jpg'; file reports must be PNG or SVG"
    ):
        attach_report("eval/roc", jpg)
    with pytest.raises(DefinitionError, match="'just some text' has no file extension"):
        attach_report("eval/roc", "just some text")
    with pytest.raises(DefinitionError, match="is not an existing file"):
        attach_report("eval/roc", tmp_path / "missing.png")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"GIF89a")
    with pytest.raises(DefinitionError, match="PNG signature"):
        attach_report("eval/roc", fake)
    not_svg = tmp_path / "plot.svg"
    not_svg.write_text("<html></html>")
    with pytest.raises(DefinitionError, match="no <svg> element"):
        attach_report("eval/roc", not_svg)
    with pytest.raises(DefinitionError, match="a list cannot be a report"):
        attach_report("eval/roc", [1, 2])  # type: ignore[arg-type]
    assert recorder.reports == {}


def test_names_are_validated_and_unique(recorder: StepRecorder) -> None:
    with pytest.raises(DefinitionError, match="report name 'bad name' is not valid"):
        attach_report("bad name", {})
    attach_report("eval/summary", {"a": 1})
    with pytest.raises(DefinitionError, match="already attached a report named 'eval/summary'"):
        attach_report("eval/summary", {"a": 2})
    assert list(recorder.reports) == ["eval/summary"]
