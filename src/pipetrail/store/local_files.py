"""Low-level file steps behind :class:`~pipetrail.store.local.LocalStore`'s atomic writes.

Owns writing a whole buffer to a descriptor, copying a file in the kernel, and fsyncing a
directory. Raises plain ``OSError``: the caller translates it (``LocalStore`` does so with
its ``_map_os_errors`` context manager). Imports only the standard library.
"""

from __future__ import annotations

import errno
import os

__all__ = ["fsync_dir_best_effort", "kernel_copy", "write_all"]

_CHUNK = 1024 * 1024


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
