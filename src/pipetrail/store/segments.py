"""Segment files: the medium-sized objects of a batch appended to one file (ADR 0009).

A folder of thousands of files of 16 KiB to 1 MiB, stored one loose file each, costs a
file creation, a rename and a directory entry per object; on ext4 file creation slows
down for minutes after many deletions (the inode allocator skips recently freed
inodes), which made those costs dominate a 1 GiB first copy. ``LocalStore.put_files``
therefore appends a batch's objects of more than the pack limit and at most
:data:`SEGMENT_OBJECT_LIMIT` bytes to one new segment file, ``segments/<name>.seg``:

* each object is read into a page-aligned buffer, hashed there and written from it
  (``O_DIRECT`` where the filesystem allows, :mod:`pipetrail.store.direct_io`), so what
  is stored is exactly what was hashed;
* :meth:`SegmentWriter.finish` makes the file durable (fsync of the file and of
  ``segments/``) before the batch commits the index rows ``(digest, segment, offset,
  size)`` in the pack (:mod:`pipetrail.store.pack`), in the same transaction as its
  small objects. An object is therefore found only once its bytes are on disk; a
  killed writer leaves an unreferenced segment, removed by ``LocalStore.clean_tmp``;
* segments are never modified after the commit. A segment may hold bytes no row points
  to (an object another writer stored first); they cost space, nothing else.

Imports only ``pipetrail.hashing`` and ``pipetrail.store.{direct_io,local_files}``.
"""

from __future__ import annotations

import contextlib
import os
import uuid

from pipetrail.hashing import Hasher
from pipetrail.store.direct_io import DirectWriter, aligned_buffer, direct_io_available
from pipetrail.store.local_files import fsync_dir_best_effort

__all__ = ["SEGMENT_OBJECT_LIMIT", "SEGMENT_SUFFIX", "SegmentWriter"]

# Objects from the pack limit up to this size go to segments when copied in a batch:
# above it, a file creation costs little next to the bytes, and an object of its own
# can be handed out as a file without a copy (``local_path``).
SEGMENT_OBJECT_LIMIT = 1024 * 1024
SEGMENT_SUFFIX = ".seg"


class SegmentWriter:
    """Appends the objects of one batch to a new segment file; use from one thread.

    Args:
        folder: the store's ``segments/`` folder (created on the first append).
        durable: flush the file and the folder at :meth:`finish`, and write past the
            page cache while copying (the bytes must reach the disk anyway).
    """

    def __init__(self, folder: str, *, durable: bool) -> None:
        self.folder = folder
        self.durable = durable
        self.name: str | None = None  # the segment's file name, once created
        self._fd: int | None = None
        self._writer: DirectWriter | None = None
        self._buffer = aligned_buffer("segment")
        self._flushed = 0  # bytes written to the file (a multiple of the buffer size)
        self._fill = 0  # bytes waiting in the buffer
        self._last = -1  # offset of the last object appended

    @property
    def path(self) -> str | None:
        """The segment file, once the first object was appended."""
        return None if self.name is None else os.path.join(self.folder, self.name)

    def _open(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        self.name = f"{uuid.uuid4().hex}{SEGMENT_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        self._fd = os.open(os.path.join(self.folder, self.name), flags, 0o444)
        self._writer = DirectWriter(self._fd, direct=self.durable and direct_io_available())

    def append(self, src_fd: int) -> tuple[str, int, int]:
        """Copy the rest of ``src_fd`` into the segment; return ``(digest, offset, size)``.

        Raises:
            OSError: reading or writing failed (call :meth:`abort`).
        """
        if self._writer is None:
            self._open()
        start = self._flushed + self._fill
        hasher = Hasher()
        buffer = self._buffer
        with memoryview(buffer) as view:
            while True:
                if self._fill == len(buffer):
                    self._flush(view)
                n = os.readv(src_fd, [view[self._fill :]])
                if not n:
                    break
                hasher.update(view[self._fill : self._fill + n])
                self._fill += n
        self._last = start
        return hasher.digest(), start, hasher.size

    def undo_last(self) -> None:
        """Forget the last object appended (already stored), if it is still in memory."""
        if self._last >= self._flushed:
            self._fill = self._last - self._flushed
        self._last = -1

    def _flush(self, view: memoryview) -> None:
        if self._writer is None:
            raise RuntimeError("SegmentWriter: nothing was appended")
        self._writer.write(view[: self._fill])
        self._flushed += self._fill
        self._fill = 0

    def finish(self) -> None:
        """Write what is left and close; durable (file and folder entry) when asked.

        Raises:
            OSError: writing or flushing failed (call :meth:`abort`).
        """
        if self._fd is None:
            return
        if self._fill:
            with memoryview(self._buffer) as view:
                self._flush(view)
        if self.durable:
            os.fsync(self._fd)
        self._close()
        if self.durable:
            fsync_dir_best_effort(self.folder)

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._writer = self._fd, None, None
            os.close(fd)

    def abort(self) -> None:
        """Close and remove the segment: the batch failed, nothing may point into it."""
        self._close()
        path = self.path
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
