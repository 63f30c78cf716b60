"""Loose objects of a local store: one read-only file per object, sharded by digest.

Owns the loose-file layout of :class:`~pipetrail.store.local.LocalStore` and its
atomic-write protocol:

```
root/
  ab/cdef...        object whose digest is blake3:abcdef... (2 hex chars shard, 62 in the name)
  tmp/w<pid>-<id>/  one writer's temp files (same filesystem, so the final rename is
                    atomic), in a folder the writer holds locked (store.tmp_owner)
  quarantine/       objects that failed verification, moved aside (never deleted)
```

A writer creates a uniquely named file in its folder under ``tmp/``, writes and fsyncs
it, makes it read-only and ``os.replace``-s it to its final name; the shard folders are
fsynced at :meth:`LooseObjects.sync`. A killed writer therefore leaves at most temp
files, never a partial object under a final name; :meth:`LooseObjects.clean_tmp` removes
those of writers that are gone, never a live writer's.
A batch (``LocalStore.put_files``) writes its temp files without fsync, makes them all
durable at once (:meth:`LooseObjects.make_durable`: one Linux ``syncfs(2)``) and only
then renames them (:meth:`LooseObjects.rename_batch`).

Every ``OSError`` leaves as :class:`~pipetrail.errors.StoreError` (via
:mod:`pipetrail.store.os_errors`), except from the copy helpers, whose callers add what
they were storing. Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and
``pipetrail.store.{direct_io,generation,local_files,os_errors,tmp_owner,verified}``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from pipetrail.hashing import Hasher, digest_bytes, digest_file
from pipetrail.hashing.digest import DIGEST_PREFIX, digest_fd, page_buffer
from pipetrail.store.direct_io import DIRECT_MIN_SIZE, copy_hashing, direct_io_available
from pipetrail.store.generation import bump_generation
from pipetrail.store.local_files import (
    READ_FLAGS,
    fsync_dir_best_effort,
    kernel_copy,
    syncfs,
    syncfs_available,
    write_all,
)
from pipetrail.store.os_errors import map_os_errors, store_error
from pipetrail.store.tmp_owner import TmpOwner, clean_tmp
from pipetrail.store.verified import changed_error

if TYPE_CHECKING:
    import mmap
    from collections.abc import Iterable, Iterator

__all__ = ["LooseBatch", "LooseObjects"]

_log = logging.getLogger(__name__)
_CHUNK = 1024 * 1024
_BUFFERS = threading.local()  # one reusable copy buffer per thread
_HAS_FCHMOD = hasattr(os, "fchmod")  # missing on Windows before 3.13
# From this size on a copy goes through the kernel's fast path and the copy is re-hashed
# by digest_file (read ahead, hashed on every core), instead of chunk by chunk in Python.
_BIG_FILE = 16 * 1024 * 1024
_HEX_CHARS = frozenset("0123456789abcdef")
_PREFIX_LEN = len(DIGEST_PREFIX)
# sync() flushes the whole filesystem once instead of fsyncing this many shard folders or
# more one by one (see LooseObjects.sync for the measurements).
_SYNCFS_MIN_SHARDS = 64


def _read_buffer() -> mmap.mmap:
    """This thread's reusable page-aligned copy buffer (no allocation per file)."""
    buffer: mmap.mmap | None = getattr(_BUFFERS, "buffer", None)
    if buffer is None:
        buffer = _BUFFERS.buffer = page_buffer(_CHUNK)
    return buffer


