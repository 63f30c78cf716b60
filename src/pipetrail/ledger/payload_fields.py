"""How a typed event record is read from its payload: from the record's own declaration.

Each record in :mod:`pipetrail.ledger.event_records` is a frozen dataclass; its fields say
how the payload fills them, so no kind has a builder of its own:

* the field's payload key is its name (or the ``key`` its :func:`reads` metadata names);
* a field whose metadata is :data:`REQUIRED` must be in the payload (its absence raises
  ``KeyError`` with the key, which :func:`~pipetrail.ledger.event_records.parse_payload`
  names); any other field falls back to its declared default when the key is absent;
* the declared type converts the value: ``int``, ``float`` and ``bool`` values go through
  that type (``int | None`` and ``bool | None`` too, ``None`` staying ``None``); ``dict``,
  ``list`` and ``tuple`` values are copied into a new one (an optional one reads a
  ``None`` or empty value as empty, unless declared ``null_is_empty=False``); text, ``Any``
  and optional containers are kept as stored;
* :func:`reads`' ``convert`` replaces the conversion, its ``read`` computes the field from
  the whole payload.

A conversion fails the way the type itself fails (``int("x")`` raises ``ValueError``...),
field by field in declaration order, so a malformed payload's error names its first bad
field. :func:`read_record` runs a plan made once per record type (:func:`plan_of`).
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any

if typing.TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["REQUIRED", "ReadPlan", "plan_of", "read_record", "reads"]

R = typing.TypeVar("R")

_REQUIRED = "pipetrail.required"
_KEY = "pipetrail.key"
_CONVERT = "pipetrail.convert"
_READ = "pipetrail.read"
_NULL_IS_EMPTY = "pipetrail.null_is_empty"
_ABSENT = object()

# How one field is read (the plan's step kinds).
_AS_STORED = 0  # the value, or the declared default when the key is absent
_REQUIRED_AS_STORED = 1  # payload[key]
_REQUIRED_CONVERTED = 2  # convert(payload[key])
_CONVERTED = 3  # convert(value), or the default when the key is absent
_CONVERTED_UNLESS_NULL = 4  # None stays None
_COPIED_OR_EMPTY = 5  # convert(value) when it is truthy, else a new empty container
_READ_WHOLE = 6  # read(payload)

_SCALARS: tuple[type, ...] = (int, float, bool)
_CONTAINERS: tuple[type, ...] = (dict, list, tuple)


def reads(
    *,
    required: bool = False,
    key: str | None = None,
    convert: Callable[[Any], Any] | None = None,
    read: Callable[[dict[str, Any]], Any] | None = None,
    null_is_empty: bool = True,
) -> dict[str, Any]:
    """How a record field is read from its payload: the ``metadata`` of its ``field()``.

    Args:
        required: the payload always has the key: its absence is an error.
        key: the payload key, when it is not the field's name.
        convert: how the stored value becomes the field's (instead of the declared type).
        read: computes the field from the whole payload (key and conversion unused).
        null_is_empty: for an optional container, whether a stored ``None`` (or any
            false value) reads as empty; if not, only an absent key does.

    Returns:
        The field's metadata.
    """
    return {
        _REQUIRED: required,
        _KEY: key,
        _CONVERT: convert,
        _READ: read,
        _NULL_IS_EMPTY: null_is_empty,
    }


# ``field(default=..., metadata=REQUIRED)``: the payload always has the field's key.
REQUIRED = reads(required=True)


class ReadPlan(typing.NamedTuple):
    """How one record type reads its payload, made once by :func:`plan_of`.

    Attributes:
        checked: the steps that may raise, in declaration order: ``(name, step kind, key,
            conversion or reader, default or factory)``.
        as_stored: ``(name, key, default)`` of the fields kept as stored (they cannot
            raise, so they are read after the checked ones, in one pass).
        template: every field past the caller's, in declaration order (skipped ones
            with their default).
    """

    checked: tuple[tuple[str, int, str, Any, Any], ...]
    as_stored: tuple[tuple[str, str, Any], ...]
    template: dict[str, Any]


def _conversion(type_hint: Any) -> tuple[Callable[[Any], Any] | None, bool]:
    """The conversion a declared type implies, and whether ``None`` stays ``None``."""
    if type_hint in _SCALARS:
        return type_hint, False
    origin = typing.get_origin(type_hint)
    if origin in _CONTAINERS:
        return origin, False
    if origin is types.UnionType or origin is typing.Union:
        others = [a for a in typing.get_args(type_hint) if a is not type(None)]
        if len(others) == 1 and others[0] in _SCALARS:
            return others[0], True
    return None, False  # text, Any, optional containers: kept as stored


def _step(f: Field[Any], type_hint: Any) -> tuple[str, int, str, Any, Any]:
    meta = f.metadata
    key = meta.get(_KEY) or f.name
    if meta.get(_READ) is not None:
        return (f.name, _READ_WHOLE, key, meta[_READ], None)
    implied, keeps_null = _conversion(type_hint)
    convert = meta.get(_CONVERT) or implied
    if meta.get(_REQUIRED):
        kind = _REQUIRED_AS_STORED if convert is None else _REQUIRED_CONVERTED
        return (f.name, kind, key, convert, None)
    if f.default_factory is not MISSING:
        make_default = f.default_factory
    elif f.default is not MISSING:
        make_default = functools.partial(_same, f.default)
    else:
        raise TypeError(f"field {f.name!r} has no default and is not declared required")
    if convert is None:
        if f.default_factory is MISSING:
            return (f.name, _AS_STORED, key, None, f.default)
        return (f.name, _CONVERTED, key, _same, make_default)
    if implied in _CONTAINERS and meta.get(_NULL_IS_EMPTY, True):
        return (f.name, _COPIED_OR_EMPTY, key, convert, make_default)
    if keeps_null and f.default is None:
        return (f.name, _CONVERTED_UNLESS_NULL, key, convert, None)
    return (f.name, _CONVERTED, key, convert, make_default)


def _same(value: Any) -> Any:
    return value


def plan_of(record_type: type, place: frozenset[str], skipped: frozenset[str]) -> ReadPlan:
    """How ``record_type`` reads a payload (its dataclass fields, in declaration order).

    Args:
        record_type: the record's dataclass (frozen or not, without ``__post_init__``:
            records are made without calling ``__init__``).
        place: the fields the caller fills (they come first in the declaration).
        skipped: the fields not read from the payload: they keep their declared default.

    Returns:
        The plan :func:`read_record` runs.

    Raises:
        TypeError: the record type cannot be read this way (a field without a default
            that is not required, a skipped field with a default factory, a
            ``__post_init__``).
    """
    if hasattr(record_type, "__post_init__"):
        raise TypeError(f"{record_type.__name__} has a __post_init__, which reads would skip")
    hints = typing.get_type_hints(record_type)
    checked: list[tuple[str, int, str, Any, Any]] = []
    as_stored: list[tuple[str, str, Any]] = []
    template: dict[str, Any] = {}
    for f in fields(record_type):
        if f.name in place:
            continue
        if f.name in skipped:
            if f.default is MISSING:
                raise TypeError(f"skipped field {f.name!r} needs a plain default")
            template[f.name] = f.default
            continue
        template[f.name] = None  # its place in the declaration order
        step = _step(f, hints[f.name])
        if step[1] == _AS_STORED:
            as_stored.append((step[0], step[2], step[4]))
        else:
            checked.append(step)
    return ReadPlan(tuple(checked), tuple(as_stored), template)


def read_record(
    record_type: type[R], plan: ReadPlan, p: dict[str, Any], place: dict[str, Any]
) -> R:
    """The record ``p`` reads as, by ``plan`` (``place``: the fields the caller filled).

    The record is made as its dataclass ``__init__`` would make it (its attributes set in
    declaration order), without the call: ``__init__`` of a frozen dataclass sets each
    field through ``object.__setattr__``, which costs more than reading the payload.

    Raises:
        KeyError: a required key is absent (its ``args[0]`` is the key).
        TypeError: a value cannot be converted (as the declared type raises it).
        ValueError: likewise.
    """
    values = place
    values.update(plan.template)
    get = p.get
    for name, kind, key, how, default in plan.checked:
        if kind == _COPIED_OR_EMPTY:
            value = get(key)
            values[name] = how(value) if value else default()
        elif kind == _REQUIRED_AS_STORED:
            values[name] = p[key]
        elif kind == _REQUIRED_CONVERTED:
            values[name] = how(p[key])
        elif kind == _CONVERTED:
            value = get(key, _ABSENT)
            values[name] = default() if value is _ABSENT else how(value)
        elif kind == _CONVERTED_UNLESS_NULL:
            value = get(key)
            values[name] = None if value is None else how(value)
        else:  # _READ_WHOLE
            values[name] = how(p)
    for name, key, default in plan.as_stored:
        values[name] = get(key, default)
    record: R = object.__new__(record_type)
    object.__setattr__(record, "__dict__", values)
    return record
