"""A cache kept in one SQLite file, shared by threads (a lock) and processes (WAL).

The base of the project's caches (the stat cache, the code-analysis cache). A cache may
lose its last write, never its consistency, and never fails its caller: a file that is
not a database, or a corrupt one, is deleted and made again at the next write; a write
that waits longer than the timeout for another process is skipped. Only the standard
library is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["CacheDatabase"]

_log = logging.getLogger(__name__)

# SQLite result codes: busy, and the two that mean the file itself is unusable.
_SQLITE_BUSY = 5
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def _has_code(exc: sqlite3.Error, *codes: int) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # extended code; the low byte is primary
    return code is not None and code & 0xFF in codes


class CacheDatabase:
    """One SQLite cache file holding one table.

    Args:
        path: the database file; its folder is created when needed.
        timeout: seconds a write waits for another process's write before it is skipped.
        what: the cache's name in log lines (``stat cache``).
        table: the table the file holds.
        schema: the statement that creates ``table``.
        version: the schema version; a file at another version drops ``table`` and starts
            over.
    """

    def __init__(
        self, path: Path, *, timeout: float, what: str, table: str, schema: str, version: int
    ) -> None:
        self.path = path
        self._timeout = timeout
        self._what, self._table, self._schema, self._version = what, table, schema, version
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({os.fspath(self.path)!r})"

    def _close_locked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None

    def _connect_locked(self) -> sqlite3.Connection:
        # A connection must not cross a fork: the child opens its own.
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn = None
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(
            os.fspath(self.path),
            timeout=self._timeout,
            isolation_level=None,  # explicit BEGIN/COMMIT: one transaction per batch
            check_same_thread=False,  # guarded by self._lock
        )
        try:
            self._enable_wal(conn)
            # A cache may lose its last transaction on power loss, never its consistency.
            conn.execute("PRAGMA synchronous=NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != self._version:
                conn.execute("BEGIN IMMEDIATE")
                if conn.execute("PRAGMA user_version").fetchone()[0] != self._version:
                    conn.execute(f"DROP TABLE IF EXISTS {self._table}")  # another layout
                    conn.execute(self._schema)
                    conn.execute(f"PRAGMA user_version={self._version}")
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL while another process creates the file fails with SQLITE_BUSY
        # at once, without the busy handler (measured: 7 of 40 racing pairs); retry it.
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if not _has_code(exc, _SQLITE_BUSY) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)
            else:
                return

    def _reset_locked(self) -> None:
        """Delete an unusable database file (and its WAL) so the next connect recreates it."""
        # A concurrent process still using the old file keeps working on the unlinked copy;
        # at worst its next write is lost, which a cache may afford.
        self._close_locked()
        base = os.fspath(self.path)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(base + suffix)

    def _write_locked(self, write: Callable[[sqlite3.Connection], None]) -> bool:
        """Run ``write`` in one ``BEGIN IMMEDIATE`` transaction; whether it was made.

        A corrupt file is recreated and the write tried once more; any other failure
        skips the write (logged at debug level). The caller holds ``self._lock``.
        """
        for attempt in range(2):
            try:
                conn = self._connect_locked()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    write(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if attempt == 0 and _has_code(exc, _SQLITE_CORRUPT, _SQLITE_NOTADB):
                    _log.warning("%s %s is corrupt; recreating it: %s", self._what, self.path, exc)
                    self._reset_locked()
                    continue
                _log.debug("%s %s not updated: %s", self._what, self.path, exc)
                return False
            except (OSError, UnicodeEncodeError) as exc:  # a path sqlite cannot encode
                _log.debug("%s %s not updated: %s", self._what, self.path, exc)
                return False
            return True
        return False
