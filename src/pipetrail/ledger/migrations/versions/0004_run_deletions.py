"""Runs marked deleted: the ``run_deletions`` projection of ``run.deleted`` events.

Revision ID: 0004
Revises: 0003

A deleted run keeps its events and its rows in ``runs`` and ``step_runs`` (the record
stays auditable); this table says which runs were deleted, when, by whom and why, so
listings, ``latest``, cache lookups and garbage collection can leave them out. Written
out in full, like 0001, so later schema changes never change what this revision creates.
The table is empty after the upgrade: no ledger written before it holds a deletion.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_deletions",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("deleted_by", sa.String(200), nullable=False),
        sa.Column("deleted_at", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_deletions")
