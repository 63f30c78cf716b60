"""Reading loose object files back, verified: nothing is handed out that does not hash right.

Owns :class:`LooseReader`, the read side of :class:`~pipetrail.store.loose.LooseObjects`:

* :meth:`LooseReader.read` returns an object's bytes after hashing exactly those bytes;
* :meth:`LooseReader.open` and :meth:`LooseReader.path` hash the file (streaming, read
  ahead on a helper thread, on every core) before handing out a file object or a path;
* :meth:`LooseReader.read_with` hands the file to a caller's reader while another thread
  hashes it, and returns what the reader made only once the hash matches (one pass for
  a reader that transforms the bytes, such as decryption); :meth:`LooseReader.read` is
  the same path with a reader that returns the bytes as read;
* :meth:`LooseReader.intact` says whether an object about to be written again is intact,
  so that a write repairs a corrupt one instead of keeping it.

A file found corrupt is moved to ``quarantine/`` and
:class:`~pipetrail.errors.IntegrityError` is raised. A file this reader verified before
and that is unchanged since (same stat signature) is not hashed again; see
:mod:`pipetrail.store.verified` for the shortcut and its limits.

Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and ``pipetrail.store``'s
``loose``, ``local_files``, ``verified`` and ``os_errors``.
"""

from __future__ import annotations

import io
import os
import time
from typing import TYPE_CHECKING, BinaryIO, TypeVar, cast

from pipetrail.errors import IntegrityError, StoreError
from pipetrail.hashing.digest import digest_fd, process_pool
from pipetrail.store.local_files import READ_FLAGS
from pipetrail.store.os_errors import map_os_errors
from pipetrail.store.verified import VerifiedFiles, corrupt_error, digest_of, file_signature

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor

    from pipetrail.store.loose import LooseObjects

__all__ = ["LooseReader"]

T = TypeVar("T")

# From this size, read() and read_with() hash the file on another thread while they read it.
_ALONGSIDE_MIN = 16 * 1024 * 1024
# local_path() retries this often when the object's name keeps pointing at a new file.
_PATH_ATTEMPTS = 3


def _whole(f: BinaryIO, size: int) -> bytes:
    """The reader of :meth:`LooseReader.read`: the whole file, from where it is to its end."""
    return f.read()


def _hashers() -> ThreadPoolExecutor:
    """The threads hashing large objects alongside their reads.

    Not the read-ahead pool of :func:`~pipetrail.hashing.digest.digest_fd`: a hash running
    there submits its own reads to that pool, and must not wait behind itself.
    """
    return process_pool("verify", 2)


