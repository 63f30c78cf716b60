"""Low-level file steps behind :class:`~pipetrail.store.local.LocalStore`'s atomic writes.

Owns the flags that open a file for reading (:data:`READ_FLAGS`), writing a whole buffer
to a descriptor, copying a file in the kernel, fsyncing a directory, and flushing a whole
filesystem with Linux ``syncfs(2)``. Raises plain
``OSError``: the caller translates it (``LocalStore`` does so with its ``_map_os_errors``
context manager). Imports only the standard library (``ctypes`` lazily, on first use).
"""

from __future__ import annotations

import errno
import functools
import os
import platform
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "READ_FLAGS",
    "fsync_dir_best_effort",
    "kernel_copy",
    "syncfs",
    "syncfs_available",
    "write_all",
]

# ``os.open`` flags of a read; binary mode where the platform has text mode (Windows).
READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)

_CHUNK = 1024 * 1024
# Before Linux 5.8, syncfs(2) returned 0 even when writing some data back failed, so a
# success did not prove anything was on disk; only later kernels report writeback errors.
_SYNCFS_MIN_KERNEL = (5, 8)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def kernel_copy(src_fd: int, dst_fd: int) -> None:
    """Copy the rest of ``src_fd`` to ``dst_fd`` without passing through Python buffers."""
    if hasattr(os, "sendfile"):
        try:
            while os.sendfile(dst_fd, src_fd, None, 64 * _CHUNK):
                pass
        except OSError as exc:
            # Some filesystems refuse sendfile to a regular file; fall back to reads.
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
                raise
        else:
            return
    while chunk := os.read(src_fd, _CHUNK):
        write_all(dst_fd, chunk)


def fsync_dir_best_effort(path: str) -> None:
    """Fsync a directory so that a rename inside it is durable; ignore refusals."""
    # Makes the rename itself durable. Some filesystems (and all of Windows) refuse to
    # open or fsync a directory; the object is still atomic there, only less durable.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.cache
def _syncfs_function() -> Callable[[int], int] | None:
    """Return libc's ``syncfs`` when it can be trusted to report errors, else None."""
    if not sys.platform.startswith("linux"):
        return None
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    if found is None or (int(found[1]), int(found[2])) < _SYNCFS_MIN_KERNEL:
        return None
    import ctypes  # only here: a few ms of import time that most processes never need

    try:
        func = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # no usable libc, or one without syncfs (old glibc)
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int

    def call(fd: int) -> int:
        if func(fd) == 0:
            return 0
        return ctypes.get_errno() or errno.EIO

    return call


def syncfs_available() -> bool:
    """Return whether :func:`syncfs` can be used here (Linux 5.8 or later, glibc 2.14+)."""
    return _syncfs_function() is not None


def syncfs(fd: int) -> None:
    """Write back every dirty page and inode of the filesystem holding ``fd``, and wait.

    Open ``fd`` *before* writing the data that must be made durable: the kernel reports
    to a descriptor only the writeback errors that happened after it was opened.

    Raises:
        OSError: ``syncfs(2)`` failed (or is not available: ``ENOSYS``); nothing can then
            be assumed about what reached the disk, so fsync each file instead.
    """
    func = _syncfs_function()
    code = errno.ENOSYS if func is None else func(fd)
    if code:
        raise OSError(code, os.strerror(code))
