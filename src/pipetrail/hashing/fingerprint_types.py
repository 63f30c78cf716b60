"""The fingerprint registry: how instances of library and user types become fingerprints.

:func:`~pipetrail.hashing.fingerprint.fingerprint_obj` knows plain values (numbers,
strings, containers, paths, dates, enums, dataclasses). Everything else is found here, by
the value's type and its MRO, in this order:

1. types registered with :func:`register_fingerprint` (users, and pipetrail's own layers
   above hashing, such as the contracts layer for ``Contract``); these go through
   ``functools.singledispatch``, so the most specific registered base class wins;
2. built-in handlers registered *by qualified type name* (``"pandas.DataFrame"``), so
   that pipetrail never imports pandas, polars, pandera, scikit-learn or torch to know
   how to fingerprint them: a value of such a type exists only once its library is
   imported (handlers live in :mod:`pipetrail.hashing.library_values`).

A qualified name matches a class in the MRO either as ``module.qualname`` or as
``toplevel_package.qualname`` (``pandas.core.frame.DataFrame`` is ``pandas.DataFrame``),
since where a library defines a class changes between its versions.

While a code fingerprint is being taken, a *code visitor* is active (see
:func:`code_visitor`): values that hold code (a partial's function, a scikit-learn
``FunctionTransformer``'s ``func``, a callable object) are handed to it, so the function's
code is covered by the code fingerprint. Outside a code fingerprint (a parameter's value),
code inside a value cannot be fingerprinted and raises.

Must import nothing heavy: importing pipetrail stays fast.
"""

from __future__ import annotations

import contextlib
import functools
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from pipetrail.errors import UnhashableValueError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "CodeVisitor",
    "active_visitor",
    "code_visitor",
    "guarded",
    "handler_for",
    "qualified_type_name",
    "register_fingerprint",
    "register_fingerprint_by_name",
]


class CodeVisitor(Protocol):
    """What a code fingerprint offers to value fingerprints while it runs."""

    def reference(self, obj: Any) -> Any:
        """Cover ``obj`` (a function, class, module or other callable) and return its tag.

        Raises:
            UnhashableValueError: ``obj`` can be neither covered nor fingerprinted.
        """
        ...

    def note_type(self, cls: type) -> None:
        """Cover the code of a value's class (its source if local, else its version)."""
        ...


_VISITOR: ContextVar[CodeVisitor | None] = ContextVar("pipetrail_code_visitor", default=None)
# ids of the registered-type values being fingerprinted right now (this thread/context):
# a value that reaches itself again (a contract whose check reads the contract) is
# tagged as a back-reference instead of recursing forever. Its enclosing fingerprint
# covers it already.
_ACTIVE: ContextVar[frozenset[int]] = ContextVar("pipetrail_active_values", default=frozenset())


def active_visitor() -> CodeVisitor | None:
    """Return the code visitor of the code fingerprint being taken, if any."""
    return _VISITOR.get()


@contextlib.contextmanager
def code_visitor(visitor: CodeVisitor) -> Iterator[None]:
    """Make ``visitor`` cover code met inside values for the duration of the block."""
    token = _VISITOR.set(visitor)
    try:
        yield
    finally:
        _VISITOR.reset(token)


