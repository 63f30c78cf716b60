"""Registering a serializer again: the same one (its module run again) replaces the earlier
entry; a different one under a taken name is refused, saying where each is defined."""

from __future__ import annotations

import importlib.util
import runpy
import sys
import textwrap
import types
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import SerializationError
from pipetrail.store.serializers.registry import SerializerRegistry

if TYPE_CHECKING:
    from collections.abc import Callable
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


@pytest.fixture
def notebook(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    """Run a cell as a notebook does: in a ``__main__`` without a file, a new file name
    each run (so the file a class is defined in cannot tell two runs apart)."""
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    runs = iter(range(1_000))

    def run_cell(source: str) -> Any:
        code = compile(textwrap.dedent(source), f"/tmp/cell-{next(runs)}.py", "exec")
        exec(code, main.__dict__)  # noqa: S102
        return main.BoxSerializer()

    return run_cell


def test_a_cell_run_again_is_the_same_serializer(notebook: Callable[[str], Any]) -> None:
    """A notebook compiles each run of a cell under a new file name: the code decides."""
    registry = SerializerRegistry.with_builtins()
    for _ in range(2):
        registry.register(notebook(SOURCE.replace("VERSION", "1")))
    assert registry.names.count("box") == 1
    with pytest.raises(SerializationError, match="'box' is already registered"):
        registry.register(notebook(SOURCE.replace("VERSION", "1").replace("here", "there")))


HELPED = """
def _kind(value):
    return type(value).__name__ == KIND


class BoxSerializer:
    name = "box"
    version = 1

    def handles(self, value):
        return _kind(value)

    def dump(self, value, store):
        raise AssertionError("not stored here")

    def load(self, record, store):
        raise AssertionError("not read here")
"""


def _imported(file: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """BoxSerializer of ``file`` imported as module ``boxes``, as a pipeline file is loaded."""
    spec = importlib.util.spec_from_file_location("boxes", file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "boxes", module)
    spec.loader.exec_module(module)
    return module.BoxSerializer()


def test_a_module_of_the_same_name_with_another_helper_is_another_serializer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another file, the same methods, but the helper one calls differs: refused."""
    files = {}
    for folder, kind in (("a", "Box"), ("b", "Box"), ("c", "Crate")):
        (tmp_path / folder).mkdir()
        files[folder] = tmp_path / folder / "boxes.py"
        files[folder].write_text(textwrap.dedent(HELPED).replace("KIND", repr(kind)))
    registry = SerializerRegistry.with_builtins()
    registry.register(_imported(files["a"], monkeypatch))
    same = _imported(files["b"], monkeypatch)
    registry.register(same)  # the same code from another file: replaces the earlier
    assert registry.by_name("box") is same
    with pytest.raises(SerializationError, match="'box' is already registered") as refused:
        registry.register(_imported(files["c"], monkeypatch))
    assert str(files["c"]) in str(refused.value)
    assert registry.by_name("box") is same
