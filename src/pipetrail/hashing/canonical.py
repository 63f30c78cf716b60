"""Canonical encoding: one byte string per value, on every machine and Python version.

Canonical JSON here means: UTF-8, object keys sorted by code point, no insignificant
whitespace, integers as integers, floats in their shortest round-trip form (``repr``),
non-finite floats as tagged objects, tuples encoded as lists. ``canonical_bytes`` prefixes
a version tag so that a future encoding can never collide with this one.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pipetrail.errors import UnhashableValueError

__all__ = ["CANONICAL_VERSION", "canonical_bytes", "canonical_json", "to_canonical_obj"]

CANONICAL_VERSION = b"pt-c1\x00"

_SCALARS = (str, int, bool, type(None))


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


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of a JSON-like value."""
    return json.dumps(
        to_canonical_obj(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def canonical_bytes(value: Any) -> bytes:
    """Return the versioned canonical bytes of a JSON-like value; hash these, nothing else.

    Raises:
        UnhashableValueError: if the value is not JSON-like, or holds a string with no
            UTF-8 encoding (a lone surrogate, as ``os.fsdecode`` makes of undecodable
            file names).
    """
    text = canonical_json(value)
    try:
        return CANONICAL_VERSION + text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnhashableValueError(
            f"a string in the value has no UTF-8 encoding ({exc.reason} at "
            f"{exc.object[exc.start : exc.end]!r}); pass valid Unicode text"
        ) from None
