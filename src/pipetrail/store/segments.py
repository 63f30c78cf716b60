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
  ``segments/``) before the batch commits the index rows ``(digest, segment, start,
  size)`` in the pack (:mod:`pipetrail.store.pack`), in the same transaction as its
  small objects. An object is therefore found only once its bytes are on disk;
* the writer holds an exclusive ``flock`` on the file from its creation until the rows
  are committed (:meth:`SegmentWriter.close`) or the file is removed (:meth:`abort`).
  ``LocalStore.clean_tmp`` removes only segments that no row points to and whose lock
  it can take: those of killed writers, never one still being written;
* segments are never modified after the commit. A segment may hold bytes no row points
  to (an object another writer stored first); they cost space, nothing else.

Also reads an object's slice of a segment (:func:`read_slice`), describes it for messages
(:func:`describe_slice`) and removes the segments of killed writers (:func:`clean_segments`);
the index that says where each object is lives in the pack.

Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and
``pipetrail.store.{direct_io,local_files,os_errors}``.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import TYPE_CHECKING

from pipetrail.errors import StoreError
from pipetrail.hashing import Hasher
from pipetrail.store.direct_io import DirectWriter, aligned_buffer, direct_io_available
from pipetrail.store.local_files import READ_FLAGS, fsync_dir_best_effort
from pipetrail.store.os_errors import map_os_errors

if TYPE_CHECKING:
    import mmap
    from collections.abc import Callable

__all__ = [
    "SEGMENT_OBJECT_LIMIT",
    "SEGMENT_SUFFIX",
    "SegmentWriter",
    "clean_segments",
    "describe_slice",
    "read_slice",
    "try_lock",
]

# Objects from the pack limit up to this size go to segments when copied in a batch:
# above it, a file creation costs little next to the bytes, and an object of its own
# can be handed out as a file without a copy (``local_path``).
SEGMENT_OBJECT_LIMIT = 1024 * 1024
SEGMENT_SUFFIX = ".seg"

try:
    import fcntl
except ImportError:  # Windows: no flock; an open file cannot be removed there anyway
    fcntl = None  # type: ignore[assignment]


def _lock(fd: int) -> None:
    """Take the exclusive lock of a new segment, waiting for a cleaner that holds it."""
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a filesystem without locks: go without
            fcntl.flock(fd, fcntl.LOCK_EX)


def try_lock(fd: int) -> bool:
    """Take the exclusive lock of an open segment without waiting; False if it is held."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return False  # a filesystem without locks: treat the segment as in use
    return True


def read_slice(folder: str, digest: str, segment: str, start: int, size: int) -> bytes:
    """Read up to ``size`` bytes of an object from its segment (fewer if truncated).

    A missing segment gives ``b""``, which no digest matches (the object is lost).

    Raises:
        StoreError: the segment could not be read for another reason (it may pass: a full
            descriptor table, permissions).
    """
    path = os.path.join(folder, segment)
    try:
        fd = os.open(path, READ_FLAGS)
        try:
            return os.pread(fd, size, start)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise StoreError(
            f"object {digest} is in segment file {path}, which could not be read "
            f"({exc.strerror or exc}); check the store folder's permissions and try "
            "again"
        ) from exc


def describe_slice(folder: str, segment: str, start: int, size: int) -> str:
    """Where an object's bytes are in its segment, and what is wrong with the file, for messages."""
    path = os.path.join(folder, segment)
    try:
        length = os.stat(path).st_size
    except FileNotFoundError:
        state = ", which is missing"
    except OSError:
        state = ""
    else:
        state = f", truncated to {length} bytes" if length < start + size else ""
    return f"{size} bytes at offset {start} of segment file {path}{state}"


def clean_segments(folder: str, *, older_than: float, in_use: Callable[[str], bool]) -> int:
    """Remove segment files of killed writers from ``folder``; return how many were removed.

    A segment is removed when it was modified ``older_than`` seconds ago or more, its
    writer's lock can be taken (no writer holds it open) and, checked once the lock is
    held, ``in_use(name)`` says no row points into it: a writer commits its rows before
    it lets go.
    """
    if not os.path.isdir(folder):
        return 0
    cutoff = time.time() - older_than
    removed = 0
    for entry in os.scandir(folder):
        if not entry.name.endswith(SEGMENT_SUFFIX):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            fd = os.open(entry.path, READ_FLAGS)
        except FileNotFoundError:
            continue
        try:
            if not try_lock(fd) or in_use(entry.name):
                continue
            os.unlink(entry.path)  # while locked: no writer can be using it
            removed += 1
        except (FileNotFoundError, PermissionError):
            continue  # gone already, or (Windows) still open in a writer
        finally:
            os.close(fd)
    return removed


