"""Lazy package exports (PEP 562): a package's names imported from their modules on first use.

A package ``__init__`` that imports every module it re-exports makes importing any one of
its modules import them all; with :func:`lazy_exports` it lists where each name lives
instead, and a name's module is imported when the name is first read
(``from pipetrail.store import LocalStore`` imports ``pipetrail.store.local`` only).
Type checkers read the same names from imports under ``TYPE_CHECKING``.

Standard library only (``pipetrail.core`` imports no other pipetrail package).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a package's module-level ``__getattr__`` and ``__dir__``.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the module that defines it.

    Returns:
        ``(__getattr__, __dir__)``: the first imports the name's module on first use and
        keeps the value in the package's namespace (later reads do not come back here);
        the second lists the names, imported or not.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
