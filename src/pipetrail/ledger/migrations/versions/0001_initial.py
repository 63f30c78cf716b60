"""Initial schema: the events ledger, its head, and the run/step/artifact projections.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from pipetrail.ledger import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = (
    schema.events,
    schema.ledger_head,
    schema.runs,
    schema.step_runs,
    schema.artifacts,
    schema.step_run_io,
    schema.sources,
)


def upgrade() -> None:
    bind = op.get_bind()
    # The schema module *is* revision 0001; later revisions use explicit op.* calls.
    for table in _TABLES:
        table.create(bind, checkfirst=True)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind, checkfirst=True)
