"""Reading a project's SQLite ledger file directly, as tests of the stored bytes do."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def stored_events(project_root: Path, *kinds: str) -> list[tuple[int, str, str]]:
    """``(seq, kind, payload text)`` of the project's events in order (only ``kinds``, if given)."""
    query = "SELECT seq, kind, payload FROM events"
    if kinds:
        query += f" WHERE kind IN ({', '.join('?' * len(kinds))})"
    connection = sqlite3.connect(project_root / ".pipetrail" / "ledger.db")
    try:
        return list(connection.execute(query + " ORDER BY seq", kinds))
    finally:
        connection.close()
