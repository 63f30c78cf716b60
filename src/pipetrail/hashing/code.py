"""Code fingerprints: what a step's code *is*, ignoring how it is written down.

A function's fingerprint covers its own normalized source (the AST without comments,
docstrings, decorators or formatting) and, recursively, every project-local function,
class and module it refers to, decorators' wrappers included. Third-party code is covered
by the version of the distribution that provides it and by *which* function or class is
used (``np.mean`` is not ``np.median``). Every global, closure and default value the code
can reach is covered by its value fingerprint (see :mod:`pipetrail.hashing.fingerprint`
and the registry in :mod:`pipetrail.hashing.fingerprint_types`): instances by their state,
callable objects included. A value that cannot be covered, or a project module that fails
to import, is reported in ``unhashable`` with its name, so the caller forces a cache miss
instead of risking a false hit. There is no version-only fallback for unknown objects: a
library's version says nothing about the state of an object made from its classes.

"Project-local" means: defined in a file outside the interpreter's standard library and
site-packages folders (an editable install of the user's own project counts as local),
and not part of pipetrail itself.
"""

from __future__ import annotations

import builtins
import inspect
import re
import sys
import textwrap
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.core.version import VERSION
from pipetrail.errors import UnhashableValueError
from pipetrail.hashing.code_analysis import (
    Analysis,
    active_code_cache,
    class_analysis,
    function_analysis,
    function_text_analysis,
    module_analysis,
)
from pipetrail.hashing.code_objects import (
    STATELESS_BASES,
    class_values,
    held_by,
    home_modules,
    instance_state,
    is_typing_object,
    own_attr,
    pipetrail_func,
    real_class,
)
from pipetrail.hashing.code_source import (
    code_names,
    code_object_digest,
    normalize_source,
)
from pipetrail.hashing.digest import digest_bytes, digest_value
from pipetrail.hashing.fingerprint import fingerprint_obj
from pipetrail.hashing.fingerprint_types import code_visitor, qualified_type_name
from pipetrail.hashing.locality import (
    UNRESOLVED,
    distribution_of,
    import_for_coverage,
    is_project_local,
    names_imported_by,
)

if TYPE_CHECKING:
    from pipetrail.hashing.code_cache import CodeCache

__all__ = [
    "CodeFingerprint",
    "code_fingerprint",
    "distribution_of",
    "is_project_local",
    "normalize_source",
]

# pt-code2: values are covered by type (registry), third-party references by name,
# decorators' wrappers and default values are covered, parts have unique names.
_FORMAT = "pt-code2"
_SCALARS = (int, str, float, bool, type(None))
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_BUILTIN_CALLABLES = (
    types.BuiltinFunctionType,
    types.MethodWrapperType,
)
_DESCRIPTORS = (
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)


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


