"""A content store in a local folder: one read-only file per object, sharded by digest.

Owns the on-disk layout of a local store and the atomic-write protocol:

```
root/
  ab/cdef...        object whose digest is blake3:abcdef... (2 hex chars shard, 62 in the name)
  tmp/              writers' temp files (same filesystem, so the final rename is atomic)
  quarantine/       objects that failed verification, moved aside (never deleted)
```

A writer creates a uniquely named file in ``tmp/``, writes and fsyncs it, makes it read-only
and ``os.replace``-s it to its final name; the shard directories are fsynced at
:meth:`LocalStore.sync`. A killed writer therefore leaves at most temp files, never a
partial object under a final name; :meth:`LocalStore.clean_tmp` removes stale temp files.

:meth:`LocalStore.put_files` stores a batch in two phases instead: it writes every new
object's temp file without fsync, makes them all durable at once with Linux ``syncfs(2)``
(falling back to one fsync per file), and only then renames them into place. See its
docstring for the durability argument and the trade-off.

Every ``OSError`` is translated to :class:`~pipetrail.errors.StoreError` (or
:class:`~pipetrail.errors.NotFoundError`) with the path and a fix, by ``_map_os_errors``
and ``_store_error``.

Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and ``pipetrail.store.local_files``;
never ``ledger``, ``execution``, ``capture`` or ``cli``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import logging
import mmap
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.hashing import Hasher, digest_bytes, digest_file, is_digest
from pipetrail.hashing.digest import DIGEST_PREFIX
from pipetrail.store.local_files import (
    fsync_dir_best_effort,
    kernel_copy,
    syncfs,
    syncfs_available,
    write_all,
)
from pipetrail.store.pack import SMALL_OBJECT_LIMIT, SmallObjectPack

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["LocalStore"]

_log = logging.getLogger(__name__)
_CHUNK = 1024 * 1024
_BUFFERS = threading.local()  # one reusable copy buffer per thread
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_HAS_FCHMOD = hasattr(os, "fchmod")  # missing on Windows before 3.13
# Above this size put_file copies with the kernel's fast path and re-hashes the copy with
# BLAKE3's multi-threaded mmap mode instead of hashing chunk by chunk in Python.
_BIG_FILE = 16 * 1024 * 1024
_HEX_CHARS = frozenset("0123456789abcdef")
_PREFIX_LEN = len(DIGEST_PREFIX)
_TMP_STALE_SECONDS = 3600.0
# sync() flushes the whole filesystem once instead of fsyncing this many shard folders or
# more one by one (see LocalStore.sync for the measurements).
_SYNCFS_MIN_SHARDS = 64


def _fix_for(exc: OSError, root: str) -> str:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return f"free disk space on the filesystem holding {root}"
    if exc.errno == errno.EROFS:
        return (
            f"the filesystem holding {root} is read-only; mount it read-write or use another root"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"give the current user read and write access to {root}"
    return f"check that {root} is a local folder the current user can read and write"


def _store_error(action: str, path: str, root: str, exc: OSError) -> StoreError:
    """Describe an ``OSError`` as a :class:`StoreError` with the path and a fix.

    Args:
        action: what was being done, as a verb phrase ("write object blake3:..").
        path: the file or folder concerned.
        root: the store's root folder, named in the fix.
        exc: the error.
    """
    return StoreError(
        f"Local store could not {action} ({path}): {exc.strerror or exc}; {_fix_for(exc, root)}."
    )


@contextlib.contextmanager
def _map_os_errors(action: str, path: str, root: str) -> Iterator[None]:
    """Translate ``OSError`` raised inside the block into :class:`StoreError`."""
    try:
        yield
    except OSError as exc:
        raise _store_error(action, path, root, exc) from exc


def _read_buffer() -> mmap.mmap:
    """This thread's reusable page-aligned copy buffer (no allocation per file)."""
    buffer: mmap.mmap | None = getattr(_BUFFERS, "buffer", None)
    if buffer is None:
        buffer = _BUFFERS.buffer = mmap.mmap(-1, _CHUNK)
    return buffer


