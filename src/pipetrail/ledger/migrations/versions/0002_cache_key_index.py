"""Cache lookups by key, newest first, from the index alone.

Revision ID: 0002
Revises: 0001

A cache lookup asks for the newest completed or cached step run with a key. With an index
on ``cache_key`` only, the database sorts every step run that shares the key, and each
cached re-run adds one; the index on ``(cache_key, last_seq)`` hands them out in order.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_step_runs_cache_key_seq", "step_runs", ["cache_key", "last_seq"])
    op.drop_index("ix_step_runs_cache_key", table_name="step_runs")


def downgrade() -> None:
    op.create_index("ix_step_runs_cache_key", "step_runs", ["cache_key"])
    op.drop_index("ix_step_runs_cache_key_seq", table_name="step_runs")
