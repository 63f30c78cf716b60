"""The content store interface: immutable blobs named by the BLAKE3 digest of their bytes.

Contract for every implementation (tested by tests/contract/test_content_store.py):

* ``put_*`` is idempotent: storing bytes that are already there is a cheap no-op.
* Writes are atomic: a reader (or a crash) never sees a partial object under its final
  name. Local stores write a temp file, fsync it, then rename it into place.
* ``get_bytes``/``open`` raise :class:`~pipetrail.errors.NotFoundError` for an unknown
  digest; they never return partial data.
* Implementations are safe to use from several threads and processes at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["ContentStore", "VerifyResult"]


class VerifyResult(Protocol):
    """Outcome of re-hashing stored objects."""

    checked: int
    corrupt: list[str]
    missing: list[str]


@runtime_checkable
class ContentStore(Protocol):
    """Immutable, content-addressed blob storage."""

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its digest."""
        ...

    def put_file(self, path: Path, *, digest: str | None = None) -> tuple[str, int]:
        """Copy a file into the store; return ``(digest, size)``.

        ``digest`` may be passed when the caller already hashed the file; the store then
        verifies it while copying and raises IntegrityError if the file changed.
        """
        ...

    def sync(self) -> None:
        """Make every object stored so far durable (a no-op where puts already are).

        Content is never partial under a final name; ``sync`` makes the names themselves
        survive a power loss. Callers recording references to objects call it before the
        record is final.
        """
        ...

    def get_bytes(self, digest: str) -> bytes:
        """Return the bytes stored under ``digest``."""
        ...

    def open(self, digest: str) -> BinaryIO:
        """Open the object for reading (binary)."""
        ...

    def local_path(self, digest: str) -> Path | None:
        """Return a read-only local path of the object, or None for remote stores."""
        ...

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored under ``digest``."""
        ...

    def size(self, digest: str) -> int:
        """Return the object's size in bytes."""
        ...

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored object (any order)."""
        ...

    def verify(self, digest: str) -> bool:
        """Re-hash one object; return False (and quarantine it) when it is corrupt."""
        ...
