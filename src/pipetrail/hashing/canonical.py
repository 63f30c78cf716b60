"""Canonical encoding: one byte string per value, on every machine and Python version.

Canonical JSON here means: UTF-8, object keys sorted by code point, no insignificant
whitespace, integers as integers, floats in their shortest round-trip form (``repr``),
non-finite floats as tagged objects, tuples encoded as lists. ``canonical_bytes`` prefixes
a version tag so that a future encoding can never collide with this one.

Two encoders give these bytes. The reference encoder (:func:`reference_json`: the
standard library's ``json`` over :func:`to_canonical_obj`) defines them. orjson gives the
same bytes about three times faster for values made only of ``str``, ``bool``, ``None``,
64-bit integers, finite floats written without an exponent, and ``dict`` (``str`` keys),
``list`` and ``tuple`` of those, all of their exact types: :func:`canonical_json` checks
that first (:func:`_orjson_safe`) and uses the reference encoder for anything else. What
orjson would write differently, and so never encodes here: non-finite floats (``null``),
floats in exponent form (``1e16`` where ``repr`` gives ``1e+16``), integers beyond 64 bits
(it refuses them), non-``str`` keys, subclasses, enums, UUIDs, dates and dataclasses (it
encodes them; the reference refuses them), and strings with lone surrogates (it refuses
them). tests/unit/hashing/test_canonical_orjson.py checks byte equality over generated
values.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from pipetrail.errors import UnhashableValueError

__all__ = [
    "CANONICAL_VERSION",
    "canonical_bytes",
    "canonical_json",
    "checked_canonical_bytes",
    "checked_canonical_json",
    "checked_json_of_members",
    "is_plain",
    "member_json",
    "reference_json",
    "to_canonical_obj",
]

CANONICAL_VERSION = b"pt-c1\x00"

_SCALARS = (str, int, bool, type(None))
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
_INT_MIN = -(1 << 63)
_INT_LIMIT = 1 << 64  # orjson writes integers in [-2**63, 2**64)


def to_canonical_obj(value: Any) -> Any:
    """Return ``value`` as plain JSON types, normalizing non-finite floats.

    Raises:
        UnhashableValueError: if the value holds something that is not JSON-like
            (dict keys must be strings).
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnhashableValueError(
                    f"dict key {key!r} of type {type(key).__name__} has no canonical encoding; "
                    "use string keys"
                )
            out[key] = to_canonical_obj(item)
        return out
    if isinstance(value, list | tuple):
        return [to_canonical_obj(item) for item in value]
    raise UnhashableValueError(
        f"value of type {type(value).__module__}.{type(value).__qualname__} has no canonical "
        "JSON encoding"
    )


def _orjson_safe(value: Any) -> bool:
    """Whether orjson writes ``value`` exactly as the reference encoder does.

    Strings are not inspected: one orjson cannot encode (a lone surrogate) makes it raise,
    and :func:`canonical_json` then falls back. Members that are ``str``, ``bool``,
    ``None``, ``int`` or ``float`` (most of a ledger payload) are checked in the loop,
    without a call.
    """
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            member = type(item)
            if member is str or member is bool or item is None:
                continue
            if member is int:
                if _INT_MIN <= item < _INT_LIMIT:
                    continue
                return False
            if member is float:
                if _plain_float(item):
                    continue
                return False
            if not _orjson_safe(item):
                return False
        return True
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(_INT_MIN <= value < _INT_LIMIT)
    if kind is float:
        return _plain_float(value)
    if kind is list or kind is tuple:
        for item in value:
            member = type(item)
            if member is str or member is bool or item is None:
                continue
            if member is int:
                if _INT_MIN <= item < _INT_LIMIT:
                    continue
                return False
            if member is float:
                if _plain_float(item):
                    continue
                return False
            if not _orjson_safe(item):
                return False
        return True
    return False


def _plain_float(value: float) -> bool:
    """Finite, and written without an exponent by ``repr``: orjson's digits are the same.

    ``repr`` switches to an exponent exactly when the shortest round-trip digits place
    the decimal point before the fourth decimal or after the sixteenth digit, that is
    for magnitudes below ``1e-4`` or from ``1e16`` on (both bounds are what the float
    literals denote; zero has no exponent). ``x - x`` is ``nan`` for infinities and nan.
    """
    magnitude = value if value >= 0.0 else -value
    return value - value == 0.0 and (1e-4 <= magnitude < 1e16 or value == 0.0)


