"""Load a pipeline from a file: ``pipeline.py`` or ``pipeline.py:name``.

The file is imported as a module named after its stem, so a step's code fingerprint
(which names functions ``module.qualname``) is the same whether the pipeline runs from
the CLI or is imported in a notebook.

Loading leaves the process as it found it. For the import only, the file's folder goes
first on ``sys.path``; afterwards ``sys.path`` is restored, and the modules the import
registered from the folder (the pipeline module itself, and helpers such as a
``utils.py`` next to it) are taken out of ``sys.modules`` and kept with the pipeline, so
that they never shadow a module of the same name the caller imports later, and two
pipeline folders that both hold a ``helpers.py`` do not share one. Modules from anywhere
else (the standard library, site-packages, an installed project) stay imported: they
were importable anyway, and unloading extension modules is not possible.

A run puts the pipeline's modules and paths back while it runs
(:func:`pipeline_modules`, used by :func:`~pipetrail.execution.runner.run_pipeline`):
the code fingerprint finds project-local modules through ``sys.modules``, a lazy
``import helpers`` inside a step needs the folder on ``sys.path``, and pickle finds the
classes of the values it stores by module name. Modules a run imports from the folder
join the pipeline's when the run ends. Reading a stored value of a class defined in the
pipeline file after the run (an ``allow_pickle`` output) needs the same:
``with pipeline_modules(definition): run.outputs``.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipetrail.core.pipeline import PipelineDefinition
from pipetrail.errors import DefinitionError
from pipetrail.hashing.code import is_project_local

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from types import CodeType, ModuleType

__all__ = ["load_pipeline", "pipeline_module_files", "pipeline_modules"]


@dataclass
class _PipelineImports:
    """The modules and ``sys.path`` entries one loaded pipeline file brought in."""

    # The file's folder first, then any path its import added; modules under them are
    # the pipeline's own.
    paths: list[str]
    modules: dict[str, ModuleType] = field(default_factory=dict)
    active: bool = False


# Keyed by the loaded definition; forgotten with it.
_LOADED: weakref.WeakKeyDictionary[PipelineDefinition, _PipelineImports] = (
    weakref.WeakKeyDictionary()
)
_MISSING = object()


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Runs the pipeline file's current text, never its cached bytecode.

    A ``.pyc`` is trusted while the file's mtime (in whole seconds) and size are the
    same, so an edit of equal length within the second the cache was written would run
    the old code while its fingerprint, read from the file, says the new one.
    """

    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path)
        return compile(source, self.path, "exec", dont_inherit=True)


