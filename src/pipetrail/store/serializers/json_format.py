"""The ``json`` serializer: plain Python data as canonical JSON.

Owns the storage of None, bool, int, float, str and lists, tuples and string-keyed dicts
of them (exact built-in types only: ``numpy.float64`` or an ``OrderedDict`` are not
plain data). Bytes are :func:`pipetrail.hashing.canonical_json` encoded as UTF-8, so equal
values give equal digests. Non-finite floats use the canonical ``{"$float": "nan"}`` form
and come back as floats; tuples come back as lists (``meta["python_type"]`` records the
original top-level type). Imports only ``pipetrail.hashing`` and ``pipetrail.errors``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipetrail.errors import SerializationError, UnhashableValueError
from pipetrail.hashing import canonical_json
from pipetrail.store.serializers.base import StoredArtifact

if TYPE_CHECKING:
    from pipetrail.store.base import ContentStore

__all__ = ["JsonSerializer"]

_SCALARS = frozenset({type(None), bool, int, float, str})
_FLOAT_TAG = "$float"
_NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _is_plain(value: Any) -> bool:
    """Return whether ``value`` is made only of exact JSON-like built-in types."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is list or kind is tuple:
            stack.extend(item)
        elif kind is dict:
            for key, sub in item.items():
                if type(key) is not str:
                    return False
                stack.append(sub)
        else:
            return False
    return True


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        tag = obj.get(_FLOAT_TAG)
        if isinstance(tag, str) and tag in _NON_FINITE:
            return _NON_FINITE[tag]
    return obj


def _has_reserved_dict(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            if _decode_object(item) is not item:
                return True
            stack.extend(item.values())
        elif type(item) in (list, tuple):
            stack.extend(item)
    return False


class JsonSerializer:
    """Stores plain data as canonical JSON (see the module docstring)."""

    name = "json"

    def handles(self, value: Any) -> bool:
        """Return whether ``value`` is plain JSON-like data of exact built-in types."""
        return _is_plain(value)

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Store ``value`` as canonical JSON.

        Raises:
            SerializationError: the value is not plain data, uses the reserved key
                ``"$float"``, or holds a string that is not valid Unicode.
        """
        try:
            text = canonical_json(value)
        except UnhashableValueError as exc:
            raise SerializationError(
                f"{exc}; the json serializer stores only plain data (None, bool, int, float, "
                "str, lists, tuples and dicts with str keys)."
            ) from exc
        if f'"{_FLOAT_TAG}"' in text and _has_reserved_dict(value):
            raise SerializationError(
                f"A dict whose only key is '{_FLOAT_TAG}' (with value 'nan', 'inf' or '-inf') "
                "is how canonical JSON writes non-finite floats, so it would load back as a "
                "float; rename that key before returning the value."
            )
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SerializationError(
                f"A string in the value is not valid Unicode ({exc.reason} at position "
                f"{exc.start}); remove lone surrogates or return the data as bytes."
            ) from exc
        digest = store.put_bytes(data)
        kind = type(value)
        return StoredArtifact(
            digest=digest,
            blob=digest,
            serializer=self.name,
            type_name=f"builtins.{kind.__qualname__}",
            size=len(data),
            meta={"python_type": kind.__qualname__},
        )

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        """Return the stored data (tuples as lists, non-finite floats restored)."""
        return json.loads(store.get_bytes(record.blob), object_hook=_decode_object)
