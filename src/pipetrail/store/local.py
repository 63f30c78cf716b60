"""A content store in a local folder: one read-only file per object, sharded by digest.

Owns the on-disk layout of a local store and the atomic-write protocol:

```
root/
  ab/cdef...        object whose digest is blake3:abcdef... (2 hex chars shard, 62 in the name)
  tmp/              writers' temp files (same filesystem, so the final rename is atomic)
  quarantine/       objects that failed verification, moved aside (never deleted)
```

A writer creates a uniquely named file in ``tmp/``, writes and fsyncs it, makes it read-only
and ``os.replace``-s it to its final name, then fsyncs the shard directory (best effort). A
killed writer therefore leaves at most a temp file, never a partial object under a final
name; :meth:`LocalStore.clean_tmp` removes stale temp files.

Every ``OSError`` is translated to :class:`~pipetrail.errors.StoreError` (or
:class:`~pipetrail.errors.NotFoundError`) by
:func:`~pipetrail.store.local_files.map_os_errors`, with the path and a fix.

Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and ``pipetrail.store.local_files``;
never ``ledger``, ``execution``, ``capture`` or ``cli``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.hashing import Hasher, digest_bytes, digest_file, is_digest
from pipetrail.hashing.digest import DIGEST_PREFIX
from pipetrail.store.local_files import fsync_dir_best_effort, kernel_copy, write_all

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["LocalStore"]

_CHUNK = 1024 * 1024
# Above this size put_file copies with the kernel's fast path and re-hashes the copy with
# BLAKE3's multi-threaded mmap mode instead of hashing chunk by chunk in Python.
_BIG_FILE = 16 * 1024 * 1024
_HEX_CHARS = frozenset("0123456789abcdef")
_PREFIX_LEN = len(DIGEST_PREFIX)
_TMP_STALE_SECONDS = 3600.0


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


@contextlib.contextmanager
def _map_os_errors(action: str, path: str, root: str) -> Iterator[None]:
    """Translate ``OSError`` raised inside the block into :class:`StoreError`.

    Args:
        action: what was being done, as a verb phrase ("write object blake3:..").
        path: the file or folder concerned.
        root: the store's root folder, named in the fix.
    """
    try:
        yield
    except OSError as exc:
        raise StoreError(
            f"Local store could not {action} ({path}): {exc.strerror or exc}; "
            f"{_fix_for(exc, root)}."
        ) from exc


class LocalStore:
    """Content store in a local folder (implements :class:`~pipetrail.store.base.ContentStore`).

    Safe to share between threads and processes: writers never touch each other's temp
    files, and the final rename is atomic. Objects are read-only (mode ``0o444``).

    Args:
        root: the store's folder; created if missing.
        fsync: fsync each new object before it is renamed into place (default), and its
            shard folder at the next :meth:`sync`. ``False`` keeps writes atomic against
            a crashed or killed process but not against a power loss or kernel crash; use
            it only for scratch stores.

    Durability: an object's bytes are on disk before its final name exists, so no power
    loss can leave partial content under a final name. The rename itself is made durable
    by fsyncing the shard folders at :meth:`sync`, once per folder however many objects
    landed in it; callers that record references to objects (the runner) call ``sync``
    before the run's record is final. A power loss between a put and the next ``sync``
    can lose the object's name (it is then reported missing, never corrupt).

    Example:
        >>> store = LocalStore(tmp_path / "objects")  # doctest: +SKIP
        >>> digest = store.put_bytes(b"hello")  # doctest: +SKIP
        >>> store.get_bytes(digest)  # doctest: +SKIP
        b'hello'
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self._fsync = fsync
        self._root = os.fspath(self.root.absolute())
        self._tmp = os.path.join(self._root, "tmp")
        self._quarantine = os.path.join(self._root, "quarantine")
        self._known_shards: set[str] = set()
        self._unsynced_shards: set[str] = set()
        self._counter = itertools.count()
        self._lock = threading.Lock()
        with _map_os_errors("create its folders", self._tmp, self._root):
            os.makedirs(self._tmp, exist_ok=True)

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

    def _commit(self, fd: int, tmp: str, final: str) -> None:
        """Fsync, seal and rename a fully written temp file to its final name."""
        try:
            if hasattr(os, "fchmod"):  # missing on Windows before 3.13
                os.fchmod(fd, 0o444)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
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
        if self._fsync:
            with self._lock:
                self._unsynced_shards.add(shard)

    def sync(self) -> None:
        """Make every rename since the last call durable (fsync each shard folder once)."""
        with self._lock:
            shards, self._unsynced_shards = self._unsynced_shards, set()
        for shard in sorted(shards):
            fsync_dir_best_effort(shard)

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
        return digest

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
        if digest is not None and not is_digest(digest):
            raise StoreError(
                f"put_file({src!r}) got digest={digest!r}, which is not a digest; pass "
                f"'{DIGEST_PREFIX}<64 lowercase hex>' or omit it to have the file hashed."
            )
        with _map_os_errors("read the file to store", src, self._root):
            if digest is None:
                digest, size = digest_file(src)
            else:
                size = os.stat(src).st_size
        final = self._path(digest)
        if os.path.exists(final):
            stored = os.stat(final).st_size
            if stored != size:
                raise IntegrityError(
                    f"File {src} has {size} bytes but object {digest} has {stored}; the "
                    "digest passed for it is wrong, or the file changed while being read. "
                    "Re-hash the file (or omit digest=) and store it again."
                )
            return digest, size
        hex_part = digest[_PREFIX_LEN:]
        with _map_os_errors(f"store file as object {digest}", src, self._root):
            fd, tmp = self._open_tmp(hex_part)
            try:
                copied_digest, copied = self._copy_into(src, fd, tmp)
            except BaseException:
                os.close(fd)
                self._discard(tmp)
                raise
            if copied_digest != digest:
                os.close(fd)
                self._discard(tmp)
                raise IntegrityError(
                    f"File {src} changed while being read: its bytes hash to {copied_digest}, "
                    f"not {digest}. Make sure nothing writes to it while it is stored (or "
                    "pass the right digest=), then store it again."
                )
            try:
                self._commit(fd, tmp, final)
            except BaseException:
                self._discard(tmp)
                raise
        return digest, copied

    @staticmethod
    def _copy_into(src: str, fd: int, tmp: str) -> tuple[str, int]:
        """Copy ``src`` into the open temp file; return the digest and size of what was copied."""
        with open(src, "rb") as fsrc:
            if os.fstat(fsrc.fileno()).st_size >= _BIG_FILE:
                # Copy in the kernel first, then verify the copy itself: what is hashed is
                # exactly what will be renamed into place.
                kernel_copy(fsrc.fileno(), fd)
                return digest_file(tmp)
            hasher = Hasher()
            while chunk := fsrc.read(_CHUNK):
                hasher.update(chunk)
                write_all(fd, chunk)
            return hasher.digest(), hasher.size

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
                raise self._not_found(digest) from None

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
                raise self._not_found(digest) from None

    def local_path(self, digest: str) -> Path:
        """Return the object's read-only file; do not modify it.

        Raises:
            NotFoundError: no object has this digest.
        """
        path = self._path(digest)
        if not os.path.exists(path):
            raise self._not_found(digest)
        return Path(path)

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored under ``digest`` (False for a non-digest)."""
        if not is_digest(digest):
            return False
        return os.path.exists(self._path(digest))

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
                raise self._not_found(digest) from None

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
                raise self._not_found(digest) from None
            if actual == digest:
                return True
            os.makedirs(self._quarantine, exist_ok=True)
            target = os.path.join(self._quarantine, f"{digest[_PREFIX_LEN:]}.{time.time_ns()}")
            with contextlib.suppress(FileNotFoundError):  # another verifier moved it first
                os.replace(path, target)
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
