"""Schema creation and migration with Alembic, skipped cheaply when already current.

Opening a store compares the ``alembic_version`` row with :data:`HEAD_REVISION` in one
query; Alembic itself (slow to import) is loaded only when an upgrade is needed, and
SQLAlchemy only when this module's functions run (importing the module is free). A test
checks that :data:`HEAD_REVISION` equals the head of the migration scripts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.errors import LedgerError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = ["HEAD_REVISION", "current_revision", "ensure_schema", "upgrade"]

HEAD_REVISION = "0010"
SCRIPT_LOCATION = "pipetrail.ledger:migrations"
MIGRATION_LOCK_KEY = 0x6D696772  # "migr": PostgreSQL advisory lock for schema changes


def current_revision(engine: Engine) -> str | None:
    """Return the store's schema revision, or None for an empty database."""
    with engine.connect() as conn:
        return _revision_on(conn)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision``, under the ledger's write lock.

    Two processes opening a new store at once are serialized: the second finds the
    schema current once it gets the lock and does nothing.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    from sqlalchemy import text

    with engine.execution_options(pipetrail_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        if revision == "head" and _revision_on(conn) == HEAD_REVISION:
            return
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def _revision_on(conn: Connection) -> str | None:
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


def ensure_schema(engine: Engine) -> None:
    """Create or migrate the schema so it is at :data:`HEAD_REVISION`.

    Raises:
        LedgerError: if the store was written by a newer pipetrail.
    """
    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        return
    # Every revision up to the head (numbered 0001, 0002...) can be migrated from.
    known = {f"{n:04d}" for n in range(1, int(HEAD_REVISION) + 1)}
    if revision is not None and revision not in known:
        raise LedgerError(
            f"the metadata store is at schema revision {revision!r}, which this pipetrail "
            f"does not know (it expects {HEAD_REVISION!r}); upgrade pipetrail"
        )
    upgrade(engine)
