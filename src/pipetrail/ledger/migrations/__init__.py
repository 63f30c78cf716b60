"""Alembic migrations of the metadata schema (run by ``pipetrail.ledger.migrate``)."""
