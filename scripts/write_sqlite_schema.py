"""Write src/pipetrail/ledger/sqlite_schema.py's statements file again, from the migrations.

Run it after adding a migration: ``.venv/bin/python scripts/write_sqlite_schema.py``.
The contract tests fail until the file is what the migrations make.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipetrail.ledger.sqlite_schema import SCHEMA_FILE, render_from_migrations


def main() -> None:
    """Render the statements from a new database the migrations make, and store them."""
    with tempfile.TemporaryDirectory() as folder:
        text = render_from_migrations(Path(folder))
    SCHEMA_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")


if __name__ == "__main__":
    main()
