"""Alembic environment: always run online, on the connection pipetrail passes in."""

from __future__ import annotations

from alembic import context

from pipetrail.ledger.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
