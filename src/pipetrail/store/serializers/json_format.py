"""The ``json`` serializer: plain Python data as canonical JSON.

Owns the storage of None, bool, int, float, str and lists, tuples and string-keyed dicts
of them (exact built-in types: an ``OrderedDict`` or a ``str`` subclass are not plain
data). Bytes are :func:`pipetrail.hashing.canonical_json` encoded as UTF-8, so equal
values give equal digests. Non-finite floats use the canonical ``{"$float": "nan"}`` form
and come back as floats; tuples come back as lists (``meta["python_type"]`` records the
original top-level type).

Numpy scalars of boolean, integer, float and string dtypes (what scikit-learn metrics and
pandas reductions return) are accepted *inside* lists, tuples and dicts and stored as the
Python scalar of the same value, so they come back as ``bool``, ``int``, ``float`` and
``str`` (a ``float32`` comes back as the ``float`` of its exact value). A numpy scalar on
its own is left to the ``npy`` serializer, which keeps its type.

For containers holding something else, :meth:`JsonSerializer.refusal` names the first
such item by its path (``output['folds'][0]['labels']: builtins.set``) and how to fix it.
Imports only ``pipetrail.hashing`` and ``pipetrail.errors``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from pipetrail.errors import SerializationError, UnhashableValueError
from pipetrail.hashing import canonical_json
from pipetrail.store.serializers.base import FORMAT_VERSION_KEY, StoredArtifact

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.store.base import ContentStore

__all__ = ["JsonSerializer"]

_SCALARS = frozenset({type(None), bool, int, float, str})
_CONTAINERS = frozenset({list, tuple, dict})
_FLOAT_TAG = "$float"
_NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
# numpy dtype kinds whose scalars have a plain JSON form: bool, int, uint, float, str.
_NUMPY_KINDS = frozenset("biufU")

_PLAIN = 1
_CONVERT = 2  # plain once its numpy scalars are converted


def _numpy_scalar(item: Any) -> bool:
    """Return whether ``item`` is a numpy scalar with a plain JSON form."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(item, np.generic) and item.dtype.kind in _NUMPY_KINDS


def _classify(value: Any) -> int:
    """Return ``_PLAIN``, ``_CONVERT`` or 0 (not storable as JSON)."""
    found = _PLAIN
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
                    if not _numpy_scalar(key) or key.dtype.kind != "U":
                        return 0
                    found = _CONVERT
                stack.append(sub)
        elif item is not value and _numpy_scalar(item):
            found = _CONVERT
        else:
            return 0
    return found


def _converted(value: Any) -> Any:
    """Return ``value`` with every numpy scalar replaced by its Python scalar."""
    kind = type(value)
    if kind is dict:
        return {str(key): _converted(sub) for key, sub in value.items()}
    if kind is list or kind is tuple:
        return [_converted(sub) for sub in value]
    if kind in _SCALARS:
        return value
    return value.item()


def _hint(item: Any) -> str:
    if isinstance(item, set | frozenset):
        return "convert it to a sorted list"
    np = sys.modules.get("numpy")
    if np is not None and isinstance(item, np.ndarray):
        return "convert it with .tolist(), or return the array as an output of its own"
    if isinstance(item, dict | list | tuple):
        return "convert it to a plain dict or list"
    return "convert it to None, bool, int, float, str, a list or a dict with str keys"


def _first_unplain(value: Any, root: str) -> Iterator[str]:
    """Yield a description of the first item that is not JSON data, depth first."""
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind in _SCALARS or (path != root and _numpy_scalar(item)):
            continue
        if kind is list or kind is tuple:
            stack.extend((sub, f"{path}[{i}]") for i, sub in reversed(list(enumerate(item))))
        elif kind is dict:
            for key in item:
                if type(key) is not str and not (_numpy_scalar(key) and key.dtype.kind == "U"):
                    yield (
                        f"{path} has the key {key!r} of type {_type_name(key)}; JSON keys "
                        "must be str, so convert the keys with str(...)"
                    )
                    return
            stack.extend((sub, f"{path}[{key!r}]") for key, sub in reversed(item.items()))
        else:
            yield f"{path}: {_type_name(item)} is not JSON data; {_hint(item)}"
            return


def _type_name(item: Any) -> str:
    cls = type(item)
    return f"{cls.__module__}.{cls.__qualname__}"


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        tag = obj.get(_FLOAT_TAG)
        if isinstance(tag, str) and tag in _NON_FINITE:
            return _NON_FINITE[tag]
    return obj


# Reads stored JSON back (stateless between calls, like json's own default decoder).
_DECODER = json.JSONDecoder(object_hook=_decode_object)


def _encoding(data: bytes) -> str:
    """``json.detect_encoding(data)``, answered at once for what pipetrail writes.

    A first byte that is ASCII and not NUL, followed by no NUL, starts no byte-order mark
    and no UTF-16 or UTF-32 text, so detection says UTF-8 (canonical JSON always starts
    so); anything else is left to it.
    """
    first = data[:1]
    if first.isascii() and first != b"\x00" and data[1:2] != b"\x00":
        return "utf-8"
    return json.detect_encoding(data)


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
    version = 1

    def handles(self, value: Any) -> bool:
        """Return whether ``value`` is plain JSON-like data (see the module docstring)."""
        return _classify(value) != 0

    def refusal(self, value: Any, root: str = "output") -> str | None:
        """Name the first item that keeps a list, tuple or dict from being JSON data.

        Args:
            value: the value that was refused.
            root: how the path names ``value`` itself (``output['mean']``).

        Returns:
            ``"<path>: <type> is not JSON data; <how to fix>"``, or None when ``value``
            is not a list, tuple or dict (or is storable).
        """
        if type(value) not in _CONTAINERS:
            return None
        return next(_first_unplain(value, root), None)

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Store ``value`` as canonical JSON.

        Raises:
            SerializationError: the value is not plain data, uses the reserved key
                ``"$float"``, or holds a string that is not valid Unicode.
        """
        found = _classify(value)
        if found == 0:
            reason = self.refusal(value) or f"{_type_name(value)} is not JSON data"
            raise SerializationError(
                f"{reason}; the json serializer stores only plain data (None, bool, int, "
                "float, str, lists, tuples and dicts with str keys)."
            )
        plain = _converted(value) if found == _CONVERT else value
        try:
            text = canonical_json(plain)
        except UnhashableValueError as exc:  # pragma: no cover - _classify checked it
            raise SerializationError(f"{exc}; the json serializer stores only plain data.") from exc
        if f'"{_FLOAT_TAG}"' in text and _has_reserved_dict(plain):
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
            meta={"python_type": kind.__qualname__, FORMAT_VERSION_KEY: self.version},
        )

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        """Return the stored data (tuples as lists, non-finite floats restored)."""
        data = store.get_bytes(record.blob)
        if type(data) is not bytes:
            return json.loads(data, object_hook=_decode_object)
        # What json.loads(data, object_hook=_decode_object) does, without making a
        # decoder (and its scanner) for every load: a run loads an input per step.
        return _DECODER.decode(data.decode(_encoding(data), "surrogatepass"))
