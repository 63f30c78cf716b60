"""A batch of pack writes committed in one transaction (see :mod:`pipetrail.store.pack`).

Holds the small objects a ``put_files`` batch read and the index rows of the objects it
appended to a segment file (ADR 0009), and writes them all in one SQLite transaction. A
row whose digest was taken already by other bytes (a corrupt row) is replaced, and its
bytes are kept in :attr:`PackBatch.replaced` for the store's quarantine.

Imports only the standard library, ``pipetrail.hashing`` and ``pipetrail.errors``.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

from pipetrail.errors import StoreError
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["INSERT_OBJECT", "PackBatch", "stored_at"]

# The third value is the time of the insert (Unix seconds, :func:`stored_at`), for
# garbage collection's grace period (ADR 0014). Bound rather than computed by SQLite's
# ``strftime('%s', 'now')``, which formats and parses a date for every row.
INSERT_OBJECT = "INSERT OR IGNORE INTO objects (digest, data, stored_at) VALUES (?, ?, ?)"
_INSERT_SEGMENT = (
    "INSERT OR IGNORE INTO segment_objects (digest, segment, start, size) VALUES (?, ?, ?, ?)"
)
# A batch writes its rows once they hold this many bytes, so memory stays bounded.
_BATCH_SPILL_BYTES = 32 * 1024 * 1024
_LOOKUP_CHUNK = 500  # digests per IN (...) lookup, below SQLite's old 999-parameter limit


def stored_at() -> int:
    """The ``stored_at`` of a row inserted now: Unix seconds, rounded down."""
    return int(time.time())


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
        self._segment_rows: list[tuple[str, str, int, int]] = []
        self._bytes = 0
        self._open = False
        # (digest, corrupt bytes) of rows this batch replaced; valid once committed.
        self.replaced: list[tuple[str, bytes]] = []

    def __len__(self) -> int:
        return len(self._rows) + len(self._segment_rows)

    def add(self, digest: str, data: bytes) -> None:
        """Queue ``data`` under ``digest`` (the caller computed it)."""
        self._rows.append((digest, data))
        self._bytes += len(data)
        if self._bytes >= _BATCH_SPILL_BYTES:
            self._write()

    def add_segment(self, digest: str, segment: str, start: int, size: int) -> None:
        """Queue the index row of an object appended to a (durable) segment file."""
        self._segment_rows.append((digest, segment, start, size))

    def _write(self) -> None:
        rows, self._rows, self._bytes = self._rows, [], 0
        segment_rows, self._segment_rows = self._segment_rows, []
        try:
            if not self._open:
                self._conn.execute("BEGIN IMMEDIATE")
                self._open = True
            now = stored_at()
            inserted = self._conn.executemany(
                INSERT_OBJECT, [(digest, data, now) for digest, data in rows]
            ).rowcount
            if 0 <= inserted < len(rows):
                self._repair(rows)  # some digests were stored already: are they intact?
            if segment_rows:
                self._conn.executemany(_INSERT_SEGMENT, segment_rows)
        except sqlite3.Error as exc:
            raise StoreError(
                f"could not write {len(rows)} objects to {self._path}: {exc}; check that the "
                "store folder is writable and that its disk has free space"
            ) from exc

    def _repair(self, rows: list[tuple[str, bytes]]) -> None:
        """Replace the rows of ``rows``' digests that hold bytes not hashing to the digest."""
        wanted = dict(rows)
        digests = list(wanted)
        for start in range(0, len(digests), _LOOKUP_CHUNK):
            chunk = digests[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            found = self._conn.execute(
                f"SELECT digest, data FROM objects WHERE digest IN ({marks})",  # noqa: S608  # only placeholders are interpolated
                chunk,
            ).fetchall()
            for digest, data in found:
                held = bytes(data)
                if held != wanted[digest] and digest_bytes(held) != digest:
                    self._conn.execute(
                        "UPDATE objects SET data = ? WHERE digest = ?", (wanted[digest], digest)
                    )
                    self.replaced.append((str(digest), held))

    def commit(self) -> None:
        """Write and commit every queued row (one transaction); a no-op when empty."""
        if not self._rows and not self._segment_rows and not self._open:
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
        self._rows, self._segment_rows, self._bytes = [], [], 0
        self.replaced = []
        if self._open:
            self._open = False
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StoreError(f"could not roll back a batch in {self._path}: {exc}") from exc
