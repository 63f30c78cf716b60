"""Loading a pipeline file leaves sys.path and sys.modules as they were."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import DefinitionError
from pipetrail.execution.loader import load_pipeline, pipeline_modules

if TYPE_CHECKING:
    from pathlib import Path

PIPELINE = """
import {helper}
from pipetrail import pipeline, step

@step
def shout(text: str) -> str:
    return {helper}.transform(text)

@pipeline
def {name}(text: str = "a"):
    return shout(text)
"""


def write_folder(root: Path, folder: str, helper: str, name: str, body: str) -> Path:
    path = root / folder
    path.mkdir()
    (path / f"{helper}.py").write_text(f"def transform(text):\n    return {body}\n")
    pipeline_file = path / f"{name}.py"
    pipeline_file.write_text(textwrap.dedent(PIPELINE.format(helper=helper, name=name)))
    return pipeline_file


def snapshot() -> tuple[list[str], dict[str, object]]:
    return list(sys.path), dict(sys.modules)


def test_loading_restores_sys_path_and_sys_modules(tmp_path: Path) -> None:
    pipeline_file = write_folder(tmp_path, "a", "helpers_u1", "pipe_u1", "text.upper()")
    paths, modules = snapshot()

    definition, path = load_pipeline(str(pipeline_file))

    assert path == pipeline_file
    assert sys.path == paths
    assert "pipe_u1" not in sys.modules
    assert "helpers_u1" not in sys.modules
    assert {k: v for k, v in sys.modules.items() if k in modules} == modules
    assert str(tmp_path / "a") not in sys.path_importer_cache
    # The definition keeps working: its function sees its own module's globals.
    assert definition.func.__module__ == "pipe_u1"


def test_a_run_registers_the_modules_again_and_restores_them(tmp_path: Path) -> None:
    pipeline_file = write_folder(tmp_path, "a", "helpers_u2", "pipe_u2", "text.upper()")
    (tmp_path / "a" / "helpers_u2_lazy.py").write_text("VALUE = 1\n")
    definition, _ = load_pipeline(str(pipeline_file))
    paths, modules = snapshot()

    with pipeline_modules(definition):
        assert sys.path[0] == str(tmp_path / "a")
        assert sys.modules["pipe_u2"].__file__ == str(pipeline_file)
        assert sys.modules["helpers_u2"].transform("x") == "X"
        import helpers_u2_lazy  # type: ignore[import-not-found]  # imported during a run

        assert helpers_u2_lazy.VALUE == 1
        with pipeline_modules(definition):  # nested: nothing changes
            assert sys.path[0] == str(tmp_path / "a")

    assert sys.path == paths
    assert "helpers_u2_lazy" not in sys.modules
    assert dict(sys.modules) == modules
    with pipeline_modules(definition):
        # What the run imported is the pipeline's now, the same module object.
        assert sys.modules["helpers_u2_lazy"] is helpers_u2_lazy


def test_two_folders_with_a_helper_of_the_same_name_do_not_share_it(tmp_path: Path) -> None:
    upper = write_folder(tmp_path, "one", "helpers_u3", "pipe_u3a", "text.upper()")
    lower = write_folder(tmp_path, "two", "helpers_u3", "pipe_u3b", "text + '!'")
    first, _ = load_pipeline(str(upper))
    second, _ = load_pipeline(str(lower))

    def call(definition: object) -> str:
        module = sys.modules[definition.func.__module__]  # type: ignore[attr-defined]
        result: str = module.shout.func("abc")
        return result

    with pipeline_modules(first):
        assert call(first) == "ABC"
    with pipeline_modules(second):
        assert call(second) == "abc!"


def test_a_module_of_the_caller_is_not_shadowed(tmp_path: Path) -> None:
    pipeline_file = write_folder(tmp_path, "a", "helpers_u4", "pipe_u4", "text")
    (pipeline_file.parent / "helpers_u4.py").write_text("WHO = 'pipeline'\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "helpers_u4.py").write_text("WHO = 'caller'\n")
    definition, _ = load_pipeline(str(pipeline_file))
    sys.path.insert(0, str(mine))
    try:
        import helpers_u4  # type: ignore[import-not-found]

        assert helpers_u4.WHO == "caller"
        with pipeline_modules(definition):
            assert sys.modules["helpers_u4"].WHO == "pipeline"
        assert sys.modules["helpers_u4"] is helpers_u4
    finally:
        sys.path.remove(str(mine))
        sys.modules.pop("helpers_u4", None)


def test_a_failing_import_restores_everything(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "helpers_u5.py").write_text("X = 1\n")
    (folder / "pipe_u5.py").write_text("import helpers_u5\nraise ValueError('broken file')\n")
    paths, modules = snapshot()

    with pytest.raises(DefinitionError, match=r"importing pipeline file pipe_u5\.py failed"):
        load_pipeline(str(folder / "pipe_u5.py"))

    assert sys.path == paths
    assert dict(sys.modules) == modules


def test_the_same_stem_in_two_folders_loads_both(tmp_path: Path) -> None:
    first = write_folder(tmp_path, "x", "helpers_u6x", "pipe_u6", "text")
    second = write_folder(tmp_path, "y", "helpers_u6y", "pipe_u6", "text")
    one, _ = load_pipeline(str(first))
    two, _ = load_pipeline(str(second))
    assert one is not two


def test_a_module_of_the_same_name_from_elsewhere_is_refused(tmp_path: Path) -> None:
    pipeline_file = write_folder(tmp_path, "a", "helpers_u7", "json", "text")
    with pytest.raises(DefinitionError, match="same module name as 'json'"):
        load_pipeline(str(pipeline_file))


STALE = """
from pipetrail import pipeline, step

@step
def answer() -> int:
    return 11

@pipeline
def p():
    return answer()
"""


def test_the_file_s_current_text_runs_never_a_stale_bytecode_cache(tmp_path: Path) -> None:
    import importlib.util
    import os
    import py_compile

    path = tmp_path / "stale_pipe.py"
    path.write_text(STALE)
    # A bytecode cache of this text, valid by Python's rule (whole-second mtime and size)...
    py_compile.compile(
        str(path),
        cfile=importlib.util.cache_from_source(str(path)),
        invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
    )
    stat = path.stat()
    # ...then an edit of the same length in the same second.
    path.write_text(STALE.replace("return 11", "return 22"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    definition, _ = load_pipeline(str(path))
    step = definition.func.__globals__["answer"]
    assert step.func() == 22