class _Walker:
    """Collects what one code fingerprint covers; the code visitor of its value fingerprints."""

    def __init__(self, cache: CodeCache | None = None) -> None:
        self.cache = cache
        self.parts: dict[str, str] = {}
        self.distributions: dict[str, str] = {}
        self.unhashable: list[str] = []
        self.globals_fp: dict[str, Any] = {}
        self._visiting: set[int] = set()
        # id -> unique part name: two lambdas, or two closures made by one factory, share
        # a qualname but are different code (or the same code over different values).
        self._names: dict[int, str] = {}
        self._taken: set[str] = set()
        self._keep: list[Any] = []  # visited objects stay alive, so their ids stay unique
        self._exports: dict[int, str | None] = {}
        self._local: dict[str, bool] = {}
        self._instances: set[int] = set()

    # -- what code reads -------------------------------------------------------------
    def visit_object(self, obj: Any, label: str, display: str) -> None:
        """Cover a global, closure or default value read by code (``label`` keys it)."""
        if type(obj) in _SCALARS:
            self.globals_fp[label] = fingerprint_obj(obj)
            return
        if isinstance(obj, types.ModuleType) and self._is_local(obj.__name__):
            self._visit_module(obj)
            return
        try:
            with code_visitor(self):
                if not real_class(obj):
                    raise UnhashableValueError(
                        f"it claims to be a {type(obj).__class__.__qualname__} but is a "
                        f"{qualified_type_name(type(obj))} (a mock or a proxy)"
                    )
                self.globals_fp[label] = fingerprint_obj(obj)
        except UnhashableValueError as exc:
            self.unhashable.append(f"global {display!r} ({type(obj).__qualname__}): {exc}")
        except RecursionError:
            self.unhashable.append(
                f"global {display!r} ({type(obj).__qualname__}): it is nested too deeply "
                "to be fingerprinted"
            )
        except Exception as exc:  # noqa: BLE001 - reading a user object can raise anything
            self.unhashable.append(
                f"global {display!r} ({type(obj).__qualname__}): reading it raised "
                f"{type(exc).__name__}: {exc}"
            )

    def visit_root(self, target: Any) -> None:
        """Cover the function being fingerprinted (or a callable object standing for it)."""
        if isinstance(target, types.FunctionType) and real_class(target):
            self._visit_function(target)
        else:
            label = str(getattr(type(target), "__qualname__", "function"))
            self.visit_object(target, label, label)

    def reference(self, obj: Any) -> Any:
        """Cover code met as a value; return what stands for it in the fingerprint.

        Raises:
            UnhashableValueError: ``obj`` is neither code nor a value pipetrail can
                fingerprint.
        """
        cls = type(obj)
        if cls is types.ModuleType or isinstance(obj, types.ModuleType):
            if self._is_local(obj.__name__):
                self._visit_module(obj)
                return {"$code": obj.__name__}
            self._note_module(obj.__name__)
            return {"$lib": obj.__name__}
        inner = pipetrail_func(obj)
        if inner is not None:  # a @step or @pipeline object: its function
            return self.reference(inner)
        if isinstance(obj, type):
            return self._class_ref(obj)
        if is_typing_object(obj):
            return self._typing_ref(obj)
        if issubclass(cls, types.FunctionType):
            name = self._visit_function(obj)
            if self._is_local_function(obj):
                return {"$code": name}
            return {"$lib": name}
        if issubclass(cls, types.MethodType):
            exported = self._library_export(obj)
            if exported is not None:  # np.random.rand: a library's own bound method
                return {"$lib": exported}
            return {
                "$method": obj.__func__.__name__,
                "self": fingerprint_obj(obj.__self__),
                "func": self.reference(obj.__func__),
            }
        if issubclass(cls, _BUILTIN_CALLABLES):
            return self._builtin_ref(obj)
        if issubclass(cls, _DESCRIPTORS):
            owner: type = obj.__objclass__
            self._note_module(owner.__module__)
            return {"$lib": f"{qualified_type_name(owner)}.{obj.__name__}"}
        return self._object_ref(obj)

    def note_type(self, cls: type) -> None:
        """Cover a value's class: its source if it is project code, else its version."""
        if cls.__module__ != "builtins":
            self._visit_class(cls)

    # -- references ------------------------------------------------------------------
    def _class_ref(self, cls: type) -> Any:
        name = self._visit_class(cls)
        if self._is_local(cls.__module__):
            return {"$code": name}
        return {"$lib": name}

    def _typing_ref(self, obj: Any) -> Any:
        # An annotation: its text names it; the project classes it names are covered.
        for arg in typing.get_args(obj):
            if isinstance(arg, type):
                self._class_ref(arg)
            elif is_typing_object(arg):
                self._typing_ref(arg)
        text = repr(obj)
        if _ADDRESS.search(text):
            # Annotated[int, Marker()] with a default repr: the text would differ on every
            # run, a silent miss forever. Say so instead.
            raise UnhashableValueError(
                f"the annotation {text} holds an object shown by its memory address; give "
                "that object a __repr__ that shows its content"
            )
        return {"$typing": text}

    def _builtin_ref(self, obj: Any) -> Any:
        owner = obj.__self__
        if owner is None or isinstance(owner, types.ModuleType):
            module = getattr(obj, "__module__", None) or getattr(owner, "__name__", "builtins")
            self._note_module(module)
            return {"$lib": f"{module}.{obj.__qualname__}"}
        exported = self._library_export(obj)
        if exported is not None:  # np.random.seed, random.random: the library's own
            return {"$lib": exported}
        # A method bound to a value ("-".join, {}.get, pattern.match): the value counts.
        return {"$method": obj.__qualname__, "self": fingerprint_obj(owner)}

    def _object_ref(self, obj: Any) -> Any:
        cls = type(obj)
        if callable(obj):
            exported = self._library_export(obj)
            if exported is not None:  # polars.col, numpy.mean, numpy.exp
                return {"$lib": exported}
            wrapped = own_attr(obj, "__wrapped__")
            if wrapped is not None and not self._is_local(cls.__module__):
                # A library's wrapper around code (functools.lru_cache, numba.jit, ...).
                self.note_type(cls)
                return {"$wrapper": qualified_type_name(cls), "wrapped": fingerprint_obj(wrapped)}
        if all(base in STATELESS_BASES or self._is_local(base.__module__) for base in cls.__mro__):
            # An instance of project classes: its class's code and its attributes.
            if id(obj) in self._instances:
                return {"$cycle": qualified_type_name(cls)}
            self._instances.add(id(obj))
            self._keep.append(obj)
            self.note_type(cls)
            try:
                state = fingerprint_obj(instance_state(obj))
            finally:
                self._instances.discard(id(obj))
            return {"$object": qualified_type_name(cls), "state": state}
        raise UnhashableValueError(
            f"no fingerprint is registered for {qualified_type_name(cls)}; register one with "
            f"pipetrail.register_fingerprint({cls.__name__}, fn) (see docs/caching.md)"
        )

    def _library_export(self, obj: Any) -> str | None:
        """Return ``module.name`` when a library module holds ``obj`` itself, else None.

        Such an object is the library's own (``polars.col``, ``numpy.mean``): its
        behaviour is the library's code, covered by the library's version.
        """
        key = id(obj)
        if key not in self._exports:
            self._keep.append(obj)
            self._exports[key] = None
            for module_name in home_modules(obj):
                if module_name == "builtins" or self._is_local(module_name):
                    continue
                found = held_by(module_name, obj)
                if found is not None:
                    self._note_module(module_name)
                    self._exports[key] = found
                    break
        return self._exports[key]

    # -- code ------------------------------------------------------------------------
    def _is_local(self, module_name: str | None) -> bool:
        if not module_name:
            return False
        found = self._local.get(module_name)
        if found is None:
            found = self._local[module_name] = is_project_local(module_name)
        return found

    def _is_local_function(self, func: types.FunctionType) -> bool:
        # A function with no module (exec'd into a plain dict) is the user's own code too.
        return func.__module__ is None or self._is_local(func.__module__)

    def _part_name(self, obj: Any, base: str) -> str:
        name = self._names.get(id(obj))
        if name is not None:
            return name
        name, count = base, 1
        while name in self._taken:
            count += 1
            name = f"{base}#{count}"
        self._names[id(obj)] = name
        self._taken.add(name)
        self._keep.append(obj)
        return name

    def _note_module(self, module_name: str | None) -> None:
        if not module_name:
            return
        if self._is_local(module_name):
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
        if not self._is_local(module.__name__):
            self._note_module(module.__name__)
            return
        if id(module) in self._visiting:
            return
        self._visiting.add(id(module))
        try:
            digest = module_analysis(module, self.cache).digest
        except OSError:
            try:
                digest = digest_bytes(normalize_source(inspect.getsource(module)).encode())
            except (OSError, TypeError):
                self.unhashable.append(f"source of module {module.__name__!r} is not available")
                return
        self._taken.add(module.__name__)
        self.parts[module.__name__] = digest

    def _visit_class(self, cls: type) -> str:
        base = f"{cls.__module__}.{cls.__qualname__}"
        if not self._is_local(cls.__module__):
            self._note_module(cls.__module__)
            return base
        name = self._part_name(cls, base)
        if id(cls) in self._visiting:
            return name
        self._visiting.add(id(cls))
        try:
            analysis = class_analysis(cls, self.cache)
        except (OSError, TypeError, SyntaxError):
            self.unhashable.append(f"source of class {base!r} is not available")
            return name
        self.parts[name] = analysis.digest
        module = sys.modules.get(cls.__module__)
        if module is not None:
            self._resolve_names(analysis, vars(module), name, cls.__qualname__)
        attributes = class_values(cls)
        if attributes:  # class-level values, as they are now (they may be set after the class)
            self.visit_object(attributes, f"{name}:__dict__", f"{cls.__qualname__}:attributes")
        return name

    def _visit_function(self, func: types.FunctionType) -> str:
        base = f"{func.__module__}.{func.__qualname__}"
        if not self._is_local_function(func):
            self._note_module(func.__module__)
            wrapped = own_attr(func, "__wrapped__")
            if wrapped is not None and id(func) not in self._visiting:
                # A library decorator's wrapper (torch.no_grad, ...): the wrapped code counts.
                self._visiting.add(id(func))
                self._keep.append(func)
                self.visit_object(wrapped, f"{base}:__wrapped__", f"{func.__qualname__}")
            return base
        name = self._part_name(func, base)
        if id(func) in self._visiting:
            return name
        self._visiting.add(id(func))
        display = func.__qualname__
        try:
            # The code object's source, not the function's: inspect would follow
            # __wrapped__ to the decorated function and skip the decorator's own code.
            analysis: Analysis | None = _code_analysis(func.__code__, self.cache)
            self.parts[name] = analysis.digest  # type: ignore[union-attr]
        except (OSError, TypeError, SyntaxError):
            # No source (REPL, exec): fall back to the code object, stable per interpreter.
            analysis = None
            self.parts[name] = code_object_digest(func.__code__)
        namespace = dict(func.__globals__)
        if func.__closure__:
            for var, cell in zip(func.__code__.co_freevars, func.__closure__, strict=True):
                try:
                    namespace[var] = cell.cell_contents
                except ValueError:  # empty cell
                    continue
        if analysis is not None:
            self._resolve_names(analysis, namespace, name, display, skip_self=func.__name__)
        else:
            for global_name in (*code_names(func.__code__), *func.__code__.co_freevars):
                if global_name in namespace:
                    self.visit_object(
                        namespace[global_name], f"{name}:{global_name}", f"{display}:{global_name}"
                    )
        # Values bound when the function was made (`def inner(x, k=k)` in a factory).
        if func.__defaults__:
            self.visit_object(func.__defaults__, f"{name}:__defaults__", f"{display}:defaults")
        if func.__kwdefaults__:
            self.visit_object(func.__kwdefaults__, f"{name}:__kwdefaults__", f"{display}:defaults")
        wrapped = own_attr(func, "__wrapped__")
        if wrapped is not None:
            self.visit_object(wrapped, f"{name}:__wrapped__", f"{display}:__wrapped__")
        attributes = {k: v for k, v in vars(func).items() if not k.startswith("__")}
        if attributes:  # set on the function (by a decorator, say) and readable by code
            self.visit_object(attributes, f"{name}:__dict__", f"{display}:attributes")
        return name

    def _resolve_names(
        self,
        analysis: Analysis,
        namespace: dict[str, Any],
        owner: str,
        display: str,
        skip_self: str | None = None,
    ) -> None:
        if analysis.imports:
            imported = names_imported_by(
                analysis.imports,
                namespace.get("__package__") or None,
                lambda name: self._import(name, display),
            )
            if imported:
                namespace = {**namespace, **imported}
        for chain in analysis.names:
            head = chain[0]
            if head == skip_self and len(chain) == 1:
                continue
            if head not in namespace:
                continue  # builtins, locals, or names defined inside the code itself
            obj: Any = namespace[head]
            if obj is builtins or obj is UNRESOLVED:
                continue
            # Follow attribute chains through modules so that `helpers.clean` covers
            # only that function, not the whole helpers module.
            label = head
            for attr in chain[1:]:
                if not isinstance(obj, types.ModuleType) or not hasattr(obj, attr):
                    break
                obj = getattr(obj, attr)
                label = f"{label}.{attr}"
            self.visit_object(obj, f"{owner}:{label}", f"{display}:{label}")

    def _import(self, module_name: str, display: str) -> types.ModuleType | None:
        """Return a module named by a local import (see :func:`import_for_coverage`)."""
        found = import_for_coverage(module_name)
        if found.library is not None:
            self._note_module(found.library)
        if found.failure is not None:
            self.unhashable.append(
                f"project module {module_name!r} imported by {display!r} failed to import "
                f"({found.failure}); fix the import so its code can be covered"
            )
        return found.module


