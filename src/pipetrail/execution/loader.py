"""Load a pipeline from a file: ``pipeline.py`` or ``pipeline.py:name``.

The file is imported as a module named after its stem (its folder goes first on
``sys.path``), so a step's code fingerprint is the same whether the pipeline runs from
the CLI or is imported in a notebook.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from pipetrail.core.pipeline import PipelineDefinition
from pipetrail.errors import DefinitionError

__all__ = ["load_pipeline"]


def load_pipeline(target: str) -> tuple[PipelineDefinition, Path]:
    """Import ``target`` (``FILE`` or ``FILE:NAME``) and return its pipeline and path.

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
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__file__", None) != str(path):
        raise DefinitionError(
            f"pipeline file {path.name!r} has the same module name as {existing.__name__!r} "
            f"({getattr(existing, '__file__', 'built in')}); rename the file"
        )
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DefinitionError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise DefinitionError(
            f"importing pipeline file {path.name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    found = {
        value.name: value
        for value in vars(module).values()
        if isinstance(value, PipelineDefinition)
        and getattr(value.func, "__module__", "") == module_name
    }
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