class LooseReader:
    """Verified reads of a store's loose object files; safe to share between threads.

    Args:
        loose: the store's loose files.
    """

    def __init__(self, loose: LooseObjects) -> None:
        self.loose = loose
        self.verified = VerifiedFiles()

    def _open(self, digest: str) -> int | None:
        try:
            return os.open(self.loose.final(digest), READ_FLAGS)
        except FileNotFoundError:
            return None

    def read(self, digest: str) -> bytes | None:
        """Return the object's bytes, hashed as read; None when there is no such file.

        A large file not known intact is hashed on another thread while it is copied into
        memory (see :meth:`_alongside`); otherwise the very bytes read are hashed, unless
        the file is known intact by its signature after the read.

        Raises:
            IntegrityError: the bytes do not hash to ``digest`` (the file is quarantined).
            StoreError: the file could not be read.
        """
        found = self._read(digest, _whole, returns_bytes=True)
        return None if found is None else found[0]

    def read_with(self, digest: str, reader: Callable[[BinaryIO, int], T]) -> tuple[T] | None:
        """Run ``reader(file, size)`` on the object file while it is hashed; None if absent.

        Returns ``(what reader returned,)``, so that a reader may return None.

        A large file is hashed on another thread (a second descriptor on the same inode,
        as :meth:`read` does) while ``reader`` reads the first from its start; a small
        one, or one verified before and unchanged, is hashed first (or not at all). What
        ``reader`` returns is handed back only once the file hashed to ``digest`` and did
        not change meanwhile; ``reader`` must keep what it makes to itself until then.
        A file that changed while it was read is hashed again and read again.

        Raises:
            IntegrityError: the file does not hash to ``digest`` (it is quarantined; this
                takes precedence over an error ``reader`` raised), or ``reader``'s own.
            StoreError: the file could not be read.
        """
        return self._read(digest, reader, returns_bytes=False)

    def _read(
        self, digest: str, reader: Callable[[BinaryIO, int], T], *, returns_bytes: bool
    ) -> tuple[T] | None:
        """The one read path of :meth:`read` and :meth:`read_with`; None if absent.

        A large file not known intact goes to :meth:`_alongside`. Otherwise, or when the
        file changed during that read, ``reader`` reads it from its start: with
        ``returns_bytes`` (``reader`` returns the bytes it read) those very bytes are
        hashed after the read; without, the file is hashed (or known intact) before it.
        """
        path = self.loose.final(digest)
        with map_os_errors(f"read object {digest}", path, self.loose.root):
            fd = self._open(digest)
            if fd is None:
                return None
            try:
                began = time.time()
                before = os.fstat(fd)
                if before.st_size >= _ALONGSIDE_MIN and not self.verified.trusted(digest, before):
                    done, result = self._alongside(digest, fd, before, began, reader)
                    if done:
                        return (cast("T", result),)
                    os.lseek(fd, 0, os.SEEK_SET)
                if returns_bytes:
                    with io.FileIO(fd, "rb", closefd=False) as f:
                        result = reader(cast("BinaryIO", f), before.st_size)
                    self._check_read(digest, fd, cast("bytes", result), began)
                    return (result,)
                st = self._check(digest, fd)
                os.lseek(fd, 0, os.SEEK_SET)
                with io.FileIO(fd, "rb", closefd=False) as f:
                    return (reader(cast("BinaryIO", f), st.st_size),)
            finally:
                os.close(fd)

    def _alongside(
        self,
        digest: str,
        fd: int,
        before: os.stat_result,
        began: float,
        reader: Callable[[BinaryIO, int], T],
    ) -> tuple[bool, T | None]:
        """``reader`` on ``fd`` while another thread hashes the file; (False, None): fall back.

        The read (for :meth:`read`, the copy into new memory, page faults on every page)
        and the hash then run on two cores at once instead of one after the other. Both
        read one unchanged file: the second descriptor must be the same inode, and the
        file's signature (size, mtime, ctime) must be the same after both reads as before
        them; anything else falls back to the caller's other path, from the file's start.
        See ADR 0011.
        """
        try:
            other = os.open(self.loose.final(digest), READ_FLAGS)
        except FileNotFoundError:
            return False, None
        failure: BaseException | None = None
        result: T | None = None
        try:
            if not os.path.samestat(os.fstat(other), before):
                return False, None
            hashed = _hashers().submit(digest_fd, other)
            try:
                with io.FileIO(fd, "rb", closefd=False) as f:
                    result = reader(cast("BinaryIO", f), before.st_size)
            except Exception as exc:  # noqa: BLE001 - judged once the hash has its say
                failure = exc
            finally:
                actual, size = hashed.result()
            after = os.fstat(fd)
        finally:
            os.close(other)
        if file_signature(after) != file_signature(before) or size != after.st_size:
            return False, None  # changed meanwhile: hash it, then read it again
        if actual != digest:
            raise self._reject(digest, actual, after) from failure
        if failure is not None:
            raise failure
        self.verified.remember(digest, after, hashed_from=began)
        return True, result

    def _check_read(self, digest: str, fd: int, data: bytes, began: float) -> None:
        """Check the bytes just read from the open object file (hashed unless known intact)."""
        st = os.fstat(fd)  # after the read: a write during it changed the times
        if len(data) == st.st_size and self.verified.trusted(digest, st):
            return
        actual = digest_of(data)
        if actual != digest:
            raise self._reject(digest, actual, st)
        self.verified.remember(digest, st, hashed_from=began)

    def _check(self, digest: str, fd: int) -> os.stat_result:
        """Hash the open object file unless it is known intact; return its stat.

        Leaves the file offset anywhere.
        """
        st = os.fstat(fd)
        if self.verified.trusted(digest, st):
            return st
        began = time.time()
        actual, _ = digest_fd(fd)
        st = os.fstat(fd)
        if actual != digest:
            raise self._reject(digest, actual, st)
        self.verified.remember(digest, st, hashed_from=began)
        return st

    def open(self, digest: str) -> BinaryIO | None:
        """Open the object file for reading once it is verified; None when there is none.

        The file returned is the very one that was hashed (same descriptor). A write into
        it while the caller reads is not seen: object files are read-only (``0o444``) and
        writing one takes a ``chmod`` first.

        Raises:
            IntegrityError: the file does not hash to ``digest`` (it is quarantined).
            StoreError: the file could not be read.
        """
        path = self.loose.final(digest)
        with map_os_errors(f"open object {digest}", path, self.loose.root):
            fd = self._open(digest)
            if fd is None:
                return None
            try:
                self._check(digest, fd)
                os.lseek(fd, 0, os.SEEK_SET)
                return open(fd, "rb")  # the caller closes it
            except BaseException:
                os.close(fd)
                raise

    def path(self, digest: str) -> str | None:
        """Return the object file's name once the file under it is verified; None if absent.

        The caller reads the file later, by name: like every path handed out, it is
        trusted from then on (it is read-only; see :meth:`open`).

        Raises:
            IntegrityError: the file does not hash to ``digest`` (it is quarantined).
            StoreError: the file could not be read, or its name kept changing files.
        """
        path = self.loose.final(digest)
        with map_os_errors(f"verify object {digest}", path, self.loose.root):
            for _ in range(_PATH_ATTEMPTS):
                fd = self._open(digest)
                if fd is None:
                    return None
                try:
                    st = self._check(digest, fd)
                finally:
                    os.close(fd)
                try:
                    if os.path.samestat(os.stat(path), st):
                        return path
                except FileNotFoundError:
                    return None
        raise StoreError(
            f"Object {digest} in {self.loose.root} was replaced {_PATH_ATTEMPTS} times "
            "while it was being verified; retry once other writers are done."
        )

    def intact(self, digest: str, size: int | None = None) -> bool | None:
        """Check an object about to be written again: True if intact, None if absent.

        False when it is corrupt: its size is not ``size`` (when given) or its bytes do
        not hash to ``digest``; it is then quarantined and the caller writes it anew.

        Raises:
            StoreError: the file could not be read.
        """
        path = self.loose.final(digest)
        # What os.path.exists answers, asked with access: the common case of a write
        # (no such file) is one system call, with no exception raised and caught.
        if not os.access(path, os.F_OK):
            return None
        with map_os_errors(f"check object {digest}", path, self.loose.root):
            fd = self._open(digest)
            if fd is None:
                return None
            try:
                st = os.fstat(fd)
                if size is not None and st.st_size != size:
                    self.verified.forget(digest)
                    self.loose.quarantine_file(digest, st)
                    return False
                try:
                    self._check(digest, fd)
                except IntegrityError:
                    return False
                return True
            finally:
                os.close(fd)

    def _reject(self, digest: str, actual: str, st: os.stat_result) -> IntegrityError:
        """Quarantine a corrupt object file; return the error to raise."""
        self.verified.forget(digest)
        quarantine = self.loose.quarantine_file(digest, st)
        return corrupt_error(
            digest,
            actual,
            where=f"object file {self.loose.final(digest)}",
            quarantine=quarantine,
        )