def _code_analysis(code: types.CodeType, cache: CodeCache | None) -> Analysis:
    """A code object's analysis: from its file, else from the text inspect finds."""
    try:
        return function_analysis(code, cache)
    except OSError:
        return function_text_analysis(inspect.getsource(code))


# source text -> the same dedented: keyed by the text itself, so never stale.
_DEDENTED: dict[str, str] = {}
_DEDENTED_LIMIT = 1_000


def _dedented(text: str) -> str:
    found = _DEDENTED.get(text)
    if found is None:
        if len(_DEDENTED) >= _DEDENTED_LIMIT:
            _DEDENTED.clear()
        found = _DEDENTED[text] = textwrap.dedent(text)
    return found


def code_fingerprint(func: Any, cache: CodeCache | None = None) -> CodeFingerprint:
    """Fingerprint a function and the project-local code it refers to.

    Args:
        func: a plain function (or a ``@step``-decorated one).
        cache: the project's code-analysis cache: what was read from source files that
            have not changed since is taken from it (values are always read live). By
            default, the one :func:`~pipetrail.hashing.code_analysis.using_code_cache`
            made current, if any.

    Returns:
        The fingerprint; ``unhashable`` lists reasons the result must not be trusted.
    """
    walker = _Walker(cache if cache is not None else active_code_cache())
    target = pipetrail_func(func) or func
    try:
        unwrapped = inspect.unwrap(target)
        code = getattr(unwrapped, "__code__", None)
        text = _code_analysis(code, walker.cache).text if isinstance(code, types.CodeType) else ""
        source = _dedented(text or inspect.getsource(target))
    except (OSError, TypeError, ValueError, SyntaxError):  # ValueError: a __wrapped__ loop
        source = ""
    walker.visit_root(target)
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
