"""Value fingerprints: the digest of a value, by type.

:func:`fingerprint_obj` is a ``functools.singledispatch`` function. It knows plain values
here (numbers, strings, bytes, containers, paths, dates, enums, dataclasses, compiled
regexes, ``functools.partial``, loggers, ``random.Random``); instances of library types
(numpy, pandas, polars, pyarrow, pandera, scikit-learn, torch, pydantic) and types users
register with :func:`pipetrail.register_fingerprint` are found through
:mod:`pipetrail.hashing.fingerprint_types`. Unknown types raise
:class:`~pipetrail.errors.UnhashableValueError`; there is no fallback to ``repr`` or
pickle, because such a fallback would let two different values share a key (a false
cache hit).

Code inside a value (a partial's function, a callable object) is covered only while a
code fingerprint is taken, by its code visitor; outside one it cannot be fingerprinted.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import functools
import re
import sys
import types
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from pipetrail.errors import UnhashableValueError
from pipetrail.hashing.canonical import to_canonical_obj
from pipetrail.hashing.digest import digest_bytes, digest_value
from pipetrail.hashing.fingerprint_types import (
    active_visitor,
    guarded,
    handler_for,
    qualified_type_name,
)

if TYPE_CHECKING:
    import logging
    import random
    from collections.abc import Callable

__all__ = ["fingerprint", "fingerprint_obj"]


def fingerprint(value: Any) -> str:
    """Return the digest that identifies ``value`` in a cache key.

    Raises:
        UnhashableValueError: if the value's type has no registered fingerprint.
    """
    return digest_value(fingerprint_obj(value))


def _note_class(value: Any, *bases: type) -> None:
    """Cover the code of a subclass of a built-in type (its methods change behaviour)."""
    cls = type(value)
    if cls not in bases:
        visitor = active_visitor()
        if visitor is not None:
            visitor.note_type(cls)


@functools.singledispatch
def fingerprint_obj(value: Any) -> Any:
    """Return a canonical, type-tagged JSON object standing for ``value``.

    Register new types with :func:`pipetrail.register_fingerprint`.

    Raises:
        UnhashableValueError: no fingerprint is known for the value (or a part of it).
    """
    cls = type(value)
    if _register_stdlib_types(cls):
        return fingerprint_obj(value)
    handler = handler_for(cls)
    visitor = active_visitor()
    if handler is not None:
        if visitor is not None:
            visitor.note_type(cls)
        return guarded(handler, value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if visitor is not None:
            visitor.note_type(cls)
        fields = {
            f.name: fingerprint_obj(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
        return {"$dataclass": qualified_type_name(cls), "v": fields}
    if visitor is not None:
        # Functions, classes, modules, callable objects, instances of project classes.
        return visitor.reference(value)
    raise UnhashableValueError(
        f"value of type {qualified_type_name(cls)} cannot be fingerprinted; pass a "
        "JSON-like value, or register a fingerprint for its type with "
        f"pipetrail.register_fingerprint({cls.__name__}, fn)"
    )


@fingerprint_obj.register(type(None))
@fingerprint_obj.register(bool)
@fingerprint_obj.register(int)
@fingerprint_obj.register(str)
def _plain(value: Any) -> Any:
    _note_class(value, bool, int, str, type(None))
    if isinstance(value, enum.Enum):
        # IntEnum/StrEnum/IntFlag members dispatch here through int/str; keep their enum
        # tag so they differ from the plain value (and from another enum's members).
        return _enum(value)
    return value


@fingerprint_obj.register(float)
def _float(value: float) -> Any:
    _note_class(value, float)
    # Tag floats so 1 and 1.0 differ: a step may behave differently for each.
    return {"$f": to_canonical_obj(value)}


@fingerprint_obj.register(list)
def _list(value: list[Any]) -> Any:
    _note_class(value, list)
    return [fingerprint_obj(item) for item in value]


@fingerprint_obj.register(tuple)
def _tuple(value: tuple[Any, ...]) -> Any:
    _note_class(value, tuple)
    # namedtuple: keep field names. Read from the class: an instance's attribute access
    # may be synthetic (unittest.mock.call answers any name).
    field_names = getattr(type(value), "_fields", None)
    if isinstance(field_names, tuple):
        fields = dict(zip(field_names, value, strict=True))
        return {"$namedtuple": type(value).__qualname__, "v": _dict(fields)}
    return {"$tuple": [fingerprint_obj(item) for item in value]}


@fingerprint_obj.register(frozenset)
@fingerprint_obj.register(set)
def _set(value: set[Any] | frozenset[Any]) -> Any:
    _note_class(value, set, frozenset)
    items = [fingerprint_obj(item) for item in value]
    return {"$set": sorted(items, key=lambda obj: digest_value(obj))}


@fingerprint_obj.register(dict)
def _dict(value: dict[Any, Any]) -> Any:
    _note_class(value, dict, collections.OrderedDict)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise UnhashableValueError(
                f"dict key {key!r} of type {type(key).__name__} cannot be fingerprinted; "
                "use string keys"
            )
        # Type tags are keys starting with "$"; a user key that does is escaped with a
        # second "$" so that {"$path": "x"} can never equal PurePath("x").
        out["$" + key if key.startswith("$") else key] = fingerprint_obj(item)
    return out


@fingerprint_obj.register(bytes)
@fingerprint_obj.register(bytearray)
def _bytes(value: bytes | bytearray) -> Any:
    return {"$bytes": digest_bytes(bytes(value))}


@fingerprint_obj.register(PurePath)
def _path(value: PurePath) -> Any:
    # A path parameter is identified by its text; file *content* is tracked by source().
    return {"$path": value.as_posix()}


@fingerprint_obj.register(enum.Enum)
def _enum(value: enum.Enum) -> Any:
    cls = type(value)
    visitor = active_visitor()
    if visitor is not None:
        visitor.note_type(cls)  # an enum's methods are code
    return {"$enum": f"{cls.__module__}.{cls.__qualname__}", "v": fingerprint_obj(value.value)}


@fingerprint_obj.register(dt.datetime)
@fingerprint_obj.register(dt.date)
@fingerprint_obj.register(dt.time)
def _temporal(value: dt.date | dt.time) -> Any:
    return {"$" + type(value).__name__: value.isoformat()}


@fingerprint_obj.register(dt.timedelta)
def _timedelta(value: dt.timedelta) -> Any:
    return {"$timedelta": [value.days, value.seconds, value.microseconds]}


@fingerprint_obj.register(re.Pattern)
def _pattern(value: re.Pattern[Any]) -> Any:
    return {"$re": fingerprint_obj(value.pattern), "flags": int(value.flags)}


@fingerprint_obj.register(functools.partial)
def _partial(value: functools.partial[Any]) -> Any:
    # The bound arguments are part of what the partial does; its function is code.
    _note_class(value, functools.partial)
    return {
        "$partial": fingerprint_obj(value.func),
        "args": [fingerprint_obj(arg) for arg in value.args],
        "keywords": _dict(value.keywords),
    }


def _logger(value: logging.Logger) -> Any:
    # Where log lines go does not change what a step computes; which logger does.
    return {"$logger": value.name}


@fingerprint_obj.register(range)
def _range(value: range) -> Any:
    return {"$range": [value.start, value.stop, value.step]}


@fingerprint_obj.register(types.SimpleNamespace)
def _namespace(value: types.SimpleNamespace) -> Any:
    _note_class(value, types.SimpleNamespace)
    return {"$namespace": _dict(vars(value))}


@fingerprint_obj.register(collections.defaultdict)
def _defaultdict(value: collections.defaultdict[Any, Any]) -> Any:
    factory = value.default_factory
    if factory is None or (isinstance(factory, type) and factory.__module__ == "builtins"):
        made: Any = None if factory is None else factory.__qualname__
    else:
        made = fingerprint_obj(factory)
    return {"$defaultdict": made, "v": _dict(value)}


def _random(value: random.Random) -> Any:
    import random

    _note_class(value, random.Random)
    try:
        state = value.getstate()
    except NotImplementedError:  # SystemRandom: no state, a different stream every call
        raise UnhashableValueError(
            f"{qualified_type_name(type(value))} draws from the operating system and has no "
            "state to fingerprint; use random.Random(seed)"
        ) from None
    return {"$random": fingerprint_obj(state)}


# Standard-library types whose modules pipetrail does not import itself (logging and
# random cost milliseconds at start-up): module -> (class name, handler). A value of one
# exists only once its module is imported, so the handler is registered when the first
# value that no registered type matched is met with that module loaded.
_STDLIB_TYPES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "logging": ("Logger", _logger),
    "random": ("Random", _random),
}


def _register_stdlib_types(cls: type) -> bool:
    """Register the handlers of :data:`_STDLIB_TYPES` whose modules are loaded now.

    Returns:
        Whether ``cls`` is one of the classes just registered (or a subclass): dispatch
        again to use its handler.
    """
    matched = False
    for module_name, (class_name, handler) in list(_STDLIB_TYPES.items()):
        module = sys.modules.get(module_name)
        if module is None:
            continue
        registered: type = getattr(module, class_name)
        fingerprint_obj.register(registered, handler)  # idempotent: threads may race here
        _STDLIB_TYPES.pop(module_name, None)
        matched = matched or issubclass(cls, registered)
    return matched
