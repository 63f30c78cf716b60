"""Registering a serializer again: the same one (its module run again) replaces the earlier
entry; a different one under a taken name is refused, saying where each is defined."""

from __future__ import annotations

import runpy
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import SerializationError
from pipetrail.store.serializers.registry import SerializerRegistry

if TYPE_CHECKING:
    from pathlib import Path

SOURCE = """
class BoxSerializer:
    name = "box"
    version = VERSION

    def handles(self, value):
        return type(value).__name__ == "Box"

    def dump(self, value, store):
        raise AssertionError("not stored here")

    def load(self, record, store):
        raise AssertionError("not read here")
"""


def _defined(file: Path, version: int = 1, name: str = "box") -> Any:
    """A new BoxSerializer class, as running ``file`` once more defines it."""
    source = SOURCE.replace("VERSION", str(version)).replace('"box"', repr(name))
    file.write_text(textwrap.dedent(source))
    return runpy.run_path(str(file))["BoxSerializer"]()


def test_the_same_serializer_defined_again_replaces_the_earlier(tmp_path: Path) -> None:
    registry = SerializerRegistry.with_builtins()
    first = _defined(tmp_path / "boxes.py")
    registry.register(first)
    registry.register(
        _defined(tmp_path / "other.py", name="crate"), first=True
    )  # another name below
    names, label = registry.names, registry.formats_label()
    again = _defined(tmp_path / "boxes.py")
    assert type(again) is not type(first)
    registry.register(again)
    assert registry.names == names  # in place
    assert registry.by_name("box") is again
    assert registry.formats_label() == label
    bumped = _defined(tmp_path / "boxes.py", version=2)
    registry.register(bumped)  # a new format version: the cache keys change with it
    assert registry.formats_label() == label.replace("box@1", "box@2")
    registry.register(_defined(tmp_path / "boxes.py", version=2), first=True)
    assert registry.names[0] == "box"
    assert registry.names.count("box") == 1


def test_a_different_serializer_under_a_taken_name_is_refused(tmp_path: Path) -> None:
    registry = SerializerRegistry.with_builtins()
    registry.register(_defined(tmp_path / "boxes.py"))
    label = registry.formats_label()
    (tmp_path / "elsewhere").mkdir()
    other = tmp_path / "elsewhere" / "boxes.py"
    changed = SOURCE.replace("VERSION", "1").replace("not stored here", "changed")
    other.write_text(textwrap.dedent(changed))
    with pytest.raises(SerializationError) as refused:
        registry.register(runpy.run_path(str(other))["BoxSerializer"]())
    message = str(refused.value)
    assert "A serializer named 'box' is already registered" in message
    assert str(tmp_path / "boxes.py") in message
    assert str(other) in message
    assert "different 'name'" in message
    assert registry.formats_label() == label
    with pytest.raises(SerializationError, match="'pickle' is already registered: it is the"):
        registry.register(_named("pickle", tmp_path))


def _named(name: str, tmp_path: Path) -> Any:
    return _defined(tmp_path / "renamed.py", name=name)


def test_a_cell_run_again_is_the_same_serializer() -> None:
    """A notebook compiles each run of a cell under a new file name: the code decides."""
    registry = SerializerRegistry.with_builtins()
    for run in range(2):
        namespace: dict[str, Any] = {"__name__": "__main__"}
        source = textwrap.dedent(SOURCE).replace("VERSION", "1")
        exec(compile(source, f"/tmp/cell-{run}.py", "exec"), namespace)  # noqa: S102
        registry.register(namespace["BoxSerializer"]())
    assert registry.names.count("box") == 1