class _Written:
    """The new objects one ``put_files`` call wrote, in order, and how many are in place."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str]] = []  # (digest, temp file, final name)
        self.sizes: dict[str, int] = {}  # digest -> size
        self.renamed = 0  # entries[:renamed] are in place
        self.shards: set[str] = set()  # shard folders renamed into


class LocalStore:
    """Content store in a local folder (implements :class:`~pipetrail.store.base.ContentStore`).

    Safe to share between threads and processes: writers never touch each other's temp
    files, and the final rename is atomic. Objects are read-only (mode ``0o444``).

    Args:
        root: the store's folder; created if missing.
        fsync: make each new object durable before it is renamed into place (default),
            and its shard folder at the next :meth:`sync`. ``False`` keeps writes atomic against
            a crashed or killed process but not against a power loss or kernel crash; use
            it only for scratch stores.

    Durability: an object's bytes are on disk before its final name exists, so no power
    loss can leave partial content under a final name (:meth:`put_files` gets there for
    a whole batch with one ``syncfs``). The rename itself is made durable by fsyncing the
    shard folders at :meth:`sync`, once per folder however many objects landed in it;
    callers that record references to objects (the runner) call ``sync`` before the run's
    record is final. A power loss between a put and the next ``sync`` can lose the
    object's name (it is then reported missing, never corrupt).

    Example:
        >>> store = LocalStore(tmp_path / "objects")  # doctest: +SKIP
        >>> digest = store.put_bytes(b"hello")  # doctest: +SKIP
        >>> store.get_bytes(digest)  # doctest: +SKIP
        b'hello'
    """

    def __init__(
        self, root: Path, *, fsync: bool = True, small_objects: int = SMALL_OBJECT_LIMIT
    ) -> None:
        self.root = Path(root)
        self._fsync = fsync
        self._small_limit = small_objects
        self._root = os.fspath(self.root.absolute())
        self._tmp = os.path.join(self._root, "tmp")
        self._quarantine = os.path.join(self._root, "quarantine")
        self._known_shards: set[str] = set()
        self._unsynced_shards: set[str] = set()
        self._counter = itertools.count()
        self._lock = threading.Lock()
        with _map_os_errors("create its folders", self._tmp, self._root):
            os.makedirs(self._tmp, exist_ok=True)
        # Objects up to `small_objects` bytes live in one SQLite pack (ADR 0006).
        self._pack = SmallObjectPack(Path(self._root) / "pack.db")

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    # -- paths -----------------------------------------------------------------------
    def _hex(self, digest: str) -> str:
        if not is_digest(digest):
            raise NotFoundError(
                f"{digest!r} is not a digest, so no object in {self._root} has it; "
                f"pass a full digest of the form '{DIGEST_PREFIX}<64 lowercase hex>'."
            )
        return digest[_PREFIX_LEN:]

    def _path(self, digest: str) -> str:
        hex_part = self._hex(digest)
        return os.path.join(self._root, hex_part[:2], hex_part[2:])

    def _not_found(self, digest: str) -> NotFoundError:
        return NotFoundError(
            f"Object {digest} is not in the local store {self._root}; store it first, or "
            "check that the run that produced it used this store."
        )

    # -- writing ---------------------------------------------------------------------
    def _tmp_name(self, hex_part: str) -> str:
        # pid + thread + counter make names unique without a random-name syscall loop.
        return os.path.join(
            self._tmp,
            f"{hex_part[:16]}.{os.getpid()}.{threading.get_ident()}.{next(self._counter)}",
        )

    def _open_tmp(self, hex_part: str) -> tuple[int, str]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        while True:
            tmp = self._tmp_name(hex_part)
            try:
                return os.open(tmp, flags, 0o644), tmp
            except FileExistsError:
                continue  # a stale file from a dead process with a recycled pid
            except FileNotFoundError:
                os.makedirs(self._tmp, exist_ok=True)  # someone removed tmp/

    def _ensure_shard(self, shard: str) -> None:
        if shard not in self._known_shards:
            os.makedirs(shard, exist_ok=True)
            with self._lock:
                self._known_shards.add(shard)

    def _rename(self, tmp: str, final: str) -> str:
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

    def _commit(self, fd: int, tmp: str, final: str) -> None:
        """Fsync, seal and rename a fully written temp file to its final name."""
        try:
            if hasattr(os, "fchmod"):  # missing on Windows before 3.13
                os.fchmod(fd, 0o444)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        shard = self._rename(tmp, final)
        if self._fsync:
            with self._lock:
                self._unsynced_shards.add(shard)

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
        self._pack.sync()
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
            fd = os.open(self._root, os.O_RDONLY)
        except OSError:
            return False
        try:
            syncfs(fd)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    @staticmethod
    def _discard(tmp: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its digest; a no-op when it is already stored.

        Raises:
            StoreError: the object could not be written (disk full, permissions...).
        """
        digest = digest_bytes(data)
        hex_part = digest[_PREFIX_LEN:]
        final = os.path.join(self._root, hex_part[:2], hex_part[2:])
        if os.path.exists(final):
            return digest
        if len(data) <= self._small_limit:
            self._pack.put(digest, data)
            return digest
        self._put_loose(digest, data)
        return digest

    def _put_loose(self, digest: str, data: bytes) -> None:
        """Write ``data`` as a loose object file (temp file, fsync, rename)."""
        hex_part = digest[_PREFIX_LEN:]
        final = os.path.join(self._root, hex_part[:2], hex_part[2:])
        with _map_os_errors(f"write object {digest}", final, self._root):
            fd, tmp = self._open_tmp(hex_part)
            if not hasattr(os, "fchmod"):
                os.chmod(tmp, 0o444)  # the open fd stays writable
            try:
                write_all(fd, data)
            except BaseException:
                os.close(fd)
                self._discard(tmp)
                raise
            try:
                self._commit(fd, tmp, final)
            except BaseException:
                self._discard(tmp)
                raise

    def put_file(self, path: Path, *, digest: str | None = None) -> tuple[str, int]:
        """Copy a file into the store and return ``(digest, size)``.

        Args:
            path: the file to copy; it is not modified.
            digest: the file's digest when the caller already knows it. If an object with
                this digest exists, nothing is read. Otherwise the copy is verified
                against it.

        Raises:
            IntegrityError: the bytes copied do not hash to ``digest`` (or to the digest
                computed just before copying): the file changed while being read.
            StoreError: the file could not be read or the object could not be written.
        """
        src = os.fspath(path)
        digest, size = self._file_digest(src, digest)
        final = self._path(digest)
        if os.path.exists(final):
            return digest, self._check_stored_size(src, size, digest, final)
        with _map_os_errors(f"store file as object {digest}", src, self._root):
            tmp, _, copied = self._copy_to_tmp(src, digest, fsync=self._fsync)
            try:
                shard = self._rename(tmp, final)
            except BaseException:
                self._discard(tmp)
                raise
        if self._fsync:
            with self._lock:
                self._unsynced_shards.add(shard)
        return digest, copied

    def put_files(
        self, items: Sequence[tuple[str | os.PathLike[str], str | None]]
    ) -> list[tuple[str, int]]:
        """Copy many files into the store with one flush; return ``(digest, size)`` per item.

        Behaves like calling :meth:`put_file` on each item (same checks, same errors),
        but the new objects are made durable together, which costs one ``syncfs(2)`` per
        call instead of one fsync per object (measured on ext4: about 0.4 ms per fsync;
        a syncfs after 1,000 new objects of 1 KiB, 12 ms). Files whose digest is given
        and already stored, or repeated in the batch, are not copied.

        Args:
            items: ``(path, digest)`` pairs. With ``digest=None`` the file is read once,
                hashed while it is copied, and stored under the digest of what was read
                (``put_file`` reads it twice); the copy is dropped if that object is
                stored already.

        Returns:
            ``(digest, size)`` for each item, in the order given.

        Raises:
            IntegrityError: a file's bytes do not hash to the digest given for it (it
                changed while being read) or do not have the size of the object already
                stored under it. Nothing the batch copied is then stored.
            StoreError: a file could not be read or an object could not be written. New
                objects renamed into place before the error stay (each complete); the
                others are not stored.

        Durability, step by step, with ``fsync=True``:

        1. Each new object is copied to its own temp file in ``tmp/``, verified against its
           digest while copying, made read-only and closed, without fsync.
        2. All of them are made durable at once: ``syncfs(2)`` on the store's filesystem
           (Linux 5.8+, where it reports writeback errors to a descriptor opened before
           the first write, as here). Elsewhere each temp file is fsynced before it is
           closed; if syncfs fails, each one is reopened and fsynced.
        3. Only then is each renamed to its final name. A power loss at any point leaves
           final names only on complete objects; a killed process, at most temp files.
        4. The renames are made durable at the next :meth:`sync`, like :meth:`put_file`'s.

        Trade-off: syncfs writes back every dirty page of the filesystem, other processes'
        included. That is cheap when the store is the main writer, and slower than
        per-file fsync when another process keeps gigabytes dirty on the same
        filesystem; store such data elsewhere, or use :meth:`put_file`.
        """
        results: list[tuple[str, int]] = []
        written = _Written()
        fs_fd: int | None = None  # opened before the first write: see syncfs()
        per_file_fsync = self._fsync
        opened = not self._fsync
        root = self._root
        try:
            for path, given in items:
                src = os.fspath(path)
                if given is not None:
                    digest, size = self._file_digest(src, given)
                    final = self._final(digest)
                    stored = written.sizes.get(digest)
                    if stored is not None or os.path.exists(final):
                        size = self._check_stored_size(src, size, digest, final, stored=stored)
                        results.append((digest, size))
                        continue
                if not opened:
                    fs_fd, opened = self._open_fs_handle(), True
                    per_file_fsync = fs_fd is None
                try:
                    tmp, digest, copied = self._copy_to_tmp(src, given, fsync=per_file_fsync)
                except OSError as exc:
                    what = "store file" if given is None else f"store file as object {given}"
                    raise _store_error(what, src, root, exc) from exc
                if given is None:
                    final = self._final(digest)
                    if digest in written.sizes or os.path.exists(final):
                        self._discard(tmp)  # read to learn its digest: stored already
                        results.append((digest, copied))
                        continue
                written.entries.append((digest, tmp, final))
                written.sizes[digest] = copied
                results.append((digest, copied))
            if fs_fd is not None and written.entries:
                self._make_durable(fs_fd, [tmp for _, tmp, _ in written.entries])
            self._rename_written(written)
        except BaseException:
            for _, tmp, _ in written.entries[written.renamed :]:
                self._discard(tmp)
            raise
        finally:
            if fs_fd is not None:
                os.close(fs_fd)
        if self._fsync and written.shards:
            with self._lock:
                self._unsynced_shards.update(written.shards)
        return results

    def _rename_written(self, written: _Written) -> None:
        """Rename every written object into place, counting each as it goes."""
        for digest, tmp, final in written.entries:
            try:
                written.shards.add(self._rename(tmp, final))
            except OSError as exc:
                raise _store_error(f"store object {digest}", final, self._root, exc) from exc
            written.renamed += 1

    def _open_fs_handle(self) -> int | None:
        """Open the temp folder for ``syncfs``; None when syncfs cannot be used here."""
        if not syncfs_available():
            return None
        try:
            return os.open(self._tmp, os.O_RDONLY)
        except OSError:
            return None

    def _make_durable(self, fs_fd: int, tmps: list[str]) -> None:
        """Make written temp files durable: one syncfs, or an fsync per file if it fails."""
        try:
            syncfs(fs_fd)
        except OSError as exc:
            # Per-file fsync is authoritative: the kernel reports a writeback error that
            # no one has seen yet to any descriptor, even one opened after the error.
            _log.warning(
                "syncfs on the filesystem of %s failed (%s); fsyncing %d objects one by one",
                self._root,
                exc.strerror or exc,
                len(tmps),
            )
            for tmp in tmps:
                with _map_os_errors("make a new object durable", tmp, self._root):
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)

    def _final(self, digest: str) -> str:
        """The final name of a (valid) digest's object; cheaper than :meth:`_path`."""
        hex_part = digest[_PREFIX_LEN:]
        return f"{self._root}{os.sep}{hex_part[:2]}{os.sep}{hex_part[2:]}"

    def _file_digest(self, src: str, digest: str | None) -> tuple[str, int | None]:
        """Return the file's digest, hashing it when not given, and its size if read."""
        if digest is not None:
            if not is_digest(digest):
                raise StoreError(
                    f"put_file({src!r}) got digest={digest!r}, which is not a digest; pass "
                    f"'{DIGEST_PREFIX}<64 lowercase hex>' or omit it to have the file hashed."
                )
            return digest, None
        with _map_os_errors("read the file to store", src, self._root):
            return digest_file(src)

    def _check_stored_size(
        self, src: str, size: int | None, digest: str, final: str, *, stored: int | None = None
    ) -> int:
        """Return the file's size; raise IntegrityError if the stored object's differs."""
        with _map_os_errors("read the file to store", src, self._root):
            if size is None:
                size = os.stat(src).st_size
            if stored is None:
                stored = os.stat(final).st_size
        if stored != size:
            raise IntegrityError(
                f"File {src} has {size} bytes but object {digest} has {stored}; the "
                "digest passed for it is wrong, or the file changed while being read. "
                "Re-hash the file (or omit digest=) and store it again."
            )
        return size

    def _copy_to_tmp(self, src: str, digest: str | None, *, fsync: bool) -> tuple[str, str, int]:
        """Copy ``src`` to a new read-only temp file, verified against ``digest`` if given.

        Returns the temp file, the digest and the size of what was copied; removes the
        temp file on any error.
        """
        fd, tmp = self._open_tmp("new" if digest is None else digest[_PREFIX_LEN:])
        try:
            try:
                if not _HAS_FCHMOD:
                    os.chmod(tmp, 0o444)  # the open fd stays writable
                copied_digest, copied = self._copy_into(src, fd, tmp)
                if digest is not None and copied_digest != digest:
                    raise IntegrityError(
                        f"File {src} changed while being read: its bytes hash to "
                        f"{copied_digest}, not {digest}. Make sure nothing writes to it while "
                        "it is stored (or pass the right digest=), then store it again."
                    )
                if _HAS_FCHMOD:
                    os.fchmod(fd, 0o444)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            self._discard(tmp)
            raise
        return tmp, copied_digest, copied

    @staticmethod
    def _copy_into(src: str, fd: int, tmp: str) -> tuple[str, int]:
        """Copy ``src`` into the open temp file; return the digest and size of what was copied."""
        src_fd = os.open(src, _READ_FLAGS)
        try:
            size = os.fstat(src_fd).st_size
            if size >= _BIG_FILE:
                # Copy in the kernel first, then verify the copy itself: what is hashed is
                # exactly what will be renamed into place.
                kernel_copy(src_fd, fd)
                return digest_file(tmp)
            buffer = _read_buffer()
            with memoryview(buffer) as view:
                n = os.readv(src_fd, [buffer])
                if n == size < _CHUNK:
                    # The whole file in one read, the common case. Bytes appended since
                    # fstat are not copied: what is copied is still exactly what is hashed.
                    write_all(fd, view[:n])
                    return digest_bytes(view[:n]), n
                hasher = Hasher()
                while n:
                    hasher.update(view[:n])
                    write_all(fd, view[:n])
                    n = os.readv(src_fd, [buffer])
            return hasher.digest(), hasher.size
        finally:
            os.close(src_fd)

    # -- reading ---------------------------------------------------------------------
    def get_bytes(self, digest: str) -> bytes:
        """Return the bytes stored under ``digest``.

        Raises:
            NotFoundError: no object has this digest.
            StoreError: the object exists but could not be read.
        """
        path = self._path(digest)
        with _map_os_errors(f"read object {digest}", path, self._root):
            try:
                with open(path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                pass
        return self._packed(digest)

    def _packed(self, digest: str) -> bytes:
        data = self._pack.get(digest)
        if data is None:
            raise self._not_found(digest)
        return data

    def open(self, digest: str) -> BinaryIO:
        """Open the object for reading (binary); the caller closes it.

        Raises:
            NotFoundError: no object has this digest.
        """
        path = self._path(digest)
        with _map_os_errors(f"open object {digest}", path, self._root):
            try:
                return open(path, "rb")
            except FileNotFoundError:
                pass
        return io.BytesIO(self._packed(digest))

    def local_path(self, digest: str) -> Path:
        """Return the object's read-only file; do not modify it.

        Raises:
            NotFoundError: no object has this digest.
        """
        path = self._path(digest)
        if not os.path.exists(path):
            # A packed object gets a loose copy on demand: callers need a real file.
            self._put_loose(digest, self._packed(digest))
        return Path(path)

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored under ``digest`` (False for a non-digest)."""
        if not is_digest(digest):
            return False
        return os.path.exists(self._path(digest)) or self._pack.exists(digest)

    def size(self, digest: str) -> int:
        """Return the object's size in bytes.

        Raises:
            NotFoundError: no object has this digest.
        """
        path = self._path(digest)
        with _map_os_errors(f"stat object {digest}", path, self._root):
            try:
                return os.stat(path).st_size
            except FileNotFoundError:
                pass
        packed = self._pack.size(digest)
        if packed is None:
            raise self._not_found(digest)
        return packed

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored object, shard by shard (temp files excluded)."""
        with _map_os_errors("list its objects", self._root, self._root):
            shards = sorted(
                entry.name
                for entry in os.scandir(self._root)
                if len(entry.name) == 2 and set(entry.name) <= _HEX_CHARS and entry.is_dir()
            )
        for shard in shards:
            shard_path = os.path.join(self._root, shard)
            with _map_os_errors("list its objects", shard_path, self._root):
                try:
                    names = sorted(entry.name for entry in os.scandir(shard_path))
                except FileNotFoundError:
                    continue
            for name in names:
                if len(name) == 62 and set(name) <= _HEX_CHARS:
                    yield DIGEST_PREFIX + shard + name
        for digest in self._pack.iter_digests():
            if not os.path.exists(self._path(digest)):  # listed above already
                yield digest

    # -- maintenance -----------------------------------------------------------------
    def verify(self, digest: str) -> bool:
        """Re-hash one object; when it is corrupt, move it to ``quarantine/`` and return False.

        Raises:
            NotFoundError: no object has this digest.
        """
        path = self._path(digest)
        with _map_os_errors(f"verify object {digest}", path, self._root):
            try:
                actual, _ = digest_file(path)
            except FileNotFoundError:
                return self._verify_packed(digest)
            if actual == digest:
                return True
            os.makedirs(self._quarantine, exist_ok=True)
            target = os.path.join(self._quarantine, f"{digest[_PREFIX_LEN:]}.{time.time_ns()}")
            with contextlib.suppress(FileNotFoundError):  # another verifier moved it first
                os.replace(path, target)
        return False

    def _verify_packed(self, digest: str) -> bool:
        intact = self._pack.verify(digest)
        if intact is None:
            raise self._not_found(digest)
        if intact:
            return True
        data = self._pack.get(digest) or b""
        os.makedirs(self._quarantine, exist_ok=True)
        target = os.path.join(self._quarantine, f"{digest[_PREFIX_LEN:]}.{time.time_ns()}")
        with open(target, "wb") as f:
            f.write(data)
        self._pack.remove(digest)
        return False

    def clean_tmp(self, *, older_than: float = _TMP_STALE_SECONDS) -> int:
        """Remove temp files left by killed writers; return how many were removed.

        Args:
            older_than: only remove files last modified this many seconds ago or earlier,
                so that writers still running are not disturbed.
        """
        cutoff = time.time() - older_than
        removed = 0
        with _map_os_errors("clean its temp folder", self._tmp, self._root):
            for entry in os.scandir(self._tmp):
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed
