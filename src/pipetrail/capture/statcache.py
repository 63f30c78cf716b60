"""A persistent stat cache: remembers which digest a file had at a given ``stat`` signature.

Owns :class:`StatCache`, a small SQLite file (stdlib ``sqlite3``, WAL mode) the project
keeps at ``.pipetrail/cache/stat.db``. One row per file, keyed by its absolute path::

    path -> entry (signature + raw digest [+ store generation]), stamp, cached_ns

The signature packs the file's size, mtime_ns, ctime_ns, inode and device (see
:func:`signature`); ``stamp`` is the newer of its mtime and ctime; ``cached_ns`` is the
wall-clock moment (``time.time_ns()``) the observation that hashed the file began, taken
before the file was stat-ed. A row is *trusted* only when its signature still matches the
file **and** its ``stamp`` is at least :data:`RACY_WINDOW_NS` older than ``cached_ns``.
A file modified within that window of being hashed may be modified again without a
visible change of its timestamps (coarse file-system clocks: git's "racy clean" problem),
so such rows are kept but never trusted; the next observation hashes the file again and,
once it is old enough, caches it for good. The ctime is part of the signature because
user code cannot set it back (``touch -d`` can reset an mtime; the kernel then still moves
the ctime): anything doubtful is re-hashed.

An entry may end with the raw token of a store generation
(:mod:`pipetrail.store.generation`, ADR 0032): the file's content was in the store at
that generation. While the store's generation is still that token, the object is still
there and the observation does not look it up again.

It is a cache: any error reading it (missing, locked, corrupt, another schema) means
"miss", never a failure, and writes that cannot be made are skipped. A file that is not a
database, or a corrupt one, is deleted and recreated at the next write. Concurrent
processes are safe: SQLite's locking and WAL keep the file consistent, writes are one
``BEGIN IMMEDIATE`` transaction per observation, and a writer that waits longer than the
timeout gives up instead of stalling the run.

Imports only ``pipetrail.hashing`` and the standard library.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
from typing import TYPE_CHECKING

from pipetrail.core.cache_db import CacheDatabase
from pipetrail.hashing.digest import DIGEST_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = [
    "DIGEST_SIZE",
    "ENTRY_SIZE",
    "RACY_WINDOW_NS",
    "SIGNATURE_SIZE",
    "STAT_CACHE_SCHEMA_VERSION",
    "StatCache",
    "signature",
]

_log = logging.getLogger(__name__)

# 2: an entry may end with a store generation (version 1 readers would take it for digest
# bytes, so they drop the table rather than read it).
STAT_CACHE_SCHEMA_VERSION = 2
# Coarse file systems keep 1 s (ext3, HFS+) or 2 s (FAT) timestamps; 2 s covers both and
# some clock skew between a file server and this host.
RACY_WINDOW_NS = 2_000_000_000

# size, mtime_ns, ctime_ns (signed: times before 1970 exist), inode, device (unsigned).
_SIGNATURE = struct.Struct("<qqqQQ")
SIGNATURE_SIZE = _SIGNATURE.size
DIGEST_SIZE = 32  # raw BLAKE3 bytes; the text form is DIGEST_PREFIX + hex
ENTRY_SIZE = SIGNATURE_SIZE + DIGEST_SIZE  # then, optionally, a store generation's bytes
_pack = _SIGNATURE.pack

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    path TEXT PRIMARY KEY,
    entry BLOB NOT NULL,
    stamp INTEGER NOT NULL,
    cached_ns INTEGER NOT NULL
) WITHOUT ROWID
"""


