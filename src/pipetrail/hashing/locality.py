"""Which code is the project's: local modules, third-party distributions, local imports.

"Project-local" means: defined in a file outside the interpreter's standard library and
site-packages folders (an editable install of the user's own project counts as local),
and not part of pipetrail itself. Third-party code is identified by the distribution
that provides it and that distribution's version.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import sysconfig
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Iterable, Iterator, Mapping

__all__ = [
    "UNRESOLVED",
    "ImportOutcome",
    "distribution_of",
    "import_for_coverage",
    "is_non_local_file",
    "is_project_local",
    "names_imported_by",
    "non_local_roots",
    "using_module_distributions",
]

# Stands for a name bound by a function-local import that resolves to nothing to cover.
UNRESOLVED = object()


@functools.cache
def non_local_roots() -> tuple[str, ...]:
    """Return the folders whose code is not the project's (stdlib, site-packages, pipetrail)."""
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    roots.add(sys.prefix)
    roots.add(sys.base_prefix)
    # pipetrail's own package folder (src/pipetrail), not the folder holding it: user code
    # next to an editable pipetrail checkout is still local.
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


def is_non_local_file(filename: str) -> bool:
    """Return whether a file lies in the standard library, site-packages or pipetrail."""
    real = os.path.realpath(filename)
    return any(real.startswith(root) for root in non_local_roots())


# The roots the memory below was made for, and loaded module file -> whether it is not
# the project's. A module is loaded from its file once; where that file lies does not
# change for the process (as the roots, decided once per process), so every code
# fingerprint need not resolve its path again.
_LOADED_FROM: list[Any] = [None, {}]
_LOADED_LIMIT = 10_000


def is_project_local(module_name: str | None) -> bool:
    """Return whether a module is user code (not stdlib, site-packages or pipetrail)."""
    if not module_name or module_name == "pipetrail" or module_name.startswith("pipetrail."):
        return False
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if filename is None:
        # __main__ of an interactive session has no file but is the user's code.
        return module_name == "__main__"
    if not isinstance(filename, str):
        return not is_non_local_file(filename)
    roots, known = _LOADED_FROM
    if roots is not non_local_roots() or len(known) >= _LOADED_LIMIT:
        known = {}
        _LOADED_FROM[:] = [non_local_roots(), known]
    found = known.get(filename)
    if found is None:
        found = known[filename] = is_non_local_file(filename)
    return not found


# Where distribution_of looks a module up: None, importlib.metadata; else a function
# returning top-level module -> (distribution, version), the same answers kept in a cache
# (a run sets pipetrail.capture.distributions.cached_module_distributions, see
# using_module_distributions).
_MODULE_DISTRIBUTIONS: list[Callable[[], Mapping[str, tuple[str, str]]] | None] = [None]


@contextlib.contextmanager
def using_module_distributions(
    lookup: Callable[[], Mapping[str, tuple[str, str]]],
) -> Iterator[None]:
    """Answer :func:`distribution_of` from ``lookup()`` in the block.

    ``lookup`` is called when a module is first looked up (and may be called again): it
    must return what :func:`distribution_of` would answer for every top-level module
    name a distribution provides, and nothing for the others.
    """
    before = _MODULE_DISTRIBUTIONS[0]
    _MODULE_DISTRIBUTIONS[0] = lookup
    try:
        yield
    finally:
        _MODULE_DISTRIBUTIONS[0] = before


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    import importlib.metadata  # ~20 ms to import; only code using a library needs it

    return dict(importlib.metadata.packages_distributions())


@functools.cache
def distribution_of(module_name: str) -> tuple[str, str] | None:
    """Return ``(distribution, version)`` providing a top-level module, if any."""
    top = module_name.split(".", 1)[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return None
    lookup = _MODULE_DISTRIBUTIONS[0]
    if lookup is not None:
        return lookup().get(top)
    names = _packages_distributions().get(top)
    if not names:
        return None
    name = sorted(names)[0]
    import importlib.metadata  # imported by _packages_distributions already

    try:
        return name, importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class ImportOutcome:
    """What :func:`import_for_coverage` found.

    Attributes:
        module: the imported project module, or None.
        library: a non-project module name whose distribution should be noted.
        failure: why a project module that exists failed to import (type: message).
    """

    module: types.ModuleType | None = None
    library: str | None = None
    failure: str | None = None


def import_for_coverage(module_name: str) -> ImportOutcome:
    """Import a module named by an ``import`` inside code, if it is project code.

    Third-party and standard-library modules are not imported (a lazy import of a heavy
    library stays lazy): they are returned as ``library`` to note by name. A module that
    is not installed at all has no code to cover. A project module that exists but fails
    to import (it raises, or imports something missing) is a ``failure``: the code that
    imports it would behave differently once the import works again.
    """
    module = sys.modules.get(module_name)
    if module is not None:
        return ImportOutcome(module=module)
    top = module_name.partition(".")[0]
    if top in sys.stdlib_module_names or top == "pipetrail":
        return ImportOutcome(library=module_name)
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return ImportOutcome()  # not installed: there is no code to cover
    if spec.has_location:
        origin = spec.origin
    else:  # a namespace package (a folder), or a built-in / frozen module
        origin = next(iter(spec.submodule_search_locations or ()), None)
    if origin is None or is_non_local_file(origin):
        return ImportOutcome(library=module_name)
    try:
        return ImportOutcome(module=importlib.import_module(module_name))
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            return ImportOutcome()  # the module itself does not exist: no code to cover
        return ImportOutcome(failure=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - user module code can raise anything
        return ImportOutcome(failure=f"{type(exc).__name__}: {exc}")


def names_imported_by(
    statements: Iterable[tuple[Any, ...]],
    package: str | None,
    importer: Callable[[str], types.ModuleType | None],
) -> dict[str, Any]:
    """Return the names bound by ``import`` statements inside code.

    Module-level imports are in the code's namespace already; imports inside a function
    (lazy imports, imports that avoid cycles) are not, and would go uncovered. The
    statements are those :func:`~pipetrail.hashing.code_analysis.import_statements`
    found: ``("import", module, asname)`` or ``("from", module, level, ((name, asname),
    ...))``. ``importer`` returns a module to cover, or None; names it cannot resolve are
    bound to :data:`UNRESOLVED`.
    """
    bound: dict[str, Any] = {}
    for statement in statements:
        if statement[0] == "import":
            _, name, asname = statement
            module = importer(name)
            if asname is not None:
                bound[asname] = UNRESOLVED if module is None else module
            else:
                top = name.partition(".")[0]
                found = sys.modules.get(top) if module is not None else None
                bound[top] = UNRESOLVED if found is None else found
            continue
        _, from_module, level, aliases = statement
        try:
            base = importlib.util.resolve_name("." * level + (from_module or ""), package)
        except (ImportError, ValueError):
            continue
        module = importer(base)
        for alias_name, alias_as in aliases:
            if alias_name == "*":
                continue
            obj: Any = UNRESOLVED
            if module is not None:
                if hasattr(module, alias_name):
                    obj = getattr(module, alias_name)
                else:
                    obj = importer(f"{base}.{alias_name}") or UNRESOLVED
            bound[alias_as or alias_name] = obj
    return bound
