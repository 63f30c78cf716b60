"""BLAKE3 digests in pipetrail's one spelling: ``blake3:<64 lowercase hex>``.

The algorithm name is part of every id so a future algorithm can live beside this one
(see docs/adr/0001-digests-and-canonical-encoding.md). Large files are hashed through
memory maps with BLAKE3's multi-threaded mode.
"""

from __future__ import annotations

import mmap
import os
import re
import threading
from typing import TYPE_CHECKING, Any

from blake3 import blake3

from pipetrail.hashing.canonical import canonical_bytes

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "DIGEST_ALGORITHM",
    "DIGEST_PREFIX",
    "Hasher",
    "digest_bytes",
    "digest_file",
    "digest_value",
    "hex_of",
    "is_digest",
]

DIGEST_ALGORITHM = "blake3"
DIGEST_PREFIX = DIGEST_ALGORITHM + ":"
_DIGEST_RE = re.compile(r"^blake3:[0-9a-f]{64}$")
# Below this size a plain read beats mmap + threads; measured on 2 cores (benchmarks/hashing.py).
_MMAP_THRESHOLD = 4 * 1024 * 1024


def is_digest(text: str) -> bool:
    """Return whether ``text`` is a complete digest in pipetrail's spelling."""
    # fullmatch, not match: "$" also matches before a trailing newline.
    return _DIGEST_RE.fullmatch(text) is not None


def hex_of(digest: str) -> str:
    """Return the hex part of a digest (``blake3:ab..`` -> ``ab..``)."""
    if not digest.startswith(DIGEST_PREFIX):
        raise ValueError(f"not a {DIGEST_ALGORITHM} digest: {digest!r}")
    return digest[len(DIGEST_PREFIX) :]


class Hasher:
    """An incremental digest; feed bytes with :meth:`update`, read :meth:`digest`."""

    __slots__ = ("_h", "size")

    def __init__(self) -> None:
        self._h = blake3()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Add ``data`` to the digest."""
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> str:
        """Return the digest of everything fed so far."""
        return DIGEST_PREFIX + self._h.hexdigest()


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """Return the digest of ``data``."""
    return DIGEST_PREFIX + blake3(data).hexdigest()


def digest_value(value: Any) -> str:
    """Return the digest of ``value``'s canonical encoding (see :func:`canonical_bytes`)."""
    return DIGEST_PREFIX + blake3(canonical_bytes(value)).hexdigest()


_BUFFERS = threading.local()


def _read_buffer() -> mmap.mmap:
    """A page-aligned buffer per thread: copying into aligned memory is markedly faster."""
    buffer: mmap.mmap | None = getattr(_BUFFERS, "buffer", None)
    if buffer is None:
        buffer = mmap.mmap(-1, _MMAP_THRESHOLD)
        _BUFFERS.buffer = buffer
    return buffer


def digest_file(path: str | os.PathLike[str] | Path) -> tuple[str, int]:
    """Return ``(digest, size)`` of a file's bytes, as read (not as ``stat`` says).

    Large files are memory-mapped and hashed with all cores; small ones are read into a
    reused page-aligned buffer and hashed on one thread (handing a 100 KiB file to other
    threads costs more than hashing it).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fd).st_size
        if size >= _MMAP_THRESHOLD:
            h = blake3(max_threads=blake3.AUTO)
            h.update_mmap(os.fspath(path))
            return DIGEST_PREFIX + h.hexdigest(), size
        buffer = _read_buffer()
        view = memoryview(buffer)
        h = blake3()
        total = 0
        while True:
            n = os.readv(fd, [buffer])
            if n == 0:
                break
            h.update(view[:n])
            total += n
        view.release()
        return DIGEST_PREFIX + h.hexdigest(), total
    finally:
        os.close(fd)
