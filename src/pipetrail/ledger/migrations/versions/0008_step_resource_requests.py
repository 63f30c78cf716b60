"""What each step run asked for: ``step_runs.resource_requests``.

Revision ID: 0008
Revises: 0007

Step events carry ``resource_requests`` (``{"cpu": 2, "memory": 4294967296}``) when the
step declares resources (docs/adr/0026); the projection now keeps them in a column of
their own, next to ``resources`` (what was used), so ``pipetrail show``, the API and the
resource reads need no event. Existing ledgers are back-filled from their step events
exactly as replaying them would give: each step run takes the value of its latest step
event, and step runs that asked for nothing stay NULL.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from pipetrail.hashing import canonical_json

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Only events whose text names the key are read (a cheap filter; each is then parsed).
_STEP_EVENTS = (
    "SELECT seq, payload FROM events WHERE kind IN ('step.started', 'step.completed', "
    "'step.cached', 'step.failed') AND payload LIKE '%resource_requests%' AND seq > :after "
    "ORDER BY seq LIMIT 5000"
)
_UPDATE = "UPDATE step_runs SET resource_requests = :value WHERE step_run_id = :step_run_id"


def upgrade() -> None:
    with op.batch_alter_table("step_runs") as batch:
        batch.add_column(sa.Column("resource_requests", sa.Text, nullable=True))
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    after = 0
    while rows := conn.execute(sa.text(_STEP_EVENTS), {"after": after}).all():
        # In sequence order: a later event of a step run replaces what an earlier gave.
        latest: dict[str, str | None] = {}
        for _seq, text in rows:
            payload = json.loads(text)
            step_run_id = payload.get("step_run_id")
            if isinstance(step_run_id, str) and "resource_requests" in payload:
                value = payload["resource_requests"]
                latest[step_run_id] = None if value is None else canonical_json(value)
        if latest:
            conn.execute(
                sa.text(_UPDATE),
                [{"step_run_id": k, "value": v} for k, v in sorted(latest.items())],
            )
        after = int(rows[-1][0])


def downgrade() -> None:
    with op.batch_alter_table("step_runs") as batch:
        batch.drop_column("resource_requests")