def signature(st: os.stat_result) -> bytes:
    """Return the packed ``(size, mtime_ns, ctime_ns, inode, device)`` of a ``stat`` result.

    Two signatures compare equal exactly when all five fields are equal; the bytes are
    :data:`SIGNATURE_SIZE` long.
    """
    return _pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class StatCache(CacheDatabase):
    """The stat cache in one SQLite file; safe to share between threads and processes.

    Args:
        path: the database file (the project uses ``.pipetrail/cache/stat.db``); its folder
            is created when needed.
        timeout: seconds a write waits for another process's write before it is skipped.

    Lookups never raise: an unusable cache returns no entries. Writes never raise either;
    a skipped write only means the next observation hashes those files again.

    Example:
        >>> with StatCache(tmp_path / "stat.db") as cache:  # doctest: +SKIP
        ...     observe_source("data", root=tmp_path, cache=cache, by_reference=True)
    """

    def __init__(self, path: Path, *, timeout: float = 2.0) -> None:
        super().__init__(
            path,
            timeout=timeout,
            what="stat cache",
            table="entries",
            schema=_SCHEMA,
            version=STAT_CACHE_SCHEMA_VERSION,
        )

    def __enter__(self) -> StatCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; the cache reopens it on next use."""
        with self._lock:
            self._close_locked()

    # -- reading ---------------------------------------------------------------------
    def load(self, path: str, *, tree: bool) -> tuple[dict[str, bytes], list[str]]:
        """Return the entries for one file or for every file under a folder.

        Args:
            path: an absolute path (the caller resolves symlinks first).
            tree: ``False`` for the file at ``path`` itself; ``True`` for every entry whose
                path starts with ``path`` plus a separator.

        Returns:
            ``(trusted, racy)``. ``trusted`` maps each absolute path whose row may be
            trusted (see the module docstring) to its :func:`signature` followed by the
            :data:`DIGEST_SIZE` raw digest bytes: the digest holds while the file's
            signature equals the first :data:`SIGNATURE_SIZE` bytes. What follows the
            first :data:`ENTRY_SIZE` bytes, if anything, is the raw token of the store
            generation at which the content was seen in the store. ``racy`` lists the
            paths of the other rows, so the caller can :meth:`update` away those of
            files that no longer exist. Both are empty when the cache cannot be read.
        """
        if tree:
            low = path if path.endswith(os.sep) else path + os.sep
            # Every key under the folder sorts in [low, high): the separator's next code point.
            where, args = "path >= ? AND path < ?", [low, low[:-1] + chr(ord(os.sep) + 1)]
        else:
            where, args = "path = ?", [path]
        with self._lock:
            try:
                conn = self._connect_locked()
                trusted = dict(
                    conn.execute(
                        f"SELECT path, entry FROM entries WHERE {where} "  # noqa: S608 - fixed text
                        "AND stamp < cached_ns - ?",
                        [*args, RACY_WINDOW_NS],
                    ).fetchall()
                )
                racy = conn.execute(
                    f"SELECT path FROM entries WHERE {where} "  # noqa: S608 - fixed text
                    "AND stamp >= cached_ns - ?",
                    [*args, RACY_WINDOW_NS],
                ).fetchall()
            except (sqlite3.Error, OSError, UnicodeEncodeError) as exc:
                _log.debug("stat cache %s unreadable, treated as empty: %s", self.path, exc)
                return {}, []
        return trusted, [row[0] for row in racy]

    # -- writing ---------------------------------------------------------------------
    def update(
        self,
        entries: Iterable[tuple[str, bytes, str, int]],
        *,
        cached_ns: int,
        remove: Iterable[str] = (),
        stored_at: bytes = b"",
        confirm: Iterable[tuple[str, bytes]] = (),
    ) -> bool:
        """Record digests, confirm entries and forget paths, in one transaction.

        Args:
            entries: ``(absolute path, signature, digest, stamp)`` of each file hashed:
                its :func:`signature` taken *before* it was read, its digest
                (``blake3:<hex>``), and the newer of its mtime and ctime in nanoseconds.
            cached_ns: ``time.time_ns()`` taken before any of these files was stat-ed.
            remove: paths to forget (files that no longer exist).
            stored_at: the raw token of the store generation, read before the
                observation began, at which the content of every file in ``entries``
                is in the store (empty: not stored, or no generation known).
            confirm: ``(absolute path, entry)`` of rows to rewrite without changing their
                timestamps: an entry as :meth:`load` returned it, whose first
                :data:`ENTRY_SIZE` bytes are unchanged, now ending with another
                generation's token.

        Returns:
            Whether the write was made (``False``: skipped, for example because another
            process held the lock longer than the timeout).
        """
        cut = len(DIGEST_PREFIX)
        rows = [
            (path, sig + bytes.fromhex(digest[cut:]) + stored_at, stamp, cached_ns)
            for path, sig, digest, stamp in entries
        ]
        stale = [(path,) for path in remove]
        confirmed = [(entry, path) for path, entry in confirm]
        if not rows and not stale and not confirmed:
            return True
        with self._lock:
            return self._write_locked(lambda conn: _write(conn, rows, stale, confirmed))


def _write(
    conn: sqlite3.Connection,
    rows: list[tuple[str, bytes, int, int]],
    stale: list[tuple[str]],
    confirmed: list[tuple[bytes, str]],
) -> None:
    if stale:
        conn.executemany("DELETE FROM entries WHERE path = ?", stale)
    if rows:
        conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows)
    if confirmed:
        # Only a row that still holds the signature and digest read: a concurrent
        # observation may have replaced it meanwhile.
        conn.executemany(
            f"UPDATE entries SET entry = ?1 WHERE path = ?2 "  # noqa: S608 - fixed text
            f"AND substr(entry, 1, {ENTRY_SIZE}) = substr(?1, 1, {ENTRY_SIZE})",
            confirmed,
        )
