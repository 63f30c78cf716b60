"""Writers' temp folders: each writer's temp files live in a folder it holds locked.

A local store's writers create their temp files under ``tmp/`` (same filesystem as the
objects, so the final rename is atomic). ``pipetrail store clean`` removes what killed
writers left there, and must never remove a file that a live writer still means to
rename: a batch (``LocalStore.put_files``) closes its temp files long before it renames
them, so an age rule alone cannot tell (``--older-than 0`` would remove them all).

So each writer (one :class:`TmpOwner` per store object) makes its own folder
``tmp/w<pid>-<random>/`` at its first write and holds an exclusive ``flock`` on it for as
long as it lives; a forked child shares the lock (same open file description).
:func:`clean_tmp` looks only into folders whose lock it can take (their writer is gone)
and removes, while holding that lock, the files past the age limit, then the folder
itself if it was past the limit too and is empty. Temp files directly in ``tmp/``
(written by older versions) and folders on filesystems without locks are judged by age
alone, as before. Segment files have their own lock (:mod:`pipetrail.store.segments`).

Imports only the standard library.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
import weakref

try:
    import fcntl
except ImportError:  # Windows: no flock; a file open in a writer cannot be removed there
    fcntl = None  # type: ignore[assignment]

__all__ = ["OWNER_PREFIX", "TmpOwner", "clean_tmp"]

OWNER_PREFIX = "w"
_HELD, _FREE, _NO_LOCKS = "held", "free", "no-locks"


def _try_lock(fd: int) -> str:
    """Take the exclusive lock of an open folder without waiting; say how it went."""
    if fcntl is None:
        return _NO_LOCKS
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _HELD
    except OSError:
        return _NO_LOCKS  # the filesystem does not lock (some network filesystems)
    return _FREE


def _same_file(path: str, fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except FileNotFoundError:
        return False


class TmpOwner:
    """One writer's temp folder under ``tmp/``, made and locked at the first :meth:`folder`.

    Thread-safe. The lock is released when the owner is garbage collected or the process
    ends.

    Args:
        tmp: the store's ``tmp/`` folder.
    """

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self._folder: str | None = None
        self._lock = threading.Lock()
        self._fds: list[int] = []
        weakref.finalize(self, _close_all, self._fds)

    def folder(self, *, renew: bool = False) -> str:
        """This writer's temp folder; ``renew`` makes a new one (the old one was removed)."""
        folder = self._folder
        if folder is not None and not renew:
            return folder
        with self._lock:
            if self._folder is None or renew:
                self._folder = self._claim()
            return self._folder

    def _claim(self) -> str:
        while True:
            folder = os.path.join(self.tmp, f"{OWNER_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:16]}")
            os.makedirs(folder)
            if fcntl is None:
                return folder
            fd = os.open(folder, os.O_RDONLY)
            # A cleaner may take the new folder's lock before we do, and remove it: then
            # the lock is ours but the folder gone, or the lock is its; try another name.
            if _try_lock(fd) != _HELD and _same_file(folder, fd):
                self._fds.append(fd)
                return folder
            os.close(fd)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def clean_tmp(tmp: str, *, older_than: float) -> int:
    """Remove killed writers' temp files last modified ``older_than`` seconds ago or earlier.

    Files in a folder whose writer is alive (its lock is held) are never removed, however
    old. Returns how many files were removed.

    Raises:
        OSError: ``tmp`` could not be listed.
    """
    cutoff = time.time() - older_than
    removed = 0
    for entry in os.scandir(tmp):
        try:
            if entry.is_dir(follow_symlinks=False) and entry.name.startswith(OWNER_PREFIX):
                removed += _clean_owner_folder(entry.path, cutoff)
            elif entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _clean_owner_folder(folder: str, cutoff: float) -> int:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        state = _try_lock(fd)
        if state == _HELD or not _same_file(folder, fd):
            return 0  # a live writer's (or replaced meanwhile)
        stale = os.fstat(fd).st_mtime < cutoff  # nothing created or removed in it since
        removed = 0
        for entry in os.scandir(folder):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        if state == _FREE and stale:
            # Removed while locked: a writer claiming this very folder finds it gone
            # once it gets the lock, and makes another.
            with contextlib.suppress(OSError):  # not empty (young files), or gone
                os.rmdir(folder)
        return removed
    finally:
        os.close(fd)
