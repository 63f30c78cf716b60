"""What every read of a local store relies on: hashing what is handed out, and its shortcut.

Owns :func:`digest_of` (the digest of bytes in memory, on every core when they are
large), :func:`corrupt_error` (the one message for an object whose bytes do not hash to
its name), :func:`changed_error` (the one message, in every store, for a file to store
whose bytes do not hash to the digest expected) and :class:`VerifiedFiles`, the set of
object files a store verified in this process, by stat signature. See
docs/adr/0011-verified-object-reads.md.

The shortcut: a loose object file that this process hashed and found intact, and whose
``(device, inode, size, mtime_ns, ctime_ns)`` is still the same, is not hashed again. Any
write to the file through the filesystem changes its mtime and ctime, and a rename puts
another inode under the name, so the signature changes. Two limits, both documented in
the ADR: a file is remembered only when its timestamps are at least
:data:`RACY_SECONDS` older than the moment its hashing began (a write landing in the
same timestamp tick as an earlier one could otherwise leave the signature unchanged, the
"racy clean" problem git also has), and damage that bypasses the filesystem (a failing
disk returning other bytes for a page it re-reads) is not seen until the next
``pipetrail store verify`` or the next process.

Imports only ``pipetrail.hashing`` and ``pipetrail.errors``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pipetrail.errors import IntegrityError
from pipetrail.hashing import Hasher, digest_bytes

if TYPE_CHECKING:
    import os

__all__ = [
    "RACY_SECONDS",
    "VerifiedFiles",
    "changed_error",
    "corrupt_error",
    "digest_of",
    "file_signature",
]

# A file is trusted by its signature only if it was last changed this long before it
# was hashed: filesystems keep timestamps to 1 or 2 s (FAT, ext3) or to a clock tick.
RACY_SECONDS = 2.0
# From this size a digest is spread over every core (the cost of handing out work is
# then small next to the hashing).
_PARALLEL_MIN = 1024 * 1024
# Remembering more files than this starts over: a bound on memory, not on correctness.
_MAX_REMEMBERED = 65536

Signature = tuple[int, int, int, int, int]


def digest_of(data: bytes | bytearray | memoryview) -> str:
    """Return the digest of ``data`` (hashed on every core from 1 MiB on)."""
    if len(data) < _PARALLEL_MIN:
        return digest_bytes(data)
    hasher = Hasher(parallel=True)
    hasher.update(data)
    return hasher.digest()


def file_signature(st: os.stat_result) -> Signature:
    """What identifies one unchanged version of a file: device, inode, size and times."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def corrupt_error(digest: str, actual: str, *, where: str, quarantine: str) -> IntegrityError:
    """The error for an object whose bytes do not hash to its digest (now quarantined).

    Args:
        digest: the object's name.
        actual: what its bytes hash to.
        where: where the bytes were read ("object file X", "row of pack.db", ...).
        quarantine: where the bytes were moved.
    """
    return IntegrityError(
        f"Object {digest} is corrupt: its bytes ({where}) hash to {actual}, not to its "
        f"name. Nothing was read from it; it was moved to {quarantine}. Run the pipeline "
        "again to recompute it (the step that produced it executes again), or restore the "
        "store from a backup; `pipetrail store verify` checks every other object."
    )


def changed_error(src: str, actual: str, expected: str) -> IntegrityError:
    """The error for a file to store whose bytes, as read, do not hash to the digest expected."""
    return IntegrityError(
        f"File {src} changed while being read: its bytes hash to {actual}, not {expected}. "
        "Make sure nothing writes to it while it is stored (or pass the right digest=), "
        "then store it again."
    )


class VerifiedFiles:
    """Object files verified in this process, each with the signature it had then.

    Thread-safe. A store keeps one; a new store (or process) starts empty.
    """

    def __init__(self) -> None:
        self._known: dict[str, Signature] = {}
        self._lock = threading.Lock()

    def trusted(self, digest: str, st: os.stat_result) -> bool:
        """Return whether the file was verified here and has not changed since."""
        return self._known.get(digest) == file_signature(st)

    def remember(self, digest: str, st: os.stat_result, *, hashed_from: float) -> None:
        """Record that the file with stat ``st`` hashed to ``digest``.

        Args:
            digest: the object's name, which its bytes hashed to.
            st: the file's stat, taken after it was hashed.
            hashed_from: ``time.time()`` when hashing began; files changed less than
                :data:`RACY_SECONDS` before are not remembered (see the module docs).
        """
        changed = max(st.st_mtime_ns, st.st_ctime_ns)
        if changed >= (hashed_from - RACY_SECONDS) * 1e9:
            return
        with self._lock:
            if len(self._known) >= _MAX_REMEMBERED:
                self._known.clear()
            self._known[digest] = file_signature(st)

    def forget(self, digest: str) -> None:
        """Drop what is known about an object (it was quarantined or replaced)."""
        with self._lock:
            self._known.pop(digest, None)
