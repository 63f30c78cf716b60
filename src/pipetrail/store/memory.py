"""An in-memory content store: the default for tests and throw-away runs.

Owns nothing on disk. Implements the :class:`~pipetrail.store.base.ContentStore` contract
with a dict guarded by a lock; ``local_path`` returns None, as for a remote store. Like
every store it hashes what it hands out (ADR 0011): the bytes behind a digest can only
change by someone reaching into the dict, but a store whose reads are verified in one
implementation and not in another would make tests prove less than they claim.

Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and ``pipetrail.store.verified``;
never ``ledger``, ``execution``, ``capture`` or ``cli``.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.hashing import Hasher
from pipetrail.store.verified import corrupt_error, digest_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["MemoryStore"]

_CHUNK = 1024 * 1024


class MemoryStore:
    """Content store held in a dict (implements :class:`~pipetrail.store.base.ContentStore`).

    Thread-safe; not shared between processes. Reads hash the bytes they return; corrupt
    objects found by a read or by :meth:`verify` are moved to :attr:`quarantine` (a read
    then raises :class:`~pipetrail.errors.IntegrityError`), and a put of the right bytes
    replaces them.

    Example:
        >>> store = MemoryStore()
        >>> store.get_bytes(store.put_bytes(b"hello"))
        b'hello'
    """

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self.quarantine: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore(<{len(self._objects)} objects>)"

    def _not_found(self, digest: str) -> NotFoundError:
        return NotFoundError(
            f"Object {digest} is not in this MemoryStore; store it first (memory stores are "
            "not shared between processes or store instances)."
        )

    def _get(self, digest: str) -> bytes:
        try:
            return self._objects[digest]
        except KeyError:
            raise self._not_found(digest) from None

    def _checked(self, digest: str) -> bytes:
        """The object's bytes once they hash to ``digest``; quarantined and raised if not."""
        data = self._get(digest)
        actual = digest_of(data)
        if actual != digest:
            self._quarantine(digest, data)
            raise corrupt_error(
                digest, actual, where="held in memory", quarantine="MemoryStore.quarantine"
            )
        return data

    def _quarantine(self, digest: str, data: bytes) -> None:
        with self._lock:
            if self._objects.get(digest) is data:
                self.quarantine[digest] = self._objects.pop(digest)

    def _store(self, digest: str, data: bytes) -> None:
        """Keep ``data`` under ``digest`` (its digest); replace other bytes held there."""
        with self._lock:
            held = self._objects.setdefault(digest, data)
            if held is not data and held != data:  # corrupt: keep it aside, store the right
                self.quarantine[digest] = held
                self._objects[digest] = data

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its digest; a no-op when it is already stored intact."""
        digest = digest_of(data)
        self._store(digest, bytes(data))
        return digest

    def put_file(self, path: Path, *, digest: str | None = None) -> tuple[str, int]:
        """Read a file into the store and return ``(digest, size)``.

        Args:
            path: the file to read.
            digest: the file's expected digest; the bytes read are checked against it.

        Raises:
            IntegrityError: the bytes read do not hash to ``digest``.
            StoreError: the file could not be read.
        """
        hasher = Hasher()
        chunks: list[bytes] = []
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    hasher.update(chunk)
                    chunks.append(chunk)
        except OSError as exc:
            raise StoreError(
                f"MemoryStore could not read {os.fspath(path)}: {exc.strerror or exc}; check "
                "that the file exists and is readable."
            ) from exc
        actual = hasher.digest()
        if digest is not None and actual != digest:
            raise IntegrityError(
                f"File {os.fspath(path)} changed while being read: its bytes hash to {actual}, "
                f"not {digest}. Make sure nothing writes to it while it is stored (or pass the "
                "right digest=), then store it again."
            )
        self._store(actual, b"".join(chunks))
        return actual, hasher.size

    def put_files(
        self, items: Sequence[tuple[str | os.PathLike[str], str | None]]
    ) -> list[tuple[str, int]]:
        """Read many files into the store; return ``(digest, size)`` per item, in order.

        Raises:
            IntegrityError: a file's bytes do not hash to its digest; the files before it
                are stored, the others not.
            StoreError: a file could not be read.
        """
        return [self.put_file(Path(path), digest=digest) for path, digest in items]

    def sync(self) -> None:
        """Nothing to make durable in memory."""

    def get_bytes(self, digest: str) -> bytes:
        """Return the bytes stored under ``digest``, once they hash to it.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: the bytes do not hash to ``digest`` (now quarantined).
        """
        return self._checked(digest)

    def open(self, digest: str) -> BinaryIO:
        """Return a binary file object over the stored bytes, once they hash to ``digest``.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: the bytes do not hash to ``digest`` (now quarantined).
        """
        return io.BytesIO(self._checked(digest))

    def local_path(self, digest: str) -> Path | None:
        """Return None: memory objects have no file. Use :meth:`get_bytes` or :meth:`open`."""
        return None

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored under ``digest``."""
        return digest in self._objects

    def size(self, digest: str) -> int:
        """Return the object's size in bytes.

        Raises:
            NotFoundError: no object has this digest.
        """
        return len(self._get(digest))

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored object (a snapshot taken at the first call)."""
        with self._lock:
            digests = sorted(self._objects)
        yield from digests

    def verify(self, digest: str) -> bool:
        """Re-hash one object; when it is corrupt, move it to :attr:`quarantine`, return False.

        Raises:
            NotFoundError: no object has this digest.
        """
        data = self._get(digest)
        if digest_of(data) == digest:
            return True
        self._quarantine(digest, data)
        return False
