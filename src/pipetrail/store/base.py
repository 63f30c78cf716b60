"""The content store interface: immutable blobs named by the BLAKE3 digest of their bytes.

Contract for every implementation (tested by tests/contract/test_content_store.py):

* ``put_*`` is idempotent: storing bytes that are already there is a cheap no-op.
* Writes are atomic: a reader (or a crash) never sees a partial object under its final
  name. Local stores write a temp file, fsync it, then rename it into place;
  ``put_files`` makes a whole batch of temp files durable at once before renaming any.
  Their small objects are rows of a SQLite pack, written in transactions (ADR 0006/0007).
* ``put_files`` is the batch form of ``put_file``: same checks and results, in order;
  callers storing many files use it so that a store can amortise its flushes.
* ``get_bytes``/``open`` raise :class:`~pipetrail.errors.NotFoundError` for an unknown
  digest; they never return partial data.
* Reads are verified (ADR 0011): ``get_bytes``, ``open`` and ``local_path`` hand out only
  bytes that hash to the digest asked for. A corrupt object is moved aside (quarantined,
  never deleted) and :class:`~pipetrail.errors.IntegrityError` is raised, naming it.
* A put whose digest names corrupt bytes already stored replaces them (checking what is
  stored costs a size comparison, then a hash only where the write would be skipped).
* Implementations are safe to use from several threads and processes at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Sequence
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

    def put_files(
        self, items: Sequence[tuple[str | os.PathLike[str], str | None]]
    ) -> list[tuple[str, int]]:
        """Copy many files into the store; return ``(digest, size)`` for each, in order.

        Equivalent to ``[put_file(path, digest=digest) for path, digest in items]``, with
        the same idempotency, verification and errors, but allowed (and meant) to be
        cheaper: a durable store flushes the batch's new objects together rather than one
        by one. Digests given and already stored, or repeated in the batch, are copied at
        most once. For ``digest=None`` the store may hash the file while copying it (one
        read) and name the object by what it read; callers that need the file not to
        change meanwhile check that themselves (``observe_source`` compares stats).

        When it returns, every object is stored completely and its content is as durable
        as after ``put_file``; names become durable at the next :meth:`sync`. When it
        raises, each object of the batch is either stored completely or not at all, and
        the file that failed verification is not stored; which of the others were stored
        is up to the implementation (see its docstring).

        Raises:
            IntegrityError: a file's bytes do not hash to its digest (it changed while
                being read, or the digest passed is wrong).
            StoreError: a file could not be read or an object could not be written.
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
        """Return the bytes stored under ``digest``, once they hash to it.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: the object is corrupt (it is quarantined).
        """
        ...

    def open(self, digest: str) -> BinaryIO:
        """Open the object for reading (binary), once verified.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: the object is corrupt (it is quarantined).
        """
        ...

    def local_path(self, digest: str) -> Path | None:
        """Return a read-only local path of the object, once verified; None for remote stores.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: the object is corrupt (it is quarantined).
        """
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
