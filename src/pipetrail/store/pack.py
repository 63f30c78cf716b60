"""A pack of small objects: many tiny blobs in one SQLite file, still named by digest.

Pipelines produce many small objects (scalars, small dicts, metric summaries, logs, step
sources). As files, each costs a file creation, an fsync and a rename, which on a
journaling filesystem is most of the work of a trivial step. The pack keeps objects up
to :data:`SMALL_OBJECT_LIMIT` bytes as rows of ``objects(digest, data)`` in
``objects/pack.db``.

Guarantees, the same as the loose-file layout's against a crash or a killed writer:

* a write is one SQLite transaction, so an object is either wholly there or absent; a
  :class:`PackBatch` (``LocalStore.put_files``) commits many in one, all or none;
* while writes are *held* (:meth:`SmallObjectPack.hold`, which a run turns on), a put
  waits in memory, readable by this pack object at once, and :meth:`SmallObjectPack.commit_held`
  writes every waiting object in one transaction: the runner calls it before it appends
  events naming them, so an object is committed before any record points at it. A
  process killed meanwhile loses only objects nothing records;
* objects are immutable (``INSERT OR IGNORE``); a digest always names the same bytes. A
  put whose digest is taken by other bytes (a corrupt row) replaces them and hands the
  corrupt ones back for the quarantine (:meth:`SmallObjectPack.put`);
* the store hashes every object it reads back (``LocalStore``); a corrupt row is moved
  out (to the store's quarantine folder) like a corrupt file
  (:meth:`SmallObjectPack.remove_corrupt`), and :meth:`SmallObjectPack.verify` re-hashes
  on request.

Durability: the pack runs in WAL mode with ``synchronous=NORMAL``, like the ledger: a
commit is durable once the write-ahead log is flushed, which :meth:`SmallObjectPack.sync`
does (the runner syncs the store before a run's record is final). See
docs/adr/0006-small-object-pack.md and docs/adr/0007-source-files-in-the-pack.md.

The pack also indexes the objects that batches appended to segment files
(:mod:`pipetrail.store.segments`, ADR 0009): rows ``segment_objects(digest, segment,
start, size)``, committed in the batch's transaction once the segment is durable, and
read with ``pread``. Every method here answers for both kinds of objects.

Imports only the standard library, pipetrail.hashing / pipetrail.errors and the store's
standard-library file helpers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.core.sqlite_binding import bind_plainly
from pipetrail.errors import StoreError
from pipetrail.hashing import digest_bytes
from pipetrail.store.generation import bump_generation
from pipetrail.store.local_files import fsync_dir_best_effort
from pipetrail.store.pack_batch import INSERT_OBJECT, PackBatch, stored_at
from pipetrail.store.segments import clean_segments, describe_slice, read_slice

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["SMALL_OBJECT_LIMIT", "PackBatch", "SmallObjectPack"]

# Objects up to this size go to the pack. 16 KiB keeps rows on a few pages while
# covering scalars, small JSON documents, logs and source texts.
SMALL_OBJECT_LIMIT = 16 * 1024

# Digests per ``IN (...)`` lookup: below SQLite's historical limit of 999 parameters.
_LOOKUP_CHUNK = 500
# The sizes of the objects held as rows, then in segments, of an IN list ({marks}).
_ROW_SIZES = "SELECT digest, length(data) FROM objects WHERE digest IN ({marks})"
_SEGMENT_SIZES = "SELECT digest, size FROM segment_objects WHERE digest IN ({marks})"
# The digests of the same lists held as rows (found in the digests' index alone), then
# in segments.
_ROW_DIGESTS = "SELECT digest, NULL FROM objects WHERE digest IN ({marks})"
_SEGMENT_DIGESTS = "SELECT digest, NULL FROM segment_objects WHERE digest IN ({marks})"
# A rowid table, the digest in its own index: rows up to ~4 KiB stay on their leaf page.
# Packs made before kept ``WITHOUT ROWID``, which stores each row inside the digest
# B-tree: rows above ~1 KiB overflow to a page of their own and every page split moves
# whole rows (100,000 rows of 1 KiB: 6.9 s and 469 MB, against 1.3 s and 146 MB here).
# Both layouts answer the same SQL, so old packs keep working as they are.
# ``stored_at`` (Unix seconds, set by INSERT_OBJECT) lets garbage collection spare young
# objects (ADR 0014); packs made before it get the column on open, NULL in their old rows.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (digest TEXT PRIMARY KEY, data BLOB NOT NULL, "
    "stored_at INTEGER)"
)
_SEGMENT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS segment_objects (digest TEXT PRIMARY KEY, "
    "segment TEXT NOT NULL, start INTEGER NOT NULL, size INTEGER NOT NULL)"
)
_DATA = "SELECT data FROM objects WHERE digest = ?"
_SIZE = (
    "SELECT length(data) FROM objects WHERE digest = ?1 "
    "UNION ALL SELECT size FROM segment_objects WHERE digest = ?1"
)


class SmallObjectPack:
    """Small immutable blobs in one SQLite file; one connection per thread.

    Args:
        path: the pack file (created with its folder if missing).
        segments: the folder of segment files; ``segments/`` beside the pack by default.
    """

    def __init__(self, path: Path, segments: Path | None = None) -> None:
        self.path = Path(path)
        self.segments = os.fspath(segments or self.path.parent / "segments")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # digest -> bytes of puts not yet written (None: puts are written at once).
        self._held: dict[str, bytes] | None = None
        self._held_lock = threading.Lock()
        # (device, inode, size, mtime) of the log file when this pack last made it durable
        self._synced_log: tuple[int, int, int, int] | None = None

    def _db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            bind_plainly()  # objects are bound as bytes (see its module)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    str(self.path), timeout=60, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA busy_timeout=60000")
                _set_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
                conn.execute(_SEGMENT_SCHEMA)
                _add_stored_at(conn)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(
                    f"the small-object pack {self.path} could not be opened ({exc}); check that "
                    "the store folder is writable and not on a network filesystem"
                ) from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def put(self, digest: str, data: bytes) -> bytes | None:
        """Store ``data`` under ``digest`` (the caller computed it); a no-op if present.

        A row already there is compared with ``data`` (only then: a new row costs no
        read); if its bytes differ and do not hash to ``digest`` it is corrupt, and is
        replaced. Intact rows are never changed, whatever the caller passes.

        While writes are held (:meth:`hold`), ``data`` waits in memory until
        :meth:`commit_held`, which makes the same checks.

        Returns:
            The corrupt bytes replaced, for the quarantine; None otherwise.
        """
        with self._held_lock:
            if self._held is not None:
                self._held.setdefault(digest, data)
                return None
        try:
            conn = self._db()
            if conn.execute(INSERT_OBJECT, (digest, data, stored_at())).rowcount == 1:
                return None
            row = conn.execute(_DATA, (digest,)).fetchone()
            if row is None or bytes(row[0]) == data or digest_bytes(bytes(row[0])) == digest:
                return None
            conn.execute(
                "UPDATE objects SET data = ?2 WHERE digest = ?1 AND data = ?3",
                (digest, data, row[0]),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"could not write object {digest} to {self.path}: {exc}") from exc
        return bytes(row[0])

    def hold(self) -> None:
        """Hold later puts in memory until :meth:`commit_held` (see the module docstring)."""
        with self._held_lock:
            if self._held is None:
                self._held = {}

    def commit_held(self, *, release: bool = False) -> list[tuple[str, bytes]]:
        """Write the held puts in one transaction; with ``release``, stop holding.

        Safe from any thread: the objects are taken under a lock and written on the calling
        thread's connection. When the write fails they are held again and the error raised.

        Returns:
            ``(digest, corrupt bytes)`` of rows replaced because their bytes did not hash
            to their digest, for the quarantine.

        Raises:
            StoreError: the objects could not be written.
        """
        with self._held_lock:
            held = self._held
            if held is None:
                return []  # not holding: every put was written at once
            self._held = None if release else {}
        if not held:
            return []
        batch = self.batch()
        try:
            for digest, data in held.items():
                batch.add(digest, data)
            batch.commit()
        except BaseException:
            if not release:  # kept for the next commit; released ones nothing records yet
                with self._held_lock:
                    self._held = {**held, **(self._held or {})}
            raise
        return batch.replaced

    def take_held(self) -> dict[str, bytes]:
        """Stop holding and return the held puts, unwritten (``{digest: bytes}``).

        For a worker process that hands its small objects to the process that commits
        them with the records naming them, instead of writing the pack itself.
        """
        with self._held_lock:
            held, self._held = self._held, None
        return held or {}

    def _held_bytes(self, digest: str) -> bytes | None:
        held = self._held
        return None if held is None else held.get(digest)

    def batch(self) -> PackBatch:
        """Start a batch of puts committed together (see :class:`PackBatch`)."""
        return PackBatch(self._db(), self.path)

    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """Return ``{digest: size}`` for those of ``digests`` in the pack (absent: left out).

        An object with a row is sized by its row, as :meth:`get` reads it from there:
        only the digests no row holds are looked up among the segments' objects (most
        objects are rows, and a lookup that finds nothing costs as much as one that does).
        """
        found = self._look_up(digests, _ROW_SIZES, _SEGMENT_SIZES)
        return {digest: int(size) for digest, size in found.items()}

    def existing(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` the pack holds (a bulk :meth:`exists`).

        :meth:`sizes` without the sizes: a row's digest is found in the digests' index
        alone, without reading the row it names.
        """
        return set(self._look_up(digests, _ROW_DIGESTS, _SEGMENT_DIGESTS))

    def _look_up(self, digests: Iterable[str], in_rows: str, in_segments: str) -> dict[str, Any]:
        """``{digest: value}`` for those of ``digests`` in the pack, as :meth:`sizes` finds them.

        ``in_rows`` and ``in_segments`` select ``digest, value`` for an ``IN`` list to
        fill, among the rows and among the segments' objects; an object held back for
        the current batch has its length as its value.

        Raises:
            StoreError: the pack could not be read.
        """
        wanted = list(dict.fromkeys(digests))
        found: dict[str, Any] = {}
        held = self._held
        if held:
            found.update((d, len(held[d])) for d in wanted if d in held)
            wanted = [d for d in wanted if d not in held]
        if self._no_pack_yet():
            return found
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            rows = self._select(in_rows, chunk)
            found.update(rows)
            rest = [d for d in chunk if d not in rows] if rows else chunk
            if rest:
                found.update(self._select(in_segments, rest))
        return found

    def _select(self, sql: str, digests: list[str]) -> dict[str, Any]:
        """``{digest: value}`` of the rows ``sql`` (an ``IN`` list to fill) selects for ``digests``.

        Raises:
            StoreError: the pack could not be read.
        """
        marks = ",".join("?" * len(digests))
        try:
            rows = self._db().execute(sql.format(marks=marks), digests).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"could not look up objects in {self.path}: {exc}") from exc
        return {str(digest): value for digest, value in rows}

    def get(self, digest: str) -> bytes | None:
        """Return the bytes stored under ``digest``, as read, unverified; None if absent.

        The caller hashes them: an object of a segment that is missing or too short
        comes back short (empty for a missing segment), which no digest matches.

        Raises:
            StoreError: the pack, or the segment holding the object, could not be read
                for another reason (permissions, no free descriptor), which may pass.
        """
        held = self._held_bytes(digest)
        if held is not None:
            return held
        found = self._stored(digest)
        return None if found is None else found[0]

    def _stored(self, digest: str) -> tuple[bytes, int] | None:
        """The object's bytes as read from its row or segment, and its size; None if absent.

        The bytes of a segment object come back short when the segment is missing or
        truncated (the size is what the index says). Held objects are not looked at.
        """
        if self._no_pack_yet():
            return None
        row = self._query(_DATA, digest)
        if row is not None:
            data = bytes(row[0])
            return data, len(data)
        found = self._segment_row(digest)
        if found is None:
            return None
        return read_slice(self.segments, digest, *found), found[2]

    def _no_pack_yet(self) -> bool:
        """Whether there is no pack to look in: none opened here, and no file."""
        return getattr(self._local, "conn", None) is None and not self.path.exists()

    def _bump_generation(self) -> None:
        """Change the store's generation: objects may have left (ADR 0032)."""
        bump_generation(os.fspath(self.path.parent))

    def location(self, digest: str) -> str:
        """Describe where the object's bytes are, for messages."""
        found = self._segment_row(digest)
        if found is None:
            return f"a row of {self.path}"
        return describe_slice(self.segments, *found)

    def _segment_row(self, digest: str) -> tuple[str, int, int] | None:
        row = self._query(
            "SELECT segment, start, size FROM segment_objects WHERE digest = ?", digest
        )
        return None if row is None else (str(row[0]), int(row[1]), int(row[2]))

    def size(self, digest: str) -> int | None:
        """Return the object's size, or None when absent."""
        held = self._held_bytes(digest)
        if held is not None:
            return len(held)
        if self._no_pack_yet():
            return None
        row = self._query(_SIZE, digest)
        return None if row is None else int(row[0])

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored under ``digest``."""
        return self.size(digest) is not None

    def _query(self, sql: str, digest: str) -> tuple[Any, ...] | None:
        try:
            row: tuple[Any, ...] | None = self._db().execute(sql, (digest,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"could not read object {digest} from {self.path}: {exc}") from exc
        return row

    def iter_digests(self) -> Iterator[str]:
        """Yield every digest in the pack."""
        if not self.path.exists():
            return
        try:
            rows = (
                self._db()
                .execute(
                    "SELECT digest FROM objects UNION SELECT digest FROM segment_objects ORDER BY 1"
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"could not list the objects of {self.path}: {exc}") from exc
        for (digest,) in rows:
            yield str(digest)

    def verify(self, digest: str) -> bool | None:
        """Re-hash one object: True if intact, False if corrupt, None if absent.

        A segment object is corrupt when its bytes do not hash to its digest, or when its
        segment is missing or too short to hold it: those bytes are lost either way.

        Raises:
            StoreError: the pack or a segment could not be read for another reason (which
                may pass); nothing is judged then.
        """
        held = self._held_bytes(digest)
        if held is not None:
            return digest_bytes(held) == digest
        found = self._stored(digest)
        if found is None:
            return None
        data, size = found
        return len(data) == size and digest_bytes(data) == digest

    def salvage(self, digest: str) -> bytes:
        """Return what can still be read of a (corrupt) object, for the quarantine."""
        row = self._query(_DATA, digest)
        if row is not None:
            return bytes(row[0])
        found = self._segment_row(digest)
        if found is None:
            return b""
        try:
            return read_slice(self.segments, digest, *found)
        except StoreError:
            return b""

    def segment_in_use(self, segment: str) -> bool:
        """Return whether any row points into ``segment`` (a file name in ``segments/``)."""
        try:
            row = (
                self._db()
                .execute("SELECT 1 FROM segment_objects WHERE segment = ? LIMIT 1", (segment,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"could not read the segment index of {self.path}: {exc}") from exc
        return row is not None

    def remove_corrupt(self, digest: str, data: bytes) -> None:
        """Delete a corrupt object whose bytes read back as ``data``; only quarantine uses this.

        A row is deleted only while it still holds those bytes (or, in a segment, still
        points where they were read): a writer may have repaired it meanwhile.
        """
        try:
            conn = self._db()
            # Before each deletion too: a process killed right after it (autocommit) has
            # changed the generation already (ADR 0032).
            self._bump_generation()
            if conn.execute(
                "DELETE FROM objects WHERE digest = ? AND data = ?", (digest, data)
            ).rowcount:
                self._bump_generation()  # an object left (ADR 0032)
                return
            found = self._segment_row(digest)
            if found is not None and read_slice(self.segments, digest, *found) == data:
                conn.execute(
                    "DELETE FROM segment_objects WHERE digest = ? AND segment = ? AND start = ?",
                    (digest, found[0], found[1]),
                )
                self._bump_generation()
        except sqlite3.Error as exc:
            raise StoreError(f"could not remove object {digest} from {self.path}: {exc}") from exc

    def remove(self, digest: str) -> None:
        """Delete a (corrupt) object; only quarantine uses this."""
        self._bump_generation()  # before, as in remove_corrupt
        try:
            self._db().execute("DELETE FROM objects WHERE digest = ?", (digest,))
            self._db().execute("DELETE FROM segment_objects WHERE digest = ?", (digest,))
        except sqlite3.Error as exc:
            raise StoreError(f"could not remove object {digest} from {self.path}: {exc}") from exc
        self._bump_generation()  # an object left the store (ADR 0032)

    def clean_segments(self, *, older_than: float) -> int:
        """Remove segment files of killed writers; return how many were removed.

        A segment is removed when it was modified ``older_than`` seconds ago or more, its
        writer's lock can be taken (no writer holds it open) and, checked once the lock
        is held, no row points into it: a writer commits its rows before it lets go.
        """
        return clean_segments(self.segments, older_than=older_than, in_use=self.segment_in_use)

    def sync(self) -> None:
        """Make every committed object durable on disk, whoever committed it.

        Committed transactions live in the write-ahead log until a checkpoint copies them
        into the database file, and SQLite's recovery replays every whole transaction the
        log holds; so flushing the log file (and, once per log file, its folder entry) is
        enough. A checkpoint would cost more: it writes the pages again, syncs the
        database file too, and the next commit pays for restarting the log (measured:
        about 4 ms for the checkpoint and 4 ms for that commit, against 1.3 ms for the
        flush). Where the log cannot be flushed this way (no log file, or a platform that
        refuses), the pack is checkpointed instead.

        Held objects are not written here: the store commits them first.
        """
        if not self.path.exists():
            return
        if self._flush_log():
            return
        # A checkpoint works on the file, so any connection will do; this thread's may
        # not exist yet when other threads did the writing.
        try:
            self._db().execute("PRAGMA wal_checkpoint(FULL)")
        except sqlite3.Error as exc:
            raise StoreError(f"could not make {self.path} durable: {exc}") from exc

    def _flush_log(self) -> bool:
        """Fsync the write-ahead log (and its folder entry when new); False when it cannot."""
        log = f"{self.path}-wal"
        try:
            fd = os.open(log, os.O_RDWR | getattr(os, "O_BINARY", 0))
        except OSError:
            return False  # no log (nothing written since the last one was removed)
        try:
            before = os.fstat(fd)
            state = (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns)
            if state == self._synced_log:
                return True  # unchanged since this pack last flushed it
            os.fsync(fd)
        except OSError:
            return False
        finally:
            os.close(fd)
        if self._synced_log is None or self._synced_log[:2] != state[:2]:
            # A log file made since the last sync is durable only once its name is.
            fsync_dir_best_effort(os.fspath(self.path.parent))
        self._synced_log = state
        return True

    def close(self) -> None:
        """Close every connection this pack opened."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()


def _add_stored_at(conn: sqlite3.Connection) -> None:
    """Give a pack made before ``objects.stored_at`` the column (its old rows: NULL)."""
    columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(objects)")}
    if "stored_at" in columns:
        return
    try:
        conn.execute("ALTER TABLE objects ADD COLUMN stored_at INTEGER")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):  # another process added it meanwhile
            raise


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL needs a moment of exclusive access; two processes opening a new
    # pack at once can see "database is locked" here even with a busy timeout.
    for attempt in range(50):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.02 * (attempt + 1))
