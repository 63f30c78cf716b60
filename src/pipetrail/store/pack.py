"""A pack of small objects: many tiny blobs in one SQLite file, still named by digest.

Pipelines produce many small objects (scalars, small dicts, metric summaries, logs, step
sources). As files, each costs a file creation, an fsync and a rename, which on a
journaling filesystem is most of the work of a trivial step. The pack keeps objects up
to :data:`SMALL_OBJECT_LIMIT` bytes as rows of ``objects(digest, data)`` in
``objects/pack.db``.

Guarantees, the same as the loose-file layout's against a crash or a killed writer:

* a write is one SQLite transaction, so an object is either wholly there or absent;
* objects are immutable (``INSERT OR IGNORE``); a digest always names the same bytes;
* reads re-verify on request (:meth:`SmallObjectPack.verify`) and a corrupt row is
  moved out (to the store's quarantine folder) like a corrupt file.

Durability: the pack runs in WAL mode with ``synchronous=NORMAL``, like the ledger: a
commit is durable at the next checkpoint, which :meth:`SmallObjectPack.sync` forces (the
runner syncs the store before a run's record is final). See docs/adr/0006-small-object-pack.md.

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
    from collections.abc import Iterator

__all__ = ["SMALL_OBJECT_LIMIT", "SmallObjectPack"]

# Objects up to this size go to the pack. 16 KiB keeps rows on a few pages while
# covering scalars, small JSON documents, logs and source texts.
SMALL_OBJECT_LIMIT = 16 * 1024

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (digest TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID"
)


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
            self._db().execute(
                "INSERT OR IGNORE INTO objects (digest, data) VALUES (?, ?)", (digest, data)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"could not write object {digest} to {self.path}: {exc}") from exc

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
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(FULL)")
        except sqlite3.Error as exc:
            raise StoreError(f"could not make {self.path} durable: {exc}") from exc

    def close(self) -> None:
        """Close every connection this pack opened."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()


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
