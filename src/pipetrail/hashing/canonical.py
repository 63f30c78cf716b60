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
the types first (:func:`_orjson_safe`; floats by value too) and uses the reference encoder
for anything else. What orjson would write differently, and so never encodes here:
non-finite floats (``null``), floats in exponent form (``1e16`` where ``repr`` gives
``1e+16``), non-``str`` keys, subclasses, enums, UUIDs, dates and dataclasses (it encodes
them; the reference refuses them). What orjson refuses, integers beyond 64 bits and
strings with lone surrogates, makes it raise: the reference encoder then writes the value
(or says what is wrong with it). tests/unit/hashing/test_canonical_orjson.py checks byte
equality over generated values.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from pipetrail.errors import UnhashableValueError

__all__ = [
    "CANONICAL_VERSION",
    "MEMBER_OPTIONS",
    "canonical_bytes",
    "canonical_json",
    "checked_canonical_bytes",
    "checked_canonical_json",
    "checked_json_of_members",
    "checked_plain_bytes",
    "is_plain",
    "is_plain_but",
    "member_json",
    "plain_canonical_bytes",
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
# The options :func:`member_json` gives orjson, for a caller encoding many members in a
# loop (the text of ``orjson.dumps(value, option=MEMBER_OPTIONS)`` is member_json's).
MEMBER_OPTIONS = _ORJSON_OPTIONS
# Members orjson writes as the reference encoder does, or refuses (integers beyond 64 bits:
# orjson writes those in [-2**63, 2**64) and raises for the others), whatever their value.
_LEAVES = frozenset({str, bool, int, type(None)})
# Members looked at one by one: floats (by value) and the containers (by their members).
_WALKED = _LEAVES | {float, dict, list, tuple}


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
    """Whether orjson writes ``value`` exactly as the reference encoder does, or refuses it.

    Strings are not inspected: one orjson cannot encode (a lone surrogate) makes it raise,
    and :func:`canonical_json` then falls back; so do integers beyond 64 bits, which it
    refuses (every call of orjson here falls back to the reference encoder when it
    raises). Nor are a dict's keys: orjson refuses every key that is not exactly a
    ``str`` (it is given no option to write others), so a key only the reference encoder
    writes (a subclass of ``str``) or refuses makes it raise as well. A container's
    members are sorted out by their types in one pass of C code (``map(type, ...)``):
    one whose members are all ``str``, ``bool``, ``None`` or ``int`` (most of a ledger
    payload) is walked no further; only floats and nested containers are then looked at
    one by one (:func:`_members_plain`).
    """
    kind = type(value)
    if kind is dict:
        return _members_plain(value.values())
    if kind is list or kind is tuple:
        return _members_plain(value)
    if kind in _LEAVES:
        return True
    if kind is float:
        return _plain_float(value)
    return False


def _members_plain(members: Any) -> bool:
    """:func:`_orjson_safe` of every one of ``members`` (a container's values).

    A nested container's members are walked once: a payload's nested objects (how each
    output is read, the key's components) are not checked twice.
    """
    kinds = set(map(type, members))
    if kinds <= _LEAVES:
        return True
    if not kinds <= _WALKED:
        return False
    for item in members:
        kind = type(item)
        if kind in _LEAVES or not item:  # an empty container is safe
            continue
        if kind is float:
            if not _plain_float(item):
                return False
        elif not _members_plain(item.values() if kind is dict else item):
            return False  # a container: walked once, by its members
    return True


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
    if type(value) is dict and _members_safe(value, known):
        try:
            return orjson.dumps(value, option=_ORJSON_OPTIONS).decode("utf-8"), True
        except orjson.JSONEncodeError:
            pass  # a string orjson cannot encode: the reference encoder says what is wrong
    return reference_json(value), False


def _members_safe(value: dict[str, Any], known: frozenset[str]) -> bool:
    """:func:`_orjson_safe` of a dict, its members under ``known`` taken as safe.

    One pass over the members, which sorts out their kinds as it goes: the dicts it is
    given (a step event's payload, a key's components) always hold a container, so the
    pass over their kinds that :func:`_members_plain` makes first would never settle
    one. A member of a kind it does not walk makes it false, named in ``known`` or not,
    as that pass would.
    """
    for key, item in value.items():
        kind = type(item)
        if kind in _LEAVES:
            continue
        if kind not in _WALKED:
            return False
        if not item or key in known:
            continue
        if kind is float:
            if not _plain_float(item):
                return False
        elif not _members_plain(item.values() if kind is dict else item):
            return False  # a container: as _members_plain walks it
    return True


def is_plain_but(value: dict[str, Any], known: frozenset[str]) -> bool:
    """:func:`is_plain` of a dict whose members under ``known`` were shown plain.

    As for :func:`checked_json_of_members`: a member named in ``known`` is not walked
    again; every other member is checked as :func:`is_plain` checks it.
    """
    return type(value) is dict and _members_safe(value, known)


def checked_plain_bytes(value: Any) -> tuple[bytes, bool]:
    """:func:`checked_canonical_bytes` of a value the caller showed plain, without a walk.

    Plain as for :func:`plain_canonical_bytes`; should orjson refuse a string in it (a
    lone surrogate), :func:`checked_canonical_bytes` decides, as it would have.

    Raises:
        UnhashableValueError: as :func:`canonical_bytes`.
    """
    try:
        return CANONICAL_VERSION + orjson.dumps(value, option=_ORJSON_OPTIONS), True
    except orjson.JSONEncodeError:
        return checked_canonical_bytes(value)


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


def plain_canonical_bytes(value: Any) -> bytes:
    """:func:`canonical_bytes` of a value the caller knows is plain, without walking it.

    Plain: :func:`is_plain` holds for it, as the caller built it from parts that passed
    (strings, small integers, members of a value shown plain). Only the walk is skipped:
    should orjson refuse a string in it (a lone surrogate), :func:`canonical_bytes`
    decides, as it would have.

    Raises:
        UnhashableValueError: as :func:`canonical_bytes`.
    """
    try:
        return CANONICAL_VERSION + orjson.dumps(value, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return canonical_bytes(value)


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