def _copy_into(src_fd: int, size: int, fd: int, tmp: str, *, durable: bool) -> tuple[str, int]:
    """Copy the open source into the open temp file; return the digest and size copied.

    ``durable``: the copy will be flushed to disk before it is used; larger files are
    then written past the page cache (:mod:`pipetrail.store.direct_io`).
    """
    if durable and size >= DIRECT_MIN_SIZE and direct_io_available():
        return copy_hashing(src_fd, size, fd, direct=True)
    if size >= _BIG_FILE:
        # Copy in the kernel first, then verify the copy itself: what is hashed is
        # exactly what will be renamed into place.
        kernel_copy(src_fd, fd)
        return digest_file(tmp)
    buffer = _read_buffer()
    with memoryview(buffer) as view:
        n = os.readv(src_fd, [buffer])
        if n == size < _CHUNK:
            # The whole file in one read, the common case. Bytes appended since fstat
            # are not copied: what is copied is still exactly what is hashed.
            write_all(fd, view[:n])
            return digest_bytes(view[:n]), n
        hasher = Hasher()
        while n:
            hasher.update(view[:n])
            write_all(fd, view[:n])
            n = os.readv(src_fd, [buffer])
    return hasher.digest(), hasher.size


class LooseBatch:
    """The new loose objects of one batch, in order, and how many are renamed into place."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str]] = []  # (digest, temp file, final name)
        self.renamed = 0  # entries[:renamed] are in place
        self.shards: set[str] = set()  # shard folders renamed into


class LooseObjects:
    """The loose files of a local store; safe to share between threads and processes.

    Args:
        root: the store's folder (absolute); ``tmp/`` is created in it.
        fsync: make objects durable before renaming them, and renames at :meth:`sync`.
        create: create ``root`` and ``tmp/`` now; otherwise the first write does.
    """

    def __init__(self, root: str, *, fsync: bool, create: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self.tmp = os.path.join(root, "tmp")
        self.quarantine = os.path.join(root, "quarantine")
        self._known_shards: set[str] = set()
        self._unsynced_shards: set[str] = set()
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._owner = TmpOwner(self.tmp)
        if create:
            with map_os_errors("create its folders", self.tmp, root):
                os.makedirs(self.tmp, exist_ok=True)

    # -- names -----------------------------------------------------------------------
    def final(self, digest: str) -> str:
        """The final name of a (valid) digest's object file."""
        hex_part = digest[_PREFIX_LEN:]
        return f"{self.root}{os.sep}{hex_part[:2]}{os.sep}{hex_part[2:]}"

    def exists(self, digest: str) -> bool:
        """Return whether a (valid) digest's object file exists.

        What ``os.path.exists`` answers (False also when the path cannot be searched),
        asked with ``access``: a missing file then costs no exception raised and caught.
        """
        return os.access(self.final(digest), os.F_OK)

    def _tmp_name(self, folder: str, hex_part: str) -> str:
        # pid (a forked child shares the folder) + thread + counter make names unique
        # without a random-name syscall loop.
        return os.path.join(
            folder,
            f"{hex_part[:16]}.{os.getpid()}.{threading.get_ident()}.{next(self._counter)}",
        )

    def open_tmp(self, hex_part: str) -> tuple[int, str]:
        """Create a new temp file for writing; return its descriptor and name.

        The file is in this writer's locked temp folder (:mod:`pipetrail.store.tmp_owner`),
        so ``store clean`` leaves it alone until this writer is gone.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        folder = self._owner.folder()
        while True:
            tmp = self._tmp_name(folder, hex_part)
            try:
                return os.open(tmp, flags, 0o644), tmp
            except FileExistsError:
                continue
            except FileNotFoundError:
                folder = self._owner.folder(renew=True)  # someone removed tmp/ or our folder

    @staticmethod
    def discard(tmp: str) -> None:
        """Remove a temp file if it is still there."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    # -- writing ---------------------------------------------------------------------
    def _ensure_shard(self, shard: str) -> None:
        if shard not in self._known_shards:
            os.makedirs(shard, exist_ok=True)
            with self._lock:
                self._known_shards.add(shard)

    def rename(self, tmp: str, final: str) -> str:
        """Rename a sealed temp file to its final name; return the shard folder."""
        shard = os.path.dirname(final)
        self._ensure_shard(shard)
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            # The shard folder was removed behind our back; recreate it once.
            with self._lock:
                self._known_shards.discard(shard)
            self._ensure_shard(shard)
            os.replace(tmp, final)
        return shard

    def note_renamed(self, shards: Iterable[str]) -> None:
        """Remember shard folders to fsync at the next :meth:`sync`."""
        if self.fsync:
            with self._lock:
                self._unsynced_shards.update(shards)

    def write(self, digest: str, data: bytes) -> None:
        """Write ``data`` as the object file of ``digest`` (temp file, fsync, rename)."""
        final = self.final(digest)
        with map_os_errors(f"write object {digest}", final, self.root):
            fd, tmp = self.open_tmp(digest[_PREFIX_LEN:])
            try:
                try:
                    if not _HAS_FCHMOD:
                        os.chmod(tmp, 0o444)  # the open fd stays writable
                    write_all(fd, data)
                    if _HAS_FCHMOD:
                        os.fchmod(fd, 0o444)
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                shard = self.rename(tmp, final)
            except BaseException:
                self.discard(tmp)
                raise
        self.note_renamed([shard])

    def copy_to_tmp(
        self, src: str, src_fd: int, size: int, digest: str | None, *, fsync: bool
    ) -> tuple[str, str, int]:
        """Copy an open file to a new read-only temp file, verified against ``digest`` if given.

        Args:
            src: the file's path, for messages.
            src_fd: the file, open for reading at offset 0.
            size: its size when it was opened.
            digest: the expected digest, or None.
            fsync: fsync the temp file before closing it.

        Returns:
            The temp file, the digest and the size of what was copied.

        Raises:
            IntegrityError: what was copied does not hash to ``digest``.
            OSError: reading or writing failed. The temp file is removed on any error.
        """
        fd, tmp = self.open_tmp("new" if digest is None else digest[_PREFIX_LEN:])
        try:
            try:
                if not _HAS_FCHMOD:
                    os.chmod(tmp, 0o444)  # the open fd stays writable
                copied_digest, copied = _copy_into(src_fd, size, fd, tmp, durable=self.fsync)
                if digest is not None and copied_digest != digest:
                    raise changed_error(src, copied_digest, digest)
                if _HAS_FCHMOD:
                    os.fchmod(fd, 0o444)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            self.discard(tmp)
            raise
        return tmp, copied_digest, copied

    def open_fs_handle(self) -> int | None:
        """Open the temp folder for ``syncfs``; None when syncfs cannot be used here.

        Open it *before* writing a batch: the kernel reports to a descriptor only the
        writeback errors that happen after it was opened.
        """
        if not syncfs_available():
            return None
        try:
            return os.open(self.tmp, os.O_RDONLY)
        except OSError:
            return None

    def make_durable(self, fs_fd: int, tmps: list[str]) -> None:
        """Make written temp files durable: one syncfs, or an fsync per file if it fails."""
        try:
            syncfs(fs_fd)
        except OSError as exc:
            # Per-file fsync is authoritative: the kernel reports a writeback error that
            # no one has seen yet to any descriptor, even one opened after the error.
            _log.warning(
                "syncfs on the filesystem of %s failed (%s); fsyncing %d objects one by one",
                self.root,
                exc.strerror or exc,
                len(tmps),
            )
            for tmp in tmps:
                with map_os_errors("make a new object durable", tmp, self.root):
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)

    def rename_batch(self, batch: LooseBatch) -> None:
        """Rename every object of a durable batch into place, counting each as it goes."""
        try:
            for digest, tmp, final in batch.entries:
                try:
                    batch.shards.add(self.rename(tmp, final))
                except OSError as exc:
                    raise store_error(f"store object {digest}", final, self.root, exc) from exc
                batch.renamed += 1
        finally:
            self.note_renamed(batch.shards)  # those renamed before an error, too

    def sync(self) -> None:
        """Make every rename since the last call durable.

        Fsyncs each shard folder touched since the last call, once. From
        ``_SYNCFS_MIN_SHARDS`` folders on, one ``syncfs(2)`` of the store's filesystem is
        used instead where available, falling back to the folders on failure: measured
        on ext4 after ``put_files`` of 1,024 objects (253 shards), one syncfs took 3.4 ms
        against 22 ms for the folder fsyncs; after 16,000 objects, 2 ms against 25 ms.
        The price is flushing other writers' dirty pages on that filesystem too, which
        is why a few folders are still fsynced one by one (53 of them: 5 ms).
        """
        with self._lock:
            shards, self._unsynced_shards = self._unsynced_shards, set()
        if len(shards) >= _SYNCFS_MIN_SHARDS and self._syncfs_root():
            return
        for shard in sorted(shards):
            fsync_dir_best_effort(shard)

    def _syncfs_root(self) -> bool:
        """Flush the store's whole filesystem; return False when that is not possible."""
        if not syncfs_available():
            return False
        try:
            fd = os.open(self.root, os.O_RDONLY)
        except OSError:
            return False
        try:
            syncfs(fd)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    # -- listing and maintenance -----------------------------------------------------
    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every object file, shard by shard (temp files excluded).

        A store folder that does not exist (yet) holds no objects.
        """
        with map_os_errors("list its objects", self.root, self.root):
            try:
                entries = list(os.scandir(self.root))
            except FileNotFoundError:
                return
            shards = sorted(
                entry.name
                for entry in entries
                if len(entry.name) == 2 and set(entry.name) <= _HEX_CHARS and entry.is_dir()
            )
        for shard in shards:
            shard_path = os.path.join(self.root, shard)
            with map_os_errors("list its objects", shard_path, self.root):
                try:
                    names = sorted(entry.name for entry in os.scandir(shard_path))
                except FileNotFoundError:
                    continue
            for name in names:
                if len(name) == 62 and set(name) <= _HEX_CHARS:
                    yield DIGEST_PREFIX + shard + name

    def verify(self, digest: str) -> bool | None:
        """Re-hash one object file: True if intact, False if corrupt, None if absent.

        A corrupt file is moved to ``quarantine/``.
        """
        path = self.final(digest)
        with map_os_errors(f"verify object {digest}", path, self.root):
            try:
                fd = os.open(path, READ_FLAGS)
            except FileNotFoundError:
                return None
            try:
                actual, _ = digest_fd(fd)
                if actual == digest:
                    return True
                self.quarantine_file(digest, os.fstat(fd))
            finally:
                os.close(fd)
        return False

    def quarantine_file(self, digest: str, st: os.stat_result) -> str:
        """Move a corrupt object file (the one ``st`` describes) to ``quarantine/``.

        Only if its name still holds that file: a writer may have put an intact copy
        there since it was read. Returns the quarantine folder.

        Moving it changes the store's generation (:mod:`pipetrail.store.generation`).

        Raises:
            OSError: the file could not be moved.
            StoreError: the new generation could not be recorded.
        """
        path = self.final(digest)
        with contextlib.suppress(FileNotFoundError):  # another reader moved it first
            if os.path.samestat(os.stat(path), st):
                # Before (a process killed right after the move has changed it already)
                # and after (ADR 0032).
                bump_generation(self.root)
                os.replace(path, self._quarantine_name(digest))
                bump_generation(self.root)  # an object left the store (ADR 0032)
        return self.quarantine

    def quarantine_bytes(self, digest: str, data: bytes) -> None:
        """Keep the bytes of a corrupt object that lived elsewhere (the pack) in quarantine."""
        target = self._quarantine_name(digest)
        with (
            map_os_errors(f"quarantine object {digest}", target, self.root),
            open(target, "wb") as f,
        ):
            f.write(data)

    def _quarantine_name(self, digest: str) -> str:
        os.makedirs(self.quarantine, exist_ok=True)
        return os.path.join(self.quarantine, f"{digest[_PREFIX_LEN:]}.{time.time_ns()}")

    def clean_tmp(self, *, older_than: float) -> int:
        """Remove temp files of writers that are gone, last modified ``older_than`` s ago.

        A live writer's temp files are never removed (see :mod:`pipetrail.store.tmp_owner`).
        Returns how many files were removed.
        """
        with map_os_errors("clean its temp folder", self.tmp, self.root):
            try:
                return clean_tmp(self.tmp, older_than=older_than)
            except FileNotFoundError:
                return 0