def reference_json(value: Any) -> str:
    """Return the canonical JSON text of a JSON-like value, by the reference encoder.

    Defines the canonical form (docs/adr/0001-digests-and-canonical-encoding.md);
    :func:`canonical_json` gives the same text, faster where it can.
    """
    return json.dumps(
        to_canonical_obj(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of a JSON-like value."""
    return checked_canonical_json(value)[0]


def checked_canonical_json(value: Any) -> tuple[str, bool]:
    """Return the canonical JSON text of ``value``, and whether orjson wrote it.

    When orjson wrote it, every member of ``value`` (at any depth) passed the checks of
    :func:`_orjson_safe` and encodes without error: :func:`member_json` may encode them
    without checking again.
    """
    if _orjson_safe(value):
        try:
            return orjson.dumps(value, option=_ORJSON_OPTIONS).decode("utf-8"), True
        except orjson.JSONEncodeError:
            pass  # a string orjson cannot encode: the reference encoder says what is wrong
    return reference_json(value), False


def is_plain(value: Any) -> bool:
    """Whether orjson writes ``value`` as the reference encoder does, as far as types tell.

    See the module docstring; a string orjson refuses still makes it raise.
    """
    return _orjson_safe(value)


def checked_json_of_members(value: dict[str, Any], known: frozenset[str]) -> tuple[str, bool]:
    """:func:`checked_canonical_json` of a dict whose members under ``known`` are plain.

    A member named in ``known`` must be one orjson was shown to write as the reference
    encoder does (a member of a value :func:`checked_canonical_json` or
    :func:`checked_canonical_bytes` reported as written by orjson, unchanged since): it
    is not walked again. Every other member is checked as :func:`checked_canonical_json`
    checks it. Gives exactly the text and flag :func:`checked_canonical_json` gives.
    """
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                break
            if key in known:
                continue
            member = type(item)
            if member is str or member is bool or item is None:
                continue
            if member is int:
                if _INT_MIN <= item < _INT_LIMIT:
                    continue
                break
            if not _orjson_safe(item):
                break
        else:
            try:
                return orjson.dumps(value, option=_ORJSON_OPTIONS).decode("utf-8"), True
            except orjson.JSONEncodeError:
                pass  # a string orjson cannot encode: the reference encoder says what is wrong
    return reference_json(value), False


def member_json(value: Any) -> str | None:
    """The canonical JSON text of a member of a value orjson encoded; None stays None.

    Only for members of a value :func:`checked_canonical_json` reported as written by
    orjson (so known to give the reference encoder's bytes): it does not check again.
    """
    if value is None:
        return None
    return orjson.dumps(value, option=_ORJSON_OPTIONS).decode("utf-8")


def canonical_bytes(value: Any) -> bytes:
    """Return the versioned canonical bytes of a JSON-like value; hash these, nothing else.

    Raises:
        UnhashableValueError: if the value is not JSON-like, or holds a string with no
            UTF-8 encoding (a lone surrogate, as ``os.fsdecode`` makes of undecodable
            file names).
    """
    return checked_canonical_bytes(value)[0]


def checked_canonical_bytes(value: Any) -> tuple[bytes, bool]:
    """Return :func:`canonical_bytes` and whether orjson wrote them.

    As for :func:`checked_canonical_json`: when orjson wrote them, every member of
    ``value`` passed the checks of :func:`_orjson_safe` and encodes without error.

    Raises:
        UnhashableValueError: as :func:`canonical_bytes`.
    """
    if _orjson_safe(value):
        try:
            return CANONICAL_VERSION + orjson.dumps(value, option=_ORJSON_OPTIONS), True
        except orjson.JSONEncodeError:
            pass  # a lone surrogate: the reference path raises the error below
    text = reference_json(value)
    try:
        return CANONICAL_VERSION + text.encode("utf-8"), False
    except UnicodeEncodeError as exc:
        raise UnhashableValueError(
            f"a string in the value has no UTF-8 encoding ({exc.reason} at "
            f"{exc.object[exc.start : exc.end]!r}); pass valid Unicode text"
        ) from None
