"""Loading a value back from the bytes its dump has just written, without reading them again.

A run hands downstream steps each output as it comes back from the store (so an executed
step and a cache hit give them the same thing). Reading back bytes that were written a
moment ago would cost a read, so:

* :class:`BytesKeeper` is the store a dump writes through: it passes every call on to the
  real store and keeps the bytes of each ``put_bytes`` up to a size limit. Those bytes are
  exactly what the store hashed to name the object, so they need no verification.
* :class:`KeptBytes` holds such bytes for as long as something still needs them, within
  a total size limit (the oldest go first; a load then reads the store).
* :func:`kept_view` is the store a load reads through: kept objects are served from
  memory (``local_path`` says "not local" for them, so formats that prefer a file read the
  bytes instead), anything else is read from the real store.

Both are views over a real store: any other method is the real store's own. Imports only
the standard library (and ``pipetrail.store.base`` for typing).
"""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, BinaryIO, cast

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pipetrail.store.base import ContentStore

__all__ = ["KEEP_LIMIT", "KEEP_TOTAL", "BytesKeeper", "KeptBytes", "kept_view"]

# Larger objects are read back from the store: keeping them would double their memory.
KEEP_LIMIT = 8 * 1024 * 1024
# What a KeptBytes holds at most by default, all objects together.
KEEP_TOTAL = 64 * 1024 * 1024


class _Keeping:
    """Forwards to ``store``; keeps what ``put_bytes`` wrote (see :class:`BytesKeeper`)."""

    def __init__(self, store: ContentStore, kept: dict[str, bytes], limit: int) -> None:
        self._store = store
        self._kept = kept
        self._limit = limit

    def put_bytes(self, data: bytes) -> str:
        digest = self._store.put_bytes(data)
        if len(data) <= self._limit:
            self._kept[digest] = bytes(data)
        return digest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class BytesKeeper:
    """Keeps the bytes written through :attr:`store`, each up to ``limit`` bytes.

    Args:
        store: the real store.
        limit: the largest object kept, in bytes.

    Attributes:
        store: the store to dump through.
        kept: object digest -> the bytes written under it.
    """

    def __init__(self, store: ContentStore, limit: int = KEEP_LIMIT) -> None:
        self.kept: dict[str, bytes] = {}
        self.store = cast("ContentStore", _Keeping(store, self.kept, limit))


class KeptBytes:
    """Bytes of stored objects, each held while it has holders, within a total size.

    Each :meth:`add` of a digest adds one holder and each :meth:`release` removes one; the
    bytes are dropped with the last holder, or earlier (oldest first) when the total would
    pass ``limit``. Dropping is always safe: whoever needs the object reads the store.

    Args:
        limit: the most bytes held at once.
    """

    def __init__(self, limit: int = KEEP_TOTAL) -> None:
        self._limit = limit
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._holders: dict[str, int] = {}
        self.total = 0

    def __len__(self) -> int:
        return len(self._data)

    def add(self, digest: str, data: bytes) -> None:
        """Hold ``data`` (the bytes of object ``digest``) for one more holder."""
        if digest in self._data:
            self._holders[digest] += 1
            return
        if len(data) > self._limit:
            return
        self._data[digest] = data
        self._holders[digest] = 1
        self.total += len(data)
        while self.total > self._limit:
            oldest, dropped = self._data.popitem(last=False)
            del self._holders[oldest]
            self.total -= len(dropped)

    def get(self, digest: str) -> bytes | None:
        """Return the bytes of ``digest``, or None when they are not held."""
        return self._data.get(digest)

    def release(self, digest: str) -> None:
        """Remove one holder of ``digest``; drop its bytes with the last one."""
        left = self._holders.get(digest)
        if left is None:
            return
        if left > 1:
            self._holders[digest] = left - 1
            return
        del self._holders[digest]
        self.total -= len(self._data.pop(digest))


class _View:
    """Serves ``kept`` objects from memory, the rest from ``store`` (see :func:`kept_view`)."""

    def __init__(self, store: ContentStore, kept: Mapping[str, bytes]) -> None:
        self._store = store
        self._kept = kept

    def get_bytes(self, digest: str) -> bytes:
        data = self._kept.get(digest)
        return self._store.get_bytes(digest) if data is None else data

    def open(self, digest: str) -> BinaryIO:
        data = self._kept.get(digest)
        return self._store.open(digest) if data is None else io.BytesIO(data)

    def local_path(self, digest: str) -> Path | None:
        return None if digest in self._kept else self._store.local_path(digest)

    def exists(self, digest: str) -> bool:
        return digest in self._kept or self._store.exists(digest)

    def size(self, digest: str) -> int:
        data = self._kept.get(digest)
        return self._store.size(digest) if data is None else len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def kept_view(store: ContentStore, kept: Mapping[str, bytes]) -> ContentStore:
    """Return a view of ``store`` that reads the objects in ``kept`` from memory.

    Args:
        store: the real store, read for every object not in ``kept``.
        kept: object digest -> its bytes (as a :class:`BytesKeeper` kept them).
    """
    if not kept:
        return store
    return cast("ContentStore", _View(store, kept))
