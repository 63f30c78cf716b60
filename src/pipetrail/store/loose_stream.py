"""Writing an object file from parts made while it is written (a sealed object's chunks).

:func:`write_parts` takes the parts of an object from an iterator and, on another
thread, hashes each part and writes it to a temp file while the iterator makes the next
one (encrypts it, for :class:`~pipetrail.store.sealed.SealedStore`). The object's digest
is known only once the last part is hashed; the temp file is then renamed to its final
name, or discarded when an intact object is already stored under it. So an object is
hashed in the same pass that writes it, and no buffer of the whole object is needed.

The parts may be buffers the iterator reuses: a part is finished with (hashed and
written) before the iterator is asked for the part after next, so a ring of two
buffers is safe.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from pipetrail.errors import StoreError
from pipetrail.hashing import Hasher
from pipetrail.hashing.digest import process_pool
from pipetrail.store.local_files import write_all
from pipetrail.store.os_errors import map_os_errors

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from concurrent.futures import Future

    from pipetrail.store.loose import LooseObjects
    from pipetrail.store.loose_read import LooseReader

__all__ = ["store_parts", "write_parts"]

_HAS_FCHMOD = hasattr(os, "fchmod")  # missing on Windows before 3.13


def write_parts(loose: LooseObjects, parts: Iterable[memoryview]) -> tuple[str, str, int]:
    """Write ``parts`` to a new read-only temp file, hashing them on the way.

    Returns:
        ``(digest, temp file, size)``; the caller renames the temp file into place or
        discards it (:meth:`LooseObjects.rename`, :meth:`LooseObjects.discard`).

    Raises:
        StoreError: the temp file could not be written (disk full, permissions...).
    """
    hasher = Hasher()
    pool = process_pool("write-parts", 4)
    with map_os_errors("write a new object", os.path.join(loose.root, "tmp"), loose.root):
        fd, tmp = loose.open_tmp("new")
        try:
            if not _HAS_FCHMOD:
                os.chmod(tmp, 0o444)  # the open fd stays writable

            def take(part: memoryview) -> None:
                hasher.update(part)
                write_all(fd, part)

            pending: Future[None] | None = None
            try:
                for part in parts:  # the next part is made while the last one is written
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(take, part)
                if pending is not None:
                    done = pending
                    pending = None  # waited for here: not again below
                    done.result()
                if _HAS_FCHMOD:
                    os.fchmod(fd, 0o444)
                if loose.fsync:
                    os.fsync(fd)
            finally:
                if pending is not None:  # an error: the writer must be done with fd first
                    with contextlib.suppress(BaseException):
                        pending.result()
                os.close(fd)
        except BaseException:
            loose.discard(tmp)
            raise
    return hasher.digest(), tmp, hasher.size


def store_parts(
    reader: LooseReader,
    parts: Iterable[memoryview],
    size: int,
    check: Callable[[], None] | None = None,
) -> str:
    """Write ``parts`` as an object file (:func:`write_parts`); return its digest.

    ``check`` runs once every part is written, before the file gets its name: what it
    raises leaves nothing stored (a sealer checks there that its source did not change).
    An intact object already stored under the digest is kept and the new file dropped;
    a corrupt one is quarantined (by ``reader.intact``) and replaced.

    Raises:
        StoreError: the object could not be written, or ``parts`` made not ``size`` bytes.
    """
    loose = reader.loose
    digest, tmp, written = write_parts(loose, parts)
    try:
        if check is not None:
            check()
        if written != size:
            raise StoreError(f"an object of {size} bytes was expected, {written} were made")
        if not reader.intact(digest, size):
            final = loose.final(digest)
            with map_os_errors(f"write object {digest}", final, loose.root):
                loose.note_renamed([loose.rename(tmp, final)])
    finally:
        loose.discard(tmp)  # nothing left to remove once it was renamed
    return digest
