"""BLAKE3 digests in pipetrail's one spelling: ``blake3:<64 lowercase hex>``.

The algorithm name is part of every id so a future algorithm can live beside this one
(see docs/adr/0001-digests-and-canonical-encoding.md). Large files are read in 4 MiB
chunks by a helper thread while BLAKE3 hashes the previous chunk on every core. Files are
never memory-mapped: a file truncated while mapped kills the process with SIGBUS, where a
read just returns fewer bytes (and callers compare what was read with what they expected).
Measured on 8 files of 100 MiB in the page cache, 2 cores: 3.9-4.5 GiB/s, against
3.4-4.0 GiB/s for BLAKE3's own memory-mapped mode in the same runs.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import threading
from typing import TYPE_CHECKING, Any

from blake3 import blake3

from pipetrail.hashing.canonical import canonical_bytes, plain_canonical_bytes

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

__all__ = [
    "DIGEST_ALGORITHM",
    "DIGEST_PREFIX",
    "Hasher",
    "digest_bytes",
    "digest_fd",
    "digest_file",
    "digest_plain",
    "digest_value",
    "hex_of",
    "is_digest",
    "process_pool",
]

DIGEST_ALGORITHM = "blake3"
DIGEST_PREFIX = DIGEST_ALGORITHM + ":"
_DIGEST_RE = re.compile(r"^blake3:[0-9a-f]{64}$")
# Below this size one plain read on this thread beats reading ahead while hashing on all
# cores; measured on 2 cores (benchmarks/hashing.py). Also the size of a read.
_PARALLEL_THRESHOLD = _CHUNK = 4 * 1024 * 1024


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
    """An incremental digest; feed bytes with :meth:`update`, read :meth:`digest`.

    Args:
        parallel: hash each large :meth:`update` on every core (worth it from about 1 MiB
            per call; smaller ones cost more to hand out than to hash).
    """

    __slots__ = ("_h", "size")

    def __init__(self, *, parallel: bool = False) -> None:
        self._h = blake3(max_threads=blake3.AUTO) if parallel else blake3()
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


def digest_plain(value: Any) -> str:
    """Return :func:`digest_value` of a plain value, without walking its members.

    Plain as :func:`~pipetrail.hashing.canonical.plain_canonical_bytes` says: the caller
    built it from parts known to pass :func:`~pipetrail.hashing.canonical.is_plain`.
    """
    return DIGEST_PREFIX + blake3(plain_canonical_bytes(value)).hexdigest()


_BUFFERS = threading.local()
# name -> (pid, pool): a pool's threads do not survive a fork, so a child makes its own.
_POOLS: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_POOLS_LOCK = threading.Lock()


def page_buffer(size: int) -> mmap.mmap:
    """A new page-aligned anonymous buffer, private to this process.

    Private (``MAP_PRIVATE``, where it exists): an anonymous ``mmap`` is shared by default,
    so a process forked after filling a cached buffer would write into the very pages
    its parent hashes and copies from. Windows has no fork, nor the flag.
    """
    if hasattr(mmap, "MAP_PRIVATE"):
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    return mmap.mmap(-1, size)


def _read_buffer() -> mmap.mmap:
    """A page-aligned buffer per thread: copying into aligned memory is markedly faster."""
    buffer: mmap.mmap | None = getattr(_BUFFERS, "buffer", None)
    if buffer is None:
        buffer = page_buffer(_CHUNK)
        _BUFFERS.buffer = buffer
    return buffer


def _spare_buffer() -> mmap.mmap:
    """This thread's second buffer, filled by the reader while the first is hashed."""
    buffer: mmap.mmap | None = getattr(_BUFFERS, "spare", None)
    if buffer is None:
        buffer = page_buffer(_CHUNK)
        _BUFFERS.spare = buffer
    return buffer


def process_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """This process's thread pool called ``name`` (made on first use, and after a fork).

    Threads named ``pipetrail-NAME``; ``workers`` counts only when the pool is made.
    """
    found = _POOLS.get(name)
    if found is None or found[0] != os.getpid():
        # Imported here: concurrent.futures loads logging and traceback, which a run that
        # hashes no large file (a cached re-run) never needs.
        from concurrent.futures import ThreadPoolExecutor

        with _POOLS_LOCK:
            found = _POOLS.get(name)
            if found is None or found[0] != os.getpid():
                pool = ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix=f"pipetrail-{name}"
                )
                found = _POOLS[name] = (os.getpid(), pool)
    return found[1]


def _readers() -> ThreadPoolExecutor:
    """The threads that read ahead for :func:`digest_file`."""
    return process_pool("read", 4)


def _digest_large(fd: int) -> tuple[str, int]:
    """Hash an open file while the next chunk is read on another thread."""
    current, spare = _read_buffer(), _spare_buffer()
    pool = _readers()
    h = blake3(max_threads=blake3.AUTO)
    total = 0
    pending = pool.submit(os.readv, fd, [current])
    try:
        while n := pending.result():
            pending = pool.submit(os.readv, fd, [spare])
            with memoryview(current) as view:
                h.update(view[:n])
            total += n
            current, spare = spare, current
    finally:
        # The reader must be done with the buffer and the descriptor before either is
        # reused or closed; its error, if any, was or will be raised by result() above.
        with contextlib.suppress(OSError):
            pending.result()
    return DIGEST_PREFIX + h.hexdigest(), total


def digest_file(path: str | os.PathLike[str] | Path) -> tuple[str, int]:
    """Return ``(digest, size)`` of a file's bytes, as read (not as ``stat`` says).

    Files of 4 MiB or more are read ahead on a helper thread and hashed with all cores;
    smaller ones are read into a reused page-aligned buffer and hashed on this thread
    (handing a 100 KiB file to other threads costs more than hashing it). A file that
    shrinks or grows while it is read gives the digest and size of what was read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        return digest_fd(fd)
    finally:
        os.close(fd)


def digest_fd(fd: int) -> tuple[str, int]:
    """Return ``(digest, size)`` of what is left to read of an open file, as read.

    Like :func:`digest_file` for a descriptor the caller holds (so that what is hashed is
    the file the caller goes on to use); reads from the current offset to the end and
    leaves the offset there.
    """
    if os.fstat(fd).st_size >= _PARALLEL_THRESHOLD:
        return _digest_large(fd)
    buffer = _read_buffer()
    h = blake3()
    total = 0
    with memoryview(buffer) as view:
        while n := os.readv(fd, [buffer]):
            h.update(view[:n])
            total += n
    return DIGEST_PREFIX + h.hexdigest(), total
