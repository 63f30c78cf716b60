"""The Merkle tree's nodes, stored beside the events.

Revision ID: 0006
Revises: 0005

One row per complete subtree of the tree over the events (docs/adr/0020). The rows of a
ledger that already holds events are built from them when it is next opened
(:func:`pipetrail.ledger.merkle_store.ensure_tree`), in batches, under the write lock.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("merkle_nodes")
