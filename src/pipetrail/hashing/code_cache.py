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

import json
import logging
import sqlite3
import struct
import sys
from typing import TYPE_CHECKING

from pipetrail.core.cache_db import CacheDatabase
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


class CodeCache(CacheDatabase):
    """The code-analysis cache in one SQLite file; safe across threads and processes.

    Args:
        path: the database file (the project uses ``.pipetrail/cache/code.db``); its
            folder is created when needed.
        timeout: seconds a write waits for another process's write before it is skipped.

    New analyses are buffered by :meth:`put` and written by :meth:`flush` (also called by
    :meth:`close`), in one transaction.
    """

    def __init__(self, path: Path, *, timeout: float = 2.0) -> None:
        super().__init__(
            path,
            timeout=timeout,
            what="code cache",
            table="units",
            schema=_SCHEMA,
            version=CODE_CACHE_SCHEMA_VERSION,
        )
        self._env = cache_env()
        self._pending: dict[tuple[str, str], _Row] = {}

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

            def write(conn: sqlite3.Connection) -> None:
                conn.executemany(
                    "INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                )

            return self._write_locked(write)