def qualified_type_name(cls: type) -> str:
    """Return ``module.qualname`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _names_of(cls: type) -> Iterable[str]:
    module = str(getattr(cls, "__module__", "") or "")
    qualname = str(getattr(cls, "__qualname__", "") or "")
    yield f"{module}.{qualname}"
    top = module.partition(".")[0]
    if top != module:
        yield f"{top}.{qualname}"


# qualified type name -> handler; filled by register_fingerprint_by_name and, lazily on
# first use, by the built-in table of pipetrail.hashing.library_values.
_BY_NAME: dict[str, Callable[[Any], Any]] = {}
_BUILTINS_LOADED = False
# type -> handler (or None): the MRO search is done once per type.
_RESOLVED: dict[type, Callable[[Any], Any] | None] = {}


def register_fingerprint_by_name(names: Iterable[str], handler: Callable[[Any], Any]) -> None:
    """Register ``handler`` for the types named ``names`` without importing them.

    For pipetrail's own layers and built-ins. The handler returns the *final* fingerprint
    object (already tagged with its type), or raises
    :class:`~pipetrail.errors.UnhashableValueError`.
    """
    for name in names:
        _BY_NAME[name] = handler
    _RESOLVED.clear()


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    # Imported on first use: the table names library types, it does not import them.
    from pipetrail.hashing.library_values import BUILTIN_HANDLERS

    for names, handler in BUILTIN_HANDLERS:
        for name in names:
            _BY_NAME.setdefault(name, handler)


def handler_for(cls: type) -> Callable[[Any], Any] | None:
    """Return the by-name handler for instances of ``cls`` (MRO order), if any."""
    try:
        return _RESOLVED[cls]
    except KeyError:
        pass
    _load_builtins()
    found: Callable[[Any], Any] | None = None
    for base in getattr(cls, "__mro__", (cls,)):
        for name in _names_of(base):
            found = _BY_NAME.get(name)
            if found is not None:
                break
        if found is not None:
            break
    _RESOLVED[cls] = found
    return found


def guarded(handler: Callable[[Any], Any], value: Any) -> Any:
    """Call ``handler(value)``; a value that reaches itself again is a back-reference.

    Raises:
        UnhashableValueError: the handler refused the value, or failed on it (any error
            it raised is reported as one, naming the value's type).
    """
    active = _ACTIVE.get()
    if id(value) in active:
        return {"$cycle": qualified_type_name(type(value))}
    token = _ACTIVE.set(active | {id(value)})
    try:
        return handler(value)
    except UnhashableValueError:
        raise
    except RecursionError:
        raise UnhashableValueError(
            f"value of type {qualified_type_name(type(value))} is nested too deeply to be "
            "fingerprinted"
        ) from None
    except Exception as exc:  # a library or user handler may raise anything: name it
        raise UnhashableValueError(
            f"fingerprinting a value of type {qualified_type_name(type(value))} failed "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        _ACTIVE.reset(token)


def register_fingerprint(kind: type, func: Callable[[Any], Any]) -> None:
    """Teach pipetrail how to fingerprint instances of ``kind`` (and its subclasses).

    A cache key must change whenever a value a step uses changes what the step does. For
    types pipetrail does not know, it cannot tell, so a step that reads a module-level
    instance of such a type is always executed again (a *forced miss*, whose reason names
    the global). Registering a fingerprint lets those steps be cached honestly.

    Args:
        kind: the class; subclasses use the same function unless they have their own.
        func: ``func(value)`` returns the value's *state*: anything pipetrail can
            fingerprint (numbers, strings, lists, dicts with string keys, numpy arrays,
            pandas frames, other registered types, and inside a step's code also
            functions). Two values whose state is equal must behave the same; raise
            :class:`~pipetrail.errors.UnhashableValueError` when a value cannot be
            described.

    Example:
        >>> class Tokenizer:
        ...     def __init__(self, vocab: dict[str, int], lower: bool) -> None:
        ...         self.vocab, self.lower = vocab, lower
        >>> pipetrail.register_fingerprint(
        ...     Tokenizer, lambda t: {"vocab": t.vocab, "lower": t.lower}
        ... )

    The fingerprint is tagged with the type's qualified name, so two types with equal
    states never share one. The class's own code is covered as well: its source when it
    is defined in the project, the version of its distribution otherwise.
    """
    if not isinstance(kind, type):
        raise TypeError(f"register_fingerprint needs a class, got {kind!r}")
    if not callable(func):
        raise TypeError(f"register_fingerprint needs a function, got {func!r}")
    from pipetrail.hashing.fingerprint import fingerprint_obj  # fingerprint imports this module

    def registered(value: Any) -> Any:
        visitor = _VISITOR.get()
        if visitor is not None:
            visitor.note_type(type(value))
        state = guarded(func, value)
        # Tagged with the value's own class: two subclasses with equal states differ.
        return {"$type": qualified_type_name(type(value)), "v": fingerprint_obj(state)}

    functools.update_wrapper(registered, func)
    fingerprint_obj.register(kind, registered)