class SegmentWriter:
    """Appends the objects of one batch to a new segment file; use from one thread.

    The file is created at the first write (nothing is created for a batch whose
    objects were all stored already).

    Args:
        folder: the store's ``segments/`` folder (created when first needed).
        durable: flush the file and the folder at :meth:`finish`, and write past the
            page cache while copying (the bytes must reach the disk anyway).
    """

    def __init__(self, folder: str, *, durable: bool) -> None:
        self.folder = folder
        self.durable = durable
        self.name = f"{uuid.uuid4().hex}{SEGMENT_SUFFIX}"
        self.path = os.path.join(folder, self.name)
        self.kept = 0  # objects appended and not undone
        self._root = os.path.dirname(folder)
        self._fd: int | None = None
        self._writer: DirectWriter | None = None
        self._buffer: mmap.mmap = aligned_buffer("segment")
        self._flushed = 0  # bytes written to the file (a multiple of the buffer size)
        self._fill = 0  # bytes waiting in the buffer
        self._last = -1  # offset of the last object appended, while it may be undone

    def _open(self) -> DirectWriter:
        with map_os_errors("create a segment file", self.path, self._root):
            if not os.path.isdir(self.folder):
                os.makedirs(self.folder, exist_ok=True)
                fsync_dir_best_effort(self._root)  # the new folder's own entry
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            while True:
                fd = os.open(self.path, flags, 0o444)
                try:
                    # A cleaner given an instant between the creation and the lock (only
                    # when told to remove even brand-new files) may have removed it.
                    _lock(fd)
                    if self._still_there(fd):
                        writer = DirectWriter(fd, direct=self.durable and direct_io_available())
                        break
                except BaseException:
                    os.close(fd)
                    with contextlib.suppress(OSError):
                        os.unlink(self.path)
                    raise
                os.close(fd)
        self._fd, self._writer = fd, writer
        return writer

    def _still_there(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.stat(self.path), os.fstat(fd))
        except FileNotFoundError:
            return False

    def append(self, src_fd: int, *, limit: int) -> tuple[str, int, int] | None:
        """Copy the rest of ``src_fd`` into the segment; return ``(digest, offset, size)``.

        Returns None, appending nothing, when the file holds more than ``limit`` bytes
        (it grew since it was measured): the caller rewinds it and stores it elsewhere.

        Raises:
            OSError: reading ``src_fd`` failed (call :meth:`abort`).
            StoreError: writing the segment failed (call :meth:`abort`).
        """
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
                if hasher.size > limit:
                    self._last = start
                    self._forget()
                    return None
        self._last = start
        self.kept += 1
        return hasher.digest(), start, hasher.size

    def undo_last(self) -> None:
        """Forget the last object appended (stored already); its bytes stay if flushed."""
        if self._last >= 0:
            self.kept -= 1
        self._forget()

    def _forget(self) -> None:
        if self._last >= self._flushed:
            self._fill = self._last - self._flushed
        self._last = -1

    def _flush(self, view: memoryview) -> None:
        writer = self._writer or self._open()
        with map_os_errors("write a segment file", self.path, self._root):
            writer.write(view[: self._fill])
        self._flushed += self._fill
        self._fill = 0

    def finish(self) -> bool:
        """Write what is left and make it durable (file and folder entry) when asked.

        Returns False, and removes the segment, when it holds no object to index (every
        one was stored already). Keep the segment open until its rows are committed,
        then :meth:`close` it.

        Raises:
            StoreError: writing or flushing failed (call :meth:`abort`).
        """
        if self.kept == 0:
            self.abort()
            return False
        if self._fill:
            with memoryview(self._buffer) as view:
                self._flush(view)
        if self.durable and self._fd is not None:
            with map_os_errors("make a segment file durable", self.path, self._root):
                os.fsync(self._fd)
            fsync_dir_best_effort(self.folder)
        return True

    def close(self) -> None:
        """Close the file, releasing its lock (once its rows are committed)."""
        if self._fd is not None:
            fd, self._fd, self._writer = self._fd, None, None
            os.close(fd)

    def abort(self) -> None:
        """Close and remove the segment: the batch failed, nothing may point into it."""
        opened = self._fd is not None
        self.close()
        if opened:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
