"""A pack of small objects: many tiny blobs in one SQLite file, still named by digest.

Pipelines produce many small objects (scalars, small dicts, metric summaries, logs, step
sources). As files, each costs a file creation, an fsync and a rename, which on a
journaling filesystem is most of the work of a trivial step. The pack keeps objects up
to :data:`SMALL_OBJECT_LIMIT` bytes as rows of ``objects(digest, data)`` in
``objects/pack.db``.

Guarantees, the same as the loose-file layout's against a crash or a killed writer:

* a write is one SQLite transaction, so an object is either wholly there or absent; a
  :class:`PackBatch` (``LocalStore.put_files``) commits many in one, all or none;
* objects are immutable (``INSERT OR IGNORE``); a digest always names the same bytes;
* reads re-verify on request (:meth:`SmallObjectPack.verify`) and a corrupt row is
  moved out (to the store's quarantine folder) like a corrupt file.

Durability: the pack runs in WAL mode with ``synchronous=NORMAL``, like the ledger: a
commit is durable at the next checkpoint, which :meth:`SmallObjectPack.sync` forces (the
runner syncs the store before a run's record is final). See docs/adr/0006-small-object-pack.md
and docs/adr/0007-source-files-in-the-pack.md.

Imports only the standard library and pipetrail.hashing / pipetrail.errors.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.errors import StoreError
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["SMALL_OBJECT_LIMIT", "PackBatch", "SmallObjectPack"]

# Objects up to this size go to the pack. 16 KiB keeps rows on a few pages while
# covering scalars, small JSON documents, logs and source texts.
SMALL_OBJECT_LIMIT = 16 * 1024

_INSERT = "INSERT OR IGNORE INTO objects (digest, data) VALUES (?, ?)"
# Digests per ``IN (...)`` lookup: below SQLite's historical limit of 999 parameters.
_LOOKUP_CHUNK = 500
# A batch writes its rows once they hold this many bytes, so memory stays bounded.
_BATCH_SPILL_BYTES = 32 * 1024 * 1024
# A rowid table, the digest in its own index: rows up to ~4 KiB stay on their leaf page.
# Packs made before kept ``WITHOUT ROWID``, which stores each row inside the digest
# B-tree: rows above ~1 KiB overflow to a page of their own and every page split moves
# whole rows (100,000 rows of 1 KiB: 6.9 s and 469 MB, against 1.3 s and 146 MB here).
# Both layouts answer the same SQL, so old packs keep working as they are.
_SCHEMA = "CREATE TABLE IF NOT EXISTS objects (digest TEXT PRIMARY KEY, data BLOB NOT NULL)"


class SmallObjectPack:
    """Small immutable blobs in one SQLite file; one connection per thread.

    Args:
        path: the pack file (created with its folder if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    str(self.path), timeout=60, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA busy_timeout=60000")
                _set_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(
                    f"the small-object pack {self.path} could not be opened ({exc}); check that "
                    "the store folder is writable and not on a network filesystem"
                ) from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def put(self, digest: str, data: bytes) -> None:
        """Store ``data`` under ``digest`` (the caller computed it); a no-op if present."""
        try:
            self._db().execute(_INSERT, (digest, data))
        except sqlite3.Error as exc:
            raise StoreError(f"could not write object {digest} to {self.path}: {exc}") from exc

    def batch(self) -> PackBatch:
        """Start a batch of puts committed together (see :class:`PackBatch`)."""
        return PackBatch(self._db(), self.path)

    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """Return ``{digest: size}`` for those of ``digests`` in the pack (absent: left out)."""
        if not self.path.exists() and getattr(self._local, "conn", None) is None:
            return {}
        wanted = list(dict.fromkeys(digests))
        found: dict[str, int] = {}
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT digest, length(data) FROM objects WHERE digest IN ({marks})"  # noqa: S608  # only placeholders are interpolated
            try:
                rows = self._db().execute(sql, chunk).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"could not look up objects in {self.path}: {exc}") from exc
            found.update((str(digest), int(size)) for digest, size in rows)
        return found

    def get(self, digest: str) -> bytes | None:
        """Return the bytes stored under ``digest``, or None."""
        if not self.path.exists() and getattr(self._local, "conn", None) is None:
            return None
        row = self._query("SELECT data FROM objects WHERE digest = ?", digest)
        return None if row is None else bytes(row[0])

    def size(self, digest: str) -> int | None:
        """Return the object's size, or None when absent."""
        if not self.path.exists() and getattr(self._local, "conn", None) is None:
            return None
        row = self._query("SELECT length(data) FROM objects WHERE digest = ?", digest)
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
            rows = self._db().execute("SELECT digest FROM objects ORDER BY digest").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"could not list the objects of {self.path}: {exc}") from exc
        for (digest,) in rows:
            yield str(digest)

    def verify(self, digest: str) -> bool | None:
        """Re-hash one object: True if intact, False if corrupt, None if absent."""
        data = self.get(digest)
        if data is None:
            return None
        return digest_bytes(data) == digest

    def remove(self, digest: str) -> None:
        """Delete a (corrupt) object; only quarantine uses this."""
        try:
            self._db().execute("DELETE FROM objects WHERE digest = ?", (digest,))
        except sqlite3.Error as exc:
            raise StoreError(f"could not remove object {digest} from {self.path}: {exc}") from exc

    def sync(self) -> None:
        """Checkpoint the pack so every committed object is durable on disk."""
        if not self.path.exists():
            return
        # A checkpoint works on the file, so any connection will do; this thread's may
        # not exist yet when other threads did the writing.
        try:
            self._db().execute("PRAGMA wal_checkpoint(FULL)")
        except sqlite3.Error as exc:
            raise StoreError(f"could not make {self.path} durable: {exc}") from exc

    def close(self) -> None:
        """Close every connection this pack opened."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()


class PackBatch:
    """Puts gathered and committed in one transaction: all of them stored, or none.

    Rows wait in memory and are written at :meth:`commit`; once they hold 32 MiB the
    transaction is opened (``BEGIN IMMEDIATE``, holding the pack's write lock until
    :meth:`commit` or :meth:`rollback`) and they are written early, so memory stays
    bounded. Use it from the thread that created it: it stays on that thread's connection.

    Args:
        conn: the pack connection to write with.
        path: the pack file, named in errors.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn, self._path = conn, path
        self._rows: list[tuple[str, bytes]] = []
        self._bytes = 0
        self._open = False

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, digest: str, data: bytes) -> None:
        """Queue ``data`` under ``digest`` (the caller computed it)."""
        self._rows.append((digest, data))
        self._bytes += len(data)
        if self._bytes >= _BATCH_SPILL_BYTES:
            self._write()

    def _write(self) -> None:
        rows, self._rows, self._bytes = self._rows, [], 0
        try:
            if not self._open:
                self._conn.execute("BEGIN IMMEDIATE")
                self._open = True
            self._conn.executemany(_INSERT, rows)
        except sqlite3.Error as exc:
            raise StoreError(
                f"could not write {len(rows)} objects to {self._path}: {exc}; check that the "
                "store folder is writable and that its disk has free space"
            ) from exc

    def commit(self) -> None:
        """Write and commit every queued row (one transaction); a no-op when empty."""
        if not self._rows and not self._open:
            return
        try:
            self._write()
            self._conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        self._open = False

    def rollback(self) -> None:
        """Drop every queued row; nothing of the batch is stored."""
        self._rows, self._bytes = [], 0
        if self._open:
            self._open = False
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StoreError(f"could not roll back a batch in {self._path}: {exc}") from exc


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL needs a moment of exclusive access; two processes opening a new
    # pack at once can see "database is locked" here even with a busy timeout.
    import time

    for attempt in range(50):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.02 * (attempt + 1))
