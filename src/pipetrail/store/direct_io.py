"""Copying a file into a new object file while hashing it, past the page cache.

When a store must make what it copies durable anyway, writing through the page cache
pays for the bytes twice: a kernel copy into newly allocated cache pages, then their
write-back at the flush. With ``O_DIRECT`` (Linux) the bytes go from the copy buffer,
page-aligned, straight to the device, and the flush after has only metadata left. On
the development VM, where every newly used page of guest memory is costly, 1 GiB
copied with 4 threads took 1.0 to 1.8 s this way against 2.1 to 2.6 s through the page
cache plus ``syncfs`` (``benchmarks/sources.py``, rows ``first.copy``), and left the
page cache to the data being read. The copy is not cached for a later read of the
object; sources are seldom read back from the store soon.

Each chunk is read into this thread's page-aligned buffer, hashed, and written from
the same buffer: what is hashed is exactly what is written. Whole 4 KiB blocks are
written direct; a file's unaligned tail (and everything, on filesystems that refuse
``O_DIRECT``, e.g. tmpfs) is written through the page cache and flushed with the rest.

Imports only ``pipetrail.hashing`` and ``pipetrail.store.local_files``.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from typing import TYPE_CHECKING

from pipetrail.hashing import Hasher
from pipetrail.hashing.digest import page_buffer
from pipetrail.store.local_files import write_all

if TYPE_CHECKING:
    import mmap

__all__ = [
    "DIRECT_MIN_SIZE",
    "DirectWriter",
    "aligned_buffer",
    "copy_hashing",
    "direct_io_available",
]

# Files from this size are copied direct: below it the synchronous write of each file
# costs more than its share of the write-back it saves.
DIRECT_MIN_SIZE = 64 * 1024
_ALIGN = 4096  # the largest logical block size in use; any smaller one divides it
_CHUNK = 8 * 1024 * 1024
_PARALLEL_MIN = 16 * 1024 * 1024  # files hashed on every core, a chunk at a time
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
_BUFFERS = threading.local()


def direct_io_available() -> bool:
    """Return whether this platform has ``O_DIRECT`` (a filesystem may still refuse it)."""
    return bool(_O_DIRECT) and sys.platform.startswith("linux")


def aligned_buffer(role: str) -> mmap.mmap:
    """This thread's reusable page-aligned buffer of 8 MiB for ``role`` (one per role).

    Private to the process (see :func:`pipetrail.hashing.digest.page_buffer`): a child
    forked after a copy gets its own pages on its first write.
    """
    buffer: mmap.mmap | None = getattr(_BUFFERS, role, None)
    if buffer is None:
        buffer = page_buffer(_CHUNK)
        setattr(_BUFFERS, role, buffer)
    return buffer


class DirectWriter:
    """Writes a file's chunks in order: direct while it can, through the page cache after.

    Args:
        fd: the file, open for writing at an offset that is a multiple of 4 KiB.
        direct: try ``O_DIRECT``; a filesystem that refuses it gets buffered writes.
    """

    def __init__(self, fd: int, *, direct: bool) -> None:
        self.fd = fd
        self.direct = False
        if direct:
            import fcntl  # not on Windows, where direct_io_available() is False

            self._flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, self._flags | _O_DIRECT)
            except OSError as exc:  # the filesystem refuses direct I/O (tmpfs, some FUSE)
                if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
            else:
                self.direct = True

    def _buffered(self) -> None:
        """Write through the page cache from now on (the offset may no longer be aligned)."""
        import fcntl

        fcntl.fcntl(self.fd, fcntl.F_SETFL, self._flags)
        self.direct = False

    def write(self, view: memoryview) -> None:
        """Write every byte of ``view``, which must start on a page (an aligned buffer's start).

        Whole 4 KiB blocks go direct; a shorter tail switches the file to buffered writes
        for good (the file offset is no longer aligned after it).
        """
        if self.direct:
            aligned = len(view) & ~(_ALIGN - 1)
            while aligned:
                try:
                    written = os.write(self.fd, view[:aligned])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    break  # alignment refused after all: write the rest through the cache
                view, aligned = view[written:], aligned - written
                if written % _ALIGN or not written:
                    break  # a short write leaves the offset unaligned (or stalls)
            if view:
                self._buffered()
        if view:
            write_all(self.fd, view)


def copy_hashing(src_fd: int, size: int, fd: int, *, direct: bool) -> tuple[str, int]:
    """Copy the rest of ``src_fd`` to ``fd`` (a new, empty file) while hashing it.

    Args:
        src_fd: the source, open for reading.
        size: its size when opened (decides only how it is hashed).
        fd: the destination, open for writing at offset 0.
        direct: write past the page cache where the filesystem allows; the caller then
            flushes ``fd`` (fsync or syncfs) as for a buffered write.

    Returns:
        The digest and size of exactly the bytes written.

    Raises:
        OSError: reading or writing failed.
    """
    writer = DirectWriter(fd, direct=direct)
    hasher = Hasher(parallel=size >= _PARALLEL_MIN)
    buffer = aligned_buffer("copy")
    with memoryview(buffer) as view:
        while n := os.readv(src_fd, [buffer]):
            chunk = view[:n]
            hasher.update(chunk)
            writer.write(chunk)
    return hasher.digest(), hasher.size
