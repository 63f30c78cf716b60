"""Removing objects from a local store: the primitives of garbage collection.

Owns :func:`find_garbage` (which stored objects are not in a set of digests to keep, and
old enough to go) and :func:`remove_garbage` (removing them). What to keep is decided
above the store (``pipetrail.execution.gc``, from the ledger); this module only knows
the layout of :class:`~pipetrail.store.local.LocalStore` (ADR 0006, 0007, 0009):

* a loose object is a file: it goes when its mtime is older than the grace period;
* a packed object is a row of ``objects`` in ``pack.db``: it goes when ``stored_at`` is
  (rows written before that column existed count as old); the pack file keeps the
  freed pages for later writes, and is vacuumed when more than a quarter of it is free;
* an object in a segment is a row of ``segment_objects``; it counts the age of its
  segment file (segments are never written after their rows commit). Once its rows
  are gone, a segment whose live bytes fall below :data:`SEGMENT_LIVE_SHARE` of the file
  is rewritten (its live objects copied, verified, to a new segment, the rows moved in
  one transaction, the old file removed); a segment with no live object is removed.

The pack is read on a private connection, row by row (digest, size, age: never the
data). The caller
holds the locks of :mod:`pipetrail.store.gc_lock`. Imports only the standard library,
``pipetrail.hashing``, ``pipetrail.errors`` and ``pipetrail.store``'s layout modules.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipetrail.errors import StoreError
from pipetrail.hashing import digest_bytes
from pipetrail.hashing.digest import DIGEST_PREFIX
from pipetrail.store.generation import bump_generation
from pipetrail.store.local_files import fsync_dir_best_effort
from pipetrail.store.segments import SEGMENT_SUFFIX, try_lock

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["KINDS", "SEGMENT_LIVE_SHARE", "Garbage", "find_garbage", "remove_garbage"]

KINDS = ("loose", "packed", "segment")
# A segment is rewritten once less than this share of its bytes is still live.
SEGMENT_LIVE_SHARE = 0.5
# The pack is vacuumed once more than this share of its pages is free.
_PACK_FREE_SHARE = 0.25
_CHUNK = 500
_HEX = frozenset("0123456789abcdef")


@dataclass
class Garbage:
    """Objects a collection removes (or, in a dry run, would remove).

    Attributes:
        loose: digest -> size of loose object files to remove.
        packed: digest -> size of pack rows to remove.
        segment: digest -> (segment file, size) of segment objects to remove.
        s3: digest -> size of objects of an S3 store to remove (:mod:`pipetrail.store.s3_gc`).
        kinds: the kinds this store has (``loose``, ``packed``, ``segment``; or ``s3``).
        young: objects left alone because they are younger than the grace period.
        segments_dropped: segment files with no live object left (removed).
        segments_rewritten: segment files rewritten without their dead bytes.
        segment_bytes_freed: bytes of segment files given back to the filesystem.
        pack_bytes_freed: bytes the pack file shrank by when vacuumed.
    """

    loose: dict[str, int] = field(default_factory=dict)
    packed: dict[str, int] = field(default_factory=dict)
    segment: dict[str, tuple[str, int]] = field(default_factory=dict)
    s3: dict[str, int] = field(default_factory=dict)
    kinds: tuple[str, ...] = KINDS
    young: int = 0
    segments_dropped: int = 0
    segments_rewritten: int = 0
    segment_bytes_freed: int = 0
    pack_bytes_freed: int = 0

    def digests(self) -> Iterator[str]:
        """Every digest to remove (each once; an object may live in two places)."""
        yield from dict.fromkeys([*self.loose, *self.packed, *self.segment, *self.s3])

    def sizes(self) -> dict[str, int]:
        """Digest -> bytes it frees (an object stored twice counts both copies)."""
        found: dict[str, int] = {}
        for digest, size in [
            *self.loose.items(),
            *self.packed.items(),
            *((d, size) for d, (_, size) in self.segment.items()),
            *self.s3.items(),
        ]:
            found[digest] = found.get(digest, 0) + size
        return found

    def by_kind(self) -> dict[str, dict[str, int]]:
        """``{kind: {"objects": n, "bytes": b}}`` for each kind of :attr:`kinds`."""
        sizes = {
            "loose": list(self.loose.values()),
            "packed": list(self.packed.values()),
            "segment": [size for _, size in self.segment.values()],
            "s3": list(self.s3.values()),
        }
        return {
            kind: {"objects": len(sizes[kind]), "bytes": sum(sizes[kind])} for kind in self.kinds
        }


def _connect(pack: Path) -> sqlite3.Connection | None:
    if not pack.exists():
        return None
    try:
        conn = sqlite3.connect(str(pack), timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=60000")
    except sqlite3.Error as exc:
        raise StoreError(f"could not open the pack {pack} ({exc})") from exc
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}


def _iter_loose(root: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(digest, path)`` of every loose object file (temp files excluded)."""
    try:
        shards = [e for e in os.scandir(root) if len(e.name) == 2 and set(e.name) <= _HEX]
    except FileNotFoundError:
        return
    for shard in shards:
        if not shard.is_dir(follow_symlinks=False):
            continue
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(shard.path):
                if len(entry.name) == 62 and set(entry.name) <= _HEX:
                    yield DIGEST_PREFIX + shard.name + entry.name, entry.path


