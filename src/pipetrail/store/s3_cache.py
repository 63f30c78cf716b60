"""The local read cache of a remote store: verified files, bounded in size, LRU-evicted.

Owns :class:`ReadCache`. A file enters the cache only once its bytes hash to its digest
(written to a temp name, then renamed into place, read-only), and a process trusts a
cached file only after hashing it once or seeing the stat signature it recorded itself
(:class:`~pipetrail.store.verified.VerifiedFiles`). Files are used in place, so their
modification time marks their last use; when the cache grows past its limit, the least
recently used files go first. The size is tallied as files are added and the folder is
scanned only when the tally passes the limit (not once per download).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipetrail.hashing import Hasher, digest_file
from pipetrail.hashing.digest import hex_of
from pipetrail.store.verified import VerifiedFiles

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["ReadCache"]


class ReadCache:
    """Verified local copies of remote objects under ``folder``, at most ``limit`` bytes.

    Args:
        folder: the cache folder (created on first write).
        limit: the size limit in bytes (a file larger than it is still kept while used).
    """

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = Path(folder)
        self.limit = limit
        self._verified = VerifiedFiles()
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes in the folder, tallied once scanned

    def path(self, digest: str) -> Path:
        """Where the object's file is (or would be)."""
        hexed = hex_of(digest)
        return self.folder / hexed[:2] / hexed[2:]

    def get(self, digest: str) -> Path | None:
        """The object's cached file once it hashes to ``digest``; None if not cached."""
        path = self.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not self._verified.trusted(digest, st):
            started = time.time()
            try:
                actual, _ = digest_file(path)
            except OSError:
                return None
            if actual != digest:
                self.evict(digest)
                return None
            self._verified.remember(digest, st, hashed_from=started)
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return path

    def fill(
        self, digest: str, chunks: Iterable[bytes], on_mismatch: Callable[[str], None]
    ) -> Path:
        """Write ``chunks`` as the object's file if they hash to ``digest``; return it.

        Args:
            digest: the object's digest.
            chunks: its bytes, streamed.
            on_mismatch: called with the digest the bytes have when it is not ``digest``
                (it raises; nothing is cached).
        """
        path = self.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        hasher = Hasher()
        started = time.time()
        size = 0
        try:
            with open(tmp, "xb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            actual = hasher.digest()
            if actual != digest:
                on_mismatch(actual)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._verified.remember(digest, path.stat(), hashed_from=started)
        self._added(size, keep=path)
        return path

    def evict(self, digest: str) -> None:
        """Remove the object's cached file, if any."""
        with contextlib.suppress(OSError):
            self.path(digest).unlink()
        self._verified.forget(digest)

    def _added(self, size: int, *, keep: Path) -> None:
        with self._lock:
            if self._total is None:
                self._total = self._scan_total()
            else:
                self._total += size
            if self._total <= self.limit:
                return
            self._total = self._trim(keep=keep)

    def _files(self) -> list[tuple[float, int, Path]]:
        found = []
        for entry in self.folder.glob("*/*"):
            if entry.name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat()
                found.append((st.st_mtime, st.st_size, entry))
        return found

    def _scan_total(self) -> int:
        return sum(size for _, size, _ in self._files())

    def _trim(self, *, keep: Path) -> int:
        """Remove least recently used files until the cache fits; return what is left."""
        files = sorted(self._files())
        total = sum(size for _, size, _ in files)
        for _, size, entry in files:
            if total <= self.limit:
                break
            if entry == keep:
                continue
            with contextlib.suppress(OSError):
                entry.unlink()
                total -= size
        return total
