"""Code fingerprints: what a step's code *is*, ignoring how it is written down.

A function's fingerprint covers its own normalized source (the AST without comments,
docstrings, decorators or formatting) and, recursively, every project-local function,
class and module it refers to. Third-party code is covered by the version of the
distribution that provides it. Global values it reads are covered by their value
fingerprint; a global that cannot be fingerprinted is reported in ``unhashable`` so the
caller forces a cache miss instead of risking a false hit.

"Project-local" means: defined in a file outside the interpreter's standard library and
site-packages folders (an editable install of the user's own project counts as local),
and not part of pipetrail itself.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import importlib.util
import inspect
import logging
import os
import sys
import sysconfig
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any

from pipetrail.core.version import VERSION
from pipetrail.errors import UnhashableValueError
from pipetrail.hashing.digest import digest_bytes, digest_value
from pipetrail.hashing.fingerprint import fingerprint_obj

__all__ = ["CodeFingerprint", "code_fingerprint", "distribution_of", "is_project_local"]

_FORMAT = "pt-code1"
# Stands for a name bound by a function-local import that resolves to nothing to cover.
_UNRESOLVED = object()


@dataclass(frozen=True)
class CodeFingerprint:
    """The result of fingerprinting a function.

    Attributes:
        digest: one digest over everything below.
        source: the function's own source text (for storing and diffing; not hashed as is).
        parts: qualified name -> digest of each piece of project-local code covered,
            the function itself included.
        distributions: distribution name -> version of third-party code referenced
            (``python`` holds the interpreter's ``major.minor``).
        unhashable: human-readable reasons why part of the code could not be
            fingerprinted; non-empty means the caller must not trust a cache hit.
    """

    digest: str
    source: str
    parts: dict[str, str] = field(default_factory=dict)
    distributions: dict[str, str] = field(default_factory=dict)
    unhashable: tuple[str, ...] = ()


@functools.cache
def _non_local_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    roots.add(sys.prefix)
    roots.add(sys.base_prefix)
    # pipetrail's own package folder (src/pipetrail), not the folder holding it: user code
    # next to an editable pipetrail checkout is still local.
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


def _is_non_local_file(filename: str) -> bool:
    real = os.path.realpath(filename)
    return any(real.startswith(root) for root in _non_local_roots())


def is_project_local(module_name: str | None) -> bool:
    """Return whether a module is user code (not stdlib, site-packages or pipetrail)."""
    if not module_name or module_name == "pipetrail" or module_name.startswith("pipetrail."):
        return False
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if filename is None:
        # __main__ of an interactive session has no file but is the user's code.
        return module_name == "__main__"
    return not _is_non_local_file(filename)


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
    names = _packages_distributions().get(top)
    if not names:
        return None
    name = sorted(names)[0]
    import importlib.metadata  # imported by _packages_distributions already

    try:
        return name, importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class _Strip(ast.NodeTransformer):
    """Remove docstrings and decorators; what remains is the code's meaning."""

    def _strip_doc(self, node: Any) -> Any:
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        node.decorator_list = []
        self.generic_visit(node)
        return self._strip_doc(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> Any:
        node.decorator_list = []
        self.generic_visit(node)
        return self._strip_doc(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        self.generic_visit(node)
        return self._strip_doc(node)

    def visit_Module(self, node: ast.Module) -> Any:
        self.generic_visit(node)
        return self._strip_doc(node)


def normalize_source(source: str) -> str:
    """Return a formatting-independent text of Python source (AST dump, no docstrings)."""
    tree = ast.parse(textwrap.dedent(source))
    tree = _Strip().visit(tree)
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _referenced_names(tree: ast.AST) -> list[list[str]]:
    """Return dotted name chains read by the code (``a.b.c`` -> ``["a", "b", "c"]``)."""
    chains: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    assigned: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned.add(node.id)
        elif isinstance(node, ast.arg):
            assigned.add(node.arg)
    # Names that head an attribute chain are covered by the chain (``mod.f`` covers only
    # ``f``), so they must not also count on their own (that would cover all of ``mod``).
    chain_heads: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            inner: ast.AST = node.value
            while isinstance(inner, ast.Attribute):
                chain_heads.add(id(inner))
                inner = inner.value
            chain_heads.add(id(inner))
    for node in ast.walk(tree):
        chain: list[str] = []
        cur: ast.AST = node
        if id(node) in chain_heads:
            continue
        if isinstance(node, ast.Attribute):
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                chain.append(cur.id)
                chain.reverse()
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            chain = [node.id]
        if chain and chain[0] not in assigned:
            key = tuple(chain)
            if key not in seen:
                seen.add(key)
                chains.append(chain)
    return chains


class _Walker:
    def __init__(self) -> None:
        self.parts: dict[str, str] = {}
        self.distributions: dict[str, str] = {}
        self.unhashable: list[str] = []
        self.globals_fp: dict[str, Any] = {}
        self._visiting: set[int] = set()

    # -- objects ---------------------------------------------------------------------
    def visit_object(self, obj: Any, label: str) -> None:
        obj = inspect.unwrap(obj) if callable(obj) else obj
        inner = getattr(obj, "__pipetrail_func__", None)
        if inner is not None:
            obj = inner
        if isinstance(obj, types.ModuleType):
            self._visit_module(obj)
        elif isinstance(obj, types.FunctionType):
            self._visit_function(obj)
        elif isinstance(obj, type):
            self._visit_class(obj)
        elif isinstance(obj, types.BuiltinFunctionType | types.MethodType):
            self._note_module(getattr(obj, "__module__", None))
        elif isinstance(obj, logging.Logger):
            self.globals_fp[label] = {"$logger": obj.name}
        elif isinstance(obj, functools.partial):
            # The bound arguments are part of what the partial does.
            self.visit_object(obj.func, f"{label}.func")
            for index, arg in enumerate(obj.args):
                self.visit_object(arg, f"{label}.args[{index}]")
            for key, arg in obj.keywords.items():
                self.visit_object(arg, f"{label}.keywords[{key}]")
        elif callable(obj) and not isinstance(obj, type):
            # functools.partial and other callables: cover their class's module.
            self._note_module(type(obj).__module__)
            func = getattr(obj, "func", None)
            if isinstance(func, types.FunctionType):
                self._visit_function(func)
        else:
            try:
                self.globals_fp[label] = fingerprint_obj(obj)
            except UnhashableValueError:
                self.unhashable.append(
                    f"global {label!r} of type {type(obj).__qualname__} cannot be fingerprinted"
                )

    def _note_module(self, module_name: str | None) -> None:
        if not module_name:
            return
        if is_project_local(module_name):
            module = sys.modules.get(module_name)
            if module is not None:
                self._visit_module(module)
            return
        if module_name == "pipetrail" or module_name.startswith("pipetrail."):
            self.distributions["pipetrail"] = VERSION
            return
        found = distribution_of(module_name)
        if found is not None:
            self.distributions[found[0]] = found[1]

    def _visit_module(self, module: types.ModuleType) -> None:
        if not is_project_local(module.__name__):
            self._note_module(module.__name__)
            return
        if id(module) in self._visiting:
            return
        self._visiting.add(id(module))
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            self.unhashable.append(f"source of module {module.__name__!r} is not available")
            return
        self.parts[module.__name__] = digest_bytes(normalize_source(source).encode())

    def _visit_class(self, cls: type) -> None:
        if not is_project_local(cls.__module__):
            self._note_module(cls.__module__)
            return
        if id(cls) in self._visiting:
            return
        self._visiting.add(id(cls))
        name = f"{cls.__module__}.{cls.__qualname__}"
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            self.unhashable.append(f"source of class {name!r} is not available")
            return
        tree = ast.parse(textwrap.dedent(source))
        self.parts[name] = digest_bytes(normalize_source(source).encode())
        module = sys.modules.get(cls.__module__)
        if module is not None:
            self._resolve_names(tree, vars(module), name)

    def _visit_function(self, func: types.FunctionType) -> None:
        # A function with no module (exec'd into a plain dict) is the user's own code too.
        if func.__module__ is not None and not is_project_local(func.__module__):
            self._note_module(func.__module__)
            return
        if id(func) in self._visiting:
            return
        self._visiting.add(id(func))
        name = f"{func.__module__}.{func.__qualname__}"
        try:
            source = inspect.getsource(func)
            tree: ast.AST | None = ast.parse(textwrap.dedent(source))
            self.parts[name] = digest_bytes(normalize_source(source).encode())
        except (OSError, TypeError, SyntaxError):
            # No source (REPL, exec): fall back to the code object, stable per interpreter.
            tree = None
            self.parts[name] = _code_object_digest(func.__code__)
        namespace = dict(func.__globals__)
        if func.__closure__:
            for var, cell in zip(func.__code__.co_freevars, func.__closure__, strict=True):
                try:
                    namespace[var] = cell.cell_contents
                except ValueError:  # empty cell
                    continue
        if tree is not None:
            self._resolve_names(tree, namespace, name, skip_self=func.__name__)
        else:
            for global_name in (*_code_names(func.__code__), *func.__code__.co_freevars):
                if global_name in namespace:
                    self.visit_object(namespace[global_name], f"{name}:{global_name}")

    def _resolve_names(
        self,
        tree: ast.AST,
        namespace: dict[str, Any],
        owner: str,
        skip_self: str | None = None,
    ) -> None:
        imported = self._local_imports(tree, namespace)
        if imported:
            namespace = {**namespace, **imported}
        for chain in _referenced_names(tree):
            head = chain[0]
            if head == skip_self and len(chain) == 1:
                continue
            if head not in namespace:
                continue  # builtins, locals, or names defined inside the code itself
            obj: Any = namespace[head]
            if obj is builtins or obj is _UNRESOLVED:
                continue
            # Follow attribute chains through modules so that `helpers.clean` covers
            # only that function, not the whole helpers module.
            label = head
            for attr in chain[1:]:
                if not isinstance(obj, types.ModuleType) or not hasattr(obj, attr):
                    break
                obj = getattr(obj, attr)
                label = f"{label}.{attr}"
            if isinstance(obj, types.ModuleType) and is_project_local(obj.__name__):
                self._visit_module(obj)
            else:
                self.visit_object(obj, f"{owner}:{label}")

    def _local_imports(self, tree: ast.AST, namespace: dict[str, Any]) -> dict[str, Any]:
        """Return the names bound by ``import`` statements inside the code itself.

        Module-level imports are in the namespace already; imports inside a function
        (lazy imports, imports that avoid cycles) are not, and would go uncovered.
        """
        bound: dict[str, Any] = {}
        package = namespace.get("__package__") or None
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    module = self._import(alias.name)
                    if alias.asname is not None:
                        bound[alias.asname] = _UNRESOLVED if module is None else module
                    else:
                        top = alias.name.partition(".")[0]
                        found = sys.modules.get(top) if module is not None else None
                        bound[top] = _UNRESOLVED if found is None else found
            elif isinstance(node, ast.ImportFrom):
                try:
                    base = importlib.util.resolve_name(
                        "." * node.level + (node.module or ""), package
                    )
                except (ImportError, ValueError):
                    continue
                module = self._import(base)
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    obj: Any = _UNRESOLVED
                    if module is not None:
                        if hasattr(module, alias.name):
                            obj = getattr(module, alias.name)
                        else:
                            obj = self._import(f"{base}.{alias.name}") or _UNRESOLVED
                    bound[alias.asname or alias.name] = obj
        return bound

    def _import(self, module_name: str) -> types.ModuleType | None:
        """Return a module named by a local import; import it only if it is user code.

        Third-party and standard-library modules are not imported (a lazy import of a
        heavy library stays lazy): their distribution is noted by name instead.
        """
        module = sys.modules.get(module_name)
        if module is not None:
            return module
        top = module_name.partition(".")[0]
        if top in sys.stdlib_module_names or top == "pipetrail":
            self._note_module(module_name)
            return None
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return None  # not installed: there is no code to cover
        if spec.has_location:
            origin = spec.origin
        else:  # a namespace package (a folder), or a built-in / frozen module
            origin = next(iter(spec.submodule_search_locations or ()), None)
        if origin is None or _is_non_local_file(origin):
            self._note_module(module_name)
            return None
        try:
            return importlib.import_module(module_name)
        except ImportError:
            return None
        except Exception as exc:  # noqa: BLE001 - user module code can raise anything
            self.unhashable.append(
                f"module {module_name!r} imported by the code failed to import ({exc!r})"
            )
            return None


def _code_object_digest(code: types.CodeType) -> str:
    consts = []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            consts.append(_code_object_digest(const))
        else:
            consts.append(repr(const))
    return digest_value(
        {
            "code": code.co_code.hex(),
            "names": list(code.co_names),
            "consts": consts,
            "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        }
    )


def _code_names(code: types.CodeType) -> list[str]:
    """Return the global and attribute names a code object reads, nested code included."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(name for name in _code_names(const) if name not in names)
    return names


def code_fingerprint(func: Any) -> CodeFingerprint:
    """Fingerprint a function and the project-local code it refers to.

    Args:
        func: a plain function (or a ``@step``-decorated one).

    Returns:
        The fingerprint; ``unhashable`` lists reasons the result must not be trusted.
    """
    walker = _Walker()
    target = getattr(func, "__pipetrail_func__", func)
    target = inspect.unwrap(target)
    try:
        source = textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError):
        source = ""
    walker.visit_object(target, getattr(target, "__qualname__", "function"))
    walker.distributions["python"] = f"{sys.version_info[0]}.{sys.version_info[1]}"
    digest = digest_value(
        {
            "format": _FORMAT,
            "parts": walker.parts,
            "globals": walker.globals_fp,
            "distributions": walker.distributions,
        }
    )
    return CodeFingerprint(
        digest=digest,
        source=source,
        parts=dict(walker.parts),
        distributions=dict(walker.distributions),
        unhashable=tuple(walker.unhashable),
    )