def find_garbage(root: Path, keep: set[str], *, grace: float) -> Garbage:
    """Find the stored objects not in ``keep`` that are older than ``grace`` seconds.

    Args:
        root: the local store's folder.
        keep: digests that must stay (everything a kept run needs).
        grace: objects stored less than this many seconds ago stay whatever ``keep``
            says (a run may still be about to name them).

    Raises:
        StoreError: the store could not be read.
    """
    root = Path(root)
    cutoff = time.time() - grace
    found = Garbage()
    for digest, path in _iter_loose(root):
        if digest in keep:
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_mtime >= cutoff:
            found.young += 1
        else:
            found.loose[digest] = st.st_size
    conn = _connect(root / "pack.db")
    if conn is None:
        return found
    try:
        stamped = "stored_at" in _columns(conn, "objects")
        age = "stored_at" if stamped else "NULL"
        # Every digest (from the digest index alone), filtered here: faster than loading
        # ``keep`` into the database to join there (a million digests: 1 s against 8).
        # Only the candidates' sizes and ages are read from the table itself.
        candidates = [
            str(digest)
            for (digest,) in conn.execute("SELECT digest FROM objects")
            if digest not in keep
        ]
        for start in range(0, len(candidates), _CHUNK):
            chunk = candidates[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for digest, size, stored_at in conn.execute(
                f"SELECT digest, length(data), {age} FROM objects "  # noqa: S608 - a column
                f"WHERE digest IN ({marks})",
                chunk,
            ):
                if stored_at is not None and stored_at >= cutoff:
                    found.young += 1
                else:
                    found.packed[str(digest)] = int(size)
        if "segment" in _columns(conn, "segment_objects"):
            ages: dict[str, float] = {}
            for digest, segment, size in conn.execute(
                "SELECT digest, segment, size FROM segment_objects"
            ):
                if digest in keep:
                    continue
                name = str(segment)
                if name not in ages:
                    try:
                        ages[name] = os.stat(root / "segments" / name).st_mtime
                    except FileNotFoundError:
                        ages[name] = 0.0  # lost already: its rows are dead either way
                if ages[name] >= cutoff:
                    found.young += 1
                else:
                    found.segment[str(digest)] = (name, int(size))
    except sqlite3.Error as exc:
        raise StoreError(f"could not read the pack {root / 'pack.db'}: {exc}") from exc
    finally:
        conn.close()
    return found


def remove_garbage(root: Path, garbage: Garbage) -> None:
    """Remove what :func:`find_garbage` found; compact segments and the pack after.

    Call it holding the collector lock with writers excluded
    (:func:`pipetrail.store.gc_lock.collector_lock`).

    Raises:
        StoreError: the store could not be changed; what was removed before stays removed.
    """
    root = Path(root)
    if not (garbage.loose or garbage.packed or garbage.segment):
        return
    # Before (an interrupted sweep has changed it already) and after (see ADR 0032).
    bump_generation(str(root))
    try:
        _remove(root, garbage)
    finally:
        bump_generation(str(root))


def _remove(root: Path, garbage: Garbage) -> None:
    skip = len(DIGEST_PREFIX)
    for digest in garbage.loose:
        # Loose files shard on the first two hex characters (store.loose).
        path = root / digest[skip : skip + 2] / digest[skip + 2 :]
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(f"could not remove object file {path}: {exc.strerror}") from exc
    conn = _connect(root / "pack.db")
    if conn is None:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        _delete(conn, "objects", list(garbage.packed))
        _delete(conn, "segment_objects", list(garbage.segment))
        conn.execute("COMMIT")
        touched = {segment for segment, _ in garbage.segment.values()}
        for segment in sorted(touched):
            _compact_segment(conn, root / "segments", segment, garbage)
        if garbage.packed:
            garbage.pack_bytes_freed = _vacuum_if_sparse(conn, root / "pack.db")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise StoreError(f"could not remove objects from {root / 'pack.db'}: {exc}") from exc
    finally:
        conn.close()


def _delete(conn: sqlite3.Connection, table: str, digests: list[str]) -> None:
    for start in range(0, len(digests), _CHUNK):
        chunk = digests[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM {table} WHERE digest IN ({marks})", chunk)  # noqa: S608


def _compact_segment(
    conn: sqlite3.Connection, folder: Path, segment: str, garbage: Garbage
) -> None:
    """Drop a segment with no live object; rewrite one whose live share fell low."""
    path = folder / segment
    rows = conn.execute(
        "SELECT digest, start, size FROM segment_objects WHERE segment = ? ORDER BY start",
        (segment,),
    ).fetchall()
    try:
        length = os.stat(path).st_size
    except FileNotFoundError:
        return
    live = sum(int(size) for _, _, size in rows)
    if rows and live >= SEGMENT_LIVE_SHARE * length:
        return
    if rows and not _rewrite(conn, folder, segment, rows):
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fsync_dir_best_effort(str(folder))
    garbage.segment_bytes_freed += length - live
    if rows:
        garbage.segments_rewritten += 1
    else:
        garbage.segments_dropped += 1


def _rewrite(
    conn: sqlite3.Connection, folder: Path, segment: str, rows: list[tuple[str, int, int]]
) -> bool:
    """Copy a segment's live objects to a new segment and point their rows there.

    Every object is re-hashed on the way; a corrupt one leaves the old segment as it is
    (``store verify`` reports it). Returns whether the rows now point to the new file.
    """
    name = f"{uuid.uuid4().hex}{SEGMENT_SUFFIX}"
    new = folder / name
    moved: list[tuple[str, int, str, str]] = []
    src = os.open(folder / segment, os.O_RDONLY)
    dst = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        try_lock(dst)  # like a writer's: `store clean` leaves a locked segment alone
        offset = 0
        for digest, start, size in rows:
            data = os.pread(src, int(size), int(start))
            if len(data) != size or digest_bytes(data) != digest:
                raise _Corrupt
            os.write(dst, data)
            moved.append((name, offset, str(digest), segment))
            offset += len(data)
        os.fsync(dst)
        fsync_dir_best_effort(str(folder))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE segment_objects SET segment = ?, start = ? WHERE digest = ? AND segment = ?",
            moved,
        )
        conn.execute("COMMIT")
    except (_Corrupt, OSError):
        with contextlib.suppress(OSError):
            os.unlink(new)
        return False
    finally:
        os.close(src)
        os.close(dst)
    return True


class _Corrupt(Exception):
    """A live object of a segment did not hash to its digest."""


def _vacuum_if_sparse(conn: sqlite3.Connection, pack: Path) -> int:
    """Vacuum the pack when more than a quarter of it is free pages; return bytes freed."""
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    if not pages or free <= _PACK_FREE_SHARE * pages:
        return 0
    before = os.stat(pack).st_size
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return max(0, before - os.stat(pack).st_size)
