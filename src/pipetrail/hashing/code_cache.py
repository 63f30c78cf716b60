"""The persistent code-analysis cache: what code fingerprints read from source, across runs.

Owns :class:`CodeCache`, a small SQLite file (stdlib ``sqlite3``, WAL mode) the project
keeps at ``.pipetrail/cache/code.db``, beside the stat cache. One row per unit of code
(a function's code object, a class, a module), keyed by its file's absolute path and the
unit's name::

    (file, unit) -> sig, env, stamp, cached_ns, body, check

``sig`` is the file's ``(size, mtime_ns, ctime_ns, inode, device)`` when it was read;
``env`` names what else decides an analysis (the fingerprint format, this cache's
format, pipetrail's version, the Python version and implementation); ``body`` is the
:class:`~pipetrail.hashing.code_analysis.Analysis` as JSON; ``check`` is a digest over all
of the row. A row is used only when its file's signature and ``env`` equal the current
ones, its file was last changed at least
:data:`~pipetrail.hashing.code_analysis.RACY_WINDOW_NS` before it was read, and its
``check`` matches (a row edited by hand, or torn, is ignored and replaced).

It is a cache: any error reading it (missing, locked, corrupt, another schema) means
"miss", never a failure, and writes that cannot be made are skipped. A file that is not a
database, or a corrupt one, is deleted and recreated at the next write. Concurrent
processes are safe: SQLite's locking and WAL keep the file consistent, each write is one
``BEGIN IMMEDIATE`` transaction, and a writer that waits longer than the timeout gives up.

Imports only ``pipetrail.hashing`` modules, ``pipetrail.core.version`` and the standard
library.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING

from pipetrail.core.version import VERSION
from pipetrail.hashing.code_analysis import RACY_WINDOW_NS, Analysis
from pipetrail.hashing.digest import digest_bytes

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CODE_CACHE_SCHEMA_VERSION", "CodeCache", "cache_env"]

_log = logging.getLogger(__name__)

CODE_CACHE_SCHEMA_VERSION = 1
# Bump when what an analysis holds, or how it is computed, changes.
_ANALYSIS_FORMAT = 1
_FINGERPRINT_FORMAT = "pt-code2"
_SIG = struct.Struct("<qqqQQ")
_PENDING_LIMIT = 256

_SQLITE_BUSY = 5
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_SCHEMA = """
CREATE TABLE IF NOT EXISTS units (
    file TEXT NOT NULL,
    unit TEXT NOT NULL,
    sig BLOB NOT NULL,
    env TEXT NOT NULL,
    stamp INTEGER NOT NULL,
    cached_ns INTEGER NOT NULL,
    body BLOB NOT NULL,
    "check" TEXT NOT NULL,
    PRIMARY KEY (file, unit)
) WITHOUT ROWID
"""


def cache_env() -> str:
    """Return what, besides a file's text, decides an analysis (a row's ``env``)."""
    impl = sys.implementation
    return (
        f"{_FINGERPRINT_FORMAT}/a{_ANALYSIS_FORMAT}/pipetrail-{VERSION}/"
        f"{impl.name}-{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"
    )


def _check(file: str, unit: str, sig: bytes, env: str, stamp: int, cached: int, body: bytes) -> str:
    head = json.dumps([file, unit, sig.hex(), env, stamp, cached]).encode("utf-8")
    return digest_bytes(head + b"\0" + body)


# file, unit, sig, env, stamp, cached_ns, body, check: one row as stored.
_Row = tuple[str, str, bytes, str, int, int, bytes, str]


def _has_code(exc: sqlite3.Error, *codes: int) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in codes


class CodeCache:
    """The code-analysis cache in one SQLite file; safe across threads and processes.

    Args:
        path: the database file (the project uses ``.pipetrail/cache/code.db``); its
            folder is created when needed.
        timeout: seconds a write waits for another process's write before it is skipped.

    New analyses are buffered by :meth:`put` and written by :meth:`flush` (also called by
    :meth:`close`), in one transaction.
    """

    def __init__(self, path: Path, *, timeout: float = 2.0) -> None:
        self.path = path
        self._timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._env = cache_env()
        self._pending: dict[tuple[str, str], _Row] = {}

    def __repr__(self) -> str:
        return f"CodeCache({os.fspath(self.path)!r})"

    def __enter__(self) -> CodeCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write what is pending and close the connection (reopened on next use)."""
        self.flush()
        with self._lock:
            self._close_locked()

    # -- reading ---------------------------------------------------------------------
    def get(self, file: str, unit: str, sig: tuple[int, ...]) -> Analysis | None:
        """Return the remembered analysis of ``unit`` in ``file`` at signature ``sig``.

        None when there is none that may be trusted (see the module docstring), or the
        cache cannot be read.
        """
        packed = _SIG.pack(*sig)
        with self._lock:
            pending = self._pending.get((file, unit))
            if pending is not None:
                return self._trusted(pending, packed)
            try:
                row = (
                    self._connect_locked()
                    .execute(
                        'SELECT sig, env, stamp, cached_ns, body, "check" FROM units '
                        "WHERE file = ? AND unit = ?",
                        (file, unit),
                    )
                    .fetchone()
                )
            except (sqlite3.Error, OSError, UnicodeEncodeError) as exc:
                _log.debug("code cache %s unreadable, treated as empty: %s", self.path, exc)
                return None
        if row is None:
            return None
        return self._trusted((file, unit, *row), packed)

    def _trusted(self, row: tuple[object, ...], packed: bytes) -> Analysis | None:
        """Return a row's analysis if every check passes (see the module docstring)."""
        file, unit, got_sig, env, stamp, cached_ns, body, check = row
        if not isinstance(file, str) or not isinstance(unit, str):
            return None
        if not (isinstance(got_sig, bytes) and isinstance(body, bytes)):
            return None
        if got_sig != packed or env != self._env:
            return None  # the file changed, or another version wrote it
        if not (isinstance(stamp, int) and isinstance(cached_ns, int)):
            return None
        if stamp >= cached_ns - RACY_WINDOW_NS:
            return None  # racy: the file may have changed within its timestamp tick
        if check != _check(file, unit, got_sig, env, stamp, cached_ns, body):
            _log.debug("code cache %s: a row for %s fails its check; ignored", self.path, file)
            return None
        try:
            return Analysis.from_json(json.loads(body))
        except (ValueError, IndexError, TypeError) as exc:
            _log.debug("code cache %s: a row for %s is malformed: %s", self.path, file, exc)
            return None

    # -- writing ---------------------------------------------------------------------
    def put(
        self,
        file: str,
        unit: str,
        sig: tuple[int, ...],
        stamp: int,
        cached_ns: int,
        analysis: Analysis,
    ) -> None:
        """Remember an analysis (written at the next :meth:`flush`).

        Args:
            file: the unit's file, absolute.
            unit: the unit's name in that file.
            sig: the file's signature, taken before it was read.
            stamp: the newer of the file's mtime and ctime, in nanoseconds.
            cached_ns: ``time.time_ns()`` taken before the file was stat-ed.
            analysis: what was read.
        """
        packed = _SIG.pack(*sig)
        body = json.dumps(analysis.to_json(), separators=(",", ":")).encode("utf-8")
        check = _check(file, unit, packed, self._env, stamp, cached_ns, body)
        row = (file, unit, packed, self._env, stamp, cached_ns, body, check)
        with self._lock:
            self._pending[file, unit] = row
            full = len(self._pending) >= _PENDING_LIMIT
        if full:
            self.flush()

    def flush(self) -> bool:
        """Write the pending analyses in one transaction; return whether it was made."""
        with self._lock:
            rows, self._pending = list(self._pending.values()), {}
            if not rows:
                return True
            for attempt in range(2):
                try:
                    self._write_locked(rows)
                except sqlite3.Error as exc:
                    if attempt == 0 and _has_code(exc, _SQLITE_CORRUPT, _SQLITE_NOTADB):
                        _log.warning("code cache %s is corrupt; recreating it: %s", self.path, exc)
                        self._reset_locked()
                        continue
                    _log.debug("code cache %s not updated: %s", self.path, exc)
                    return False
                except (OSError, UnicodeEncodeError) as exc:
                    _log.debug("code cache %s not updated: %s", self.path, exc)
                    return False
                return True
        return False

    def _write_locked(self, rows: list[_Row]) -> None:
        conn = self._connect_locked()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    # -- connection ------------------------------------------------------------------
    def _close_locked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None

    def _connect_locked(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn = None
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(
            os.fspath(self.path),
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,  # guarded by self._lock
        )
        try:
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != CODE_CACHE_SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                if conn.execute("PRAGMA user_version").fetchone()[0] != CODE_CACHE_SCHEMA_VERSION:
                    conn.execute("DROP TABLE IF EXISTS units")  # another layout: start over
                    conn.execute(_SCHEMA)
                    conn.execute(f"PRAGMA user_version={CODE_CACHE_SCHEMA_VERSION}")
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
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
        self._close_locked()
        base = os.fspath(self.path)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(base + suffix)