def load_pipeline(target: str) -> tuple[PipelineDefinition, Path]:
    """Import ``target`` (``FILE`` or ``FILE:NAME``) and return its pipeline and path.

    ``sys.path`` and ``sys.modules`` are as before when this returns (see the module
    docstring); :func:`pipeline_modules` puts the pipeline's modules back for a run.

    Raises:
        DefinitionError: if the file is missing, fails to import, or holds no (or several)
            pipelines and none is named.
    """
    file_part, _, name = target.partition(":")
    if len(file_part) == 1 and name and "\\" in name:  # Windows drive letter
        file_part, _, name = target[2:].partition(":")
        file_part = target[:2] + file_part
    path = Path(file_part).resolve()
    if not path.is_file():
        raise DefinitionError(f"pipeline file {file_part!r} does not exist")
    module_name = path.stem
    if not module_name.isidentifier():
        raise DefinitionError(
            f"pipeline file {path.name!r} must have a Python module name (letters, digits, _)"
        )
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__file__", None) != str(path):
        raise DefinitionError(
            f"pipeline file {path.name!r} has the same module name as {existing.__name__!r} "
            f"({getattr(existing, '__file__', 'built in')}); rename the file"
        )
    spec = importlib.util.spec_from_file_location(
        module_name, path, loader=_SourceLoader(module_name, str(path))
    )
    if spec is None or spec.loader is None:
        raise DefinitionError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    paths_before = list(sys.path)
    modules_before = dict(sys.modules)
    finders_before = set(sys.path_importer_cache)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise DefinitionError(
            f"importing pipeline file {path.name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        imports = _restore(folder, paths_before, modules_before, finders_before)
    found = {
        value.name: value
        for value in vars(module).values()
        if isinstance(value, PipelineDefinition)
        and getattr(value.func, "__module__", "") == module_name
    }
    for definition in found.values():
        _LOADED[definition] = imports
    if name:
        for candidate in found.values():
            if candidate.name == name or candidate.func.__name__ == name:
                return candidate, path
        raise DefinitionError(
            f"{path.name} has no pipeline {name!r}; it has: {', '.join(sorted(found)) or 'none'}"
        )
    if not found:
        raise DefinitionError(f"{path.name} defines no @pipeline function")
    if len(found) > 1:
        raise DefinitionError(
            f"{path.name} defines several pipelines ({', '.join(sorted(found))}); choose one "
            f"with {file_part}:NAME"
        )
    return next(iter(found.values())), path


def _restore(
    folder: str,
    paths_before: list[str],
    modules_before: Mapping[str, object],
    finders_before: set[str],
) -> _PipelineImports:
    """Undo what importing a pipeline file did to ``sys``; return what it brought in."""
    # Paths the import added: the folder, and any the pipeline module added itself.
    added = [p for p in sys.path if p not in paths_before]
    imports = _PipelineImports(paths=[folder, *(p for p in added if p != folder)])
    imports.modules = _take_modules(
        [n for n, m in sys.modules.items() if modules_before.get(n, _MISSING) is not m],
        imports.paths,
    )
    for name, previous in modules_before.items():
        if sys.modules.get(name, _MISSING) is not previous:
            sys.modules[name] = previous  # type: ignore[assignment]
    sys.path[:] = paths_before
    for finder in set(sys.path_importer_cache) - finders_before:
        if finder in added:
            del sys.path_importer_cache[finder]
    return imports


def _take_modules(names: Iterable[str], roots: list[str]) -> dict[str, ModuleType]:
    """Remove from ``sys.modules`` the project-local ones under ``roots``; return them."""
    taken: dict[str, ModuleType] = {}
    for name in names:
        module = sys.modules.get(name)
        if module is not None and _lies_under(module, roots) and is_project_local(name):
            taken[name] = module
    for name in taken:
        del sys.modules[name]
    return taken


def _lies_under(module: ModuleType, roots: list[str]) -> bool:
    files = [getattr(module, "__file__", None), *(getattr(module, "__path__", None) or ())]
    real_roots = [os.path.realpath(root) + os.sep for root in roots]
    return any(
        isinstance(file, str) and os.path.realpath(file).startswith(tuple(real_roots))
        for file in files
    )


@contextlib.contextmanager
def pipeline_modules(definition: PipelineDefinition) -> Iterator[None]:
    """Register a loaded pipeline's modules and paths again for the block.

    Does nothing for a pipeline :func:`load_pipeline` did not load (a module the caller
    imported stays as the caller left it) and inside a block already active for it.
    Modules of the same names are put back when the block exits; modules the block
    imported from the pipeline's folder are kept with the pipeline.
    """
    imports = _LOADED.get(definition)
    if imports is None or imports.active:
        yield
        return
    paths = [p for p in imports.paths if p not in sys.path]
    displaced = {name: sys.modules.get(name, _MISSING) for name in imports.modules}
    modules_before = {**sys.modules, **imports.modules}
    sys.path[:0] = paths
    sys.modules.update(imports.modules)
    imports.active = True
    try:
        yield
    finally:
        imports.active = False
        for name in imports.modules:
            current = sys.modules.get(name)
            if current is not None:
                imports.modules[name] = current  # a reload during the run is kept
        new = [n for n, m in sys.modules.items() if modules_before.get(n, _MISSING) is not m]
        imports.modules.update(_take_modules(new, imports.paths))
        for name, previous in displaced.items():
            if previous is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous  # type: ignore[assignment]
        for entry in paths:
            if entry in sys.path:
                sys.path.remove(entry)


def pipeline_module_files(definition: PipelineDefinition) -> list[tuple[str, str]]:
    """The pipeline's own modules loaded from source files: ``(module name, file)``.

    What a worker process must load to find the pipeline's step functions and the classes
    of their values (see :mod:`pipetrail.execution.executors.shipping`). Empty for a
    pipeline :func:`load_pipeline` did not load (its modules import the usual way).
    """
    imports = _LOADED.get(definition)
    if imports is None:
        return []
    found = []
    for name, module in imports.modules.items():
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.endswith(".py"):
            found.append((name, file))
    return sorted(found)
