"""Value fingerprints: the digest of a parameter's value, by type.

:func:`fingerprint` is a ``functools.singledispatch`` function so plugins can register
their own types. Unknown types raise :class:`~pipetrail.errors.UnhashableValueError`;
there is no fallback to ``repr`` or pickle, because such a fallback would let two
different values share a key (a false cache hit).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import sys
from pathlib import PurePath
from typing import Any

from pipetrail.errors import UnhashableValueError
from pipetrail.hashing.canonical import to_canonical_obj
from pipetrail.hashing.digest import digest_value

__all__ = ["fingerprint", "fingerprint_obj"]


def fingerprint(value: Any) -> str:
    """Return the digest that identifies ``value`` in a cache key.

    Raises:
        UnhashableValueError: if the value's type has no registered fingerprint.
    """
    return digest_value(fingerprint_obj(value))


@functools.singledispatch
def fingerprint_obj(value: Any) -> Any:
    """Return a canonical, type-tagged JSON object standing for ``value``.

    Register new types with ``@fingerprint_obj.register``.
    """
    cls = type(value)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: fingerprint_obj(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
        return {"$dataclass": name, "v": fields}
    if "pydantic" in sys.modules:
        pydantic = sys.modules["pydantic"]
        if isinstance(value, pydantic.BaseModel):
            return {"$model": name, "v": fingerprint_obj(value.model_dump(mode="json"))}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.generic):
            return {"$np": str(value.dtype), "v": to_canonical_obj(value.item())}
        if isinstance(value, numpy.ndarray):
            from pipetrail.hashing.digest import digest_bytes

            arr = numpy.ascontiguousarray(value)
            if arr.dtype.hasobject:
                raise UnhashableValueError(
                    "numpy array of dtype object has no canonical encoding; convert it to a "
                    "typed array"
                )
            return {
                "$ndarray": arr.dtype.str,
                # The original shape: ascontiguousarray turns a 0-d array into shape (1,).
                "shape": list(value.shape),
                "data": digest_bytes(arr.tobytes()),
            }
    raise UnhashableValueError(
        f"value of type {name} cannot be "
        "fingerprinted; pass a JSON-like value, or register one with "
        "pipetrail.hashing.fingerprint.fingerprint_obj.register"
    )


@fingerprint_obj.register(type(None))
@fingerprint_obj.register(bool)
@fingerprint_obj.register(int)
@fingerprint_obj.register(str)
def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        # IntEnum/StrEnum/IntFlag members dispatch here through int/str; keep their enum
        # tag so they differ from the plain value (and from another enum's members).
        return _enum(value)
    return value


@fingerprint_obj.register(float)
def _float(value: float) -> Any:
    # Tag floats so 1 and 1.0 differ: a step may behave differently for each.
    return {"$f": to_canonical_obj(value)}


@fingerprint_obj.register(list)
def _list(value: list[Any]) -> Any:
    return [fingerprint_obj(item) for item in value]


@fingerprint_obj.register(tuple)
def _tuple(value: tuple[Any, ...]) -> Any:
    if hasattr(value, "_fields"):  # namedtuple: keep field names
        fields = dict(zip(value._fields, value, strict=True))
        return {"$namedtuple": type(value).__qualname__, "v": _dict(fields)}
    return {"$tuple": [fingerprint_obj(item) for item in value]}


@fingerprint_obj.register(frozenset)
@fingerprint_obj.register(set)
def _set(value: set[Any] | frozenset[Any]) -> Any:
    items = [fingerprint_obj(item) for item in value]
    return {"$set": sorted(items, key=lambda obj: digest_value(obj))}


@fingerprint_obj.register(dict)
def _dict(value: dict[Any, Any]) -> Any:
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
    from pipetrail.hashing.digest import digest_bytes

    return {"$bytes": digest_bytes(bytes(value))}


@fingerprint_obj.register(PurePath)
def _path(value: PurePath) -> Any:
    # A path parameter is identified by its text; file *content* is tracked by source().
    return {"$path": value.as_posix()}


@fingerprint_obj.register(enum.Enum)
def _enum(value: enum.Enum) -> Any:
    cls = type(value)
    return {"$enum": f"{cls.__module__}.{cls.__qualname__}", "v": fingerprint_obj(value.value)}


@fingerprint_obj.register(dt.datetime)
@fingerprint_obj.register(dt.date)
@fingerprint_obj.register(dt.time)
def _temporal(value: dt.date | dt.time) -> Any:
    return {"$" + type(value).__name__: value.isoformat()}


@fingerprint_obj.register(dt.timedelta)
def _timedelta(value: dt.timedelta) -> Any:
    return {"$timedelta": [value.days, value.seconds, value.microseconds]}
