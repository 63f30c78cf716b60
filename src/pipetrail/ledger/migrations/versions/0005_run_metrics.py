"""Run metrics as rows, and params as numbers, so runs filter and sort by them in SQL.

Revision ID: 0005
Revises: 0004

New projection ``run_metrics``: one row per metric of each finished step run (the last
value of a logged series, or a number the step returned in a dict; a cache hit has the
rows of the step run it reused), named ``NODE.KEY``. ``run_params`` gains ``num``, the
value when it is a number. Existing ledgers are back-filled from their events exactly as
replaying them would give; the numbers steps returned in dicts were not recorded in
events before this revision, so older runs filter by their logged metrics only.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from pipetrail.ledger.projection_rows import metric_rows, param_number

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_STEP_EVENTS = (
    "SELECT seq, payload FROM events WHERE kind IN ('step.completed', 'step.cached') "
    "AND seq > :after ORDER BY seq LIMIT 5000"
)


def upgrade() -> None:
    with op.batch_alter_table("run_params") as batch:
        batch.add_column(sa.Column("num", sa.Float, nullable=True))
    op.create_index("ix_run_params_name_num", "run_params", ["name", "num", "run_id"])
    op.create_table(
        "run_metrics",
        sa.Column("step_run_id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("node_id", sa.String(400), nullable=False),
        sa.Column("name", sa.String(800), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("origin", sa.String(8), nullable=False),
    )
    op.create_index("ix_run_metrics_name_value", "run_metrics", ["name", "value", "run_id"])
    op.create_index("ix_run_metrics_key_value", "run_metrics", ["key", "value", "run_id"])
    op.create_index("ix_run_metrics_run_id", "run_metrics", ["run_id"])
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    numbers = []
    for run_id, params_text in conn.execute(sa.text("SELECT run_id, params FROM runs")).all():
        for name, value in (json.loads(params_text) or {}).items():
            number = param_number(value)
            if number is not None:
                numbers.append({"r": run_id, "n": name, "v": number})
    if numbers:
        conn.execute(
            sa.text("UPDATE run_params SET num = :v WHERE run_id = :r AND name = :n"), numbers
        )
    insert = sa.text(
        "INSERT INTO run_metrics (step_run_id, key, run_id, node_id, name, value, origin) "
        "VALUES (:step_run_id, :key, :run_id, :node_id, :name, :value, :origin)"
    )
    after = 0
    while rows := conn.execute(sa.text(_STEP_EVENTS), {"after": after}).all():
        batch = [row for _seq, payload in rows for row in metric_rows(json.loads(payload))]
        if batch:
            conn.execute(insert, batch)
        after = int(rows[-1][0])


def downgrade() -> None:
    op.drop_table("run_metrics")
    op.drop_index("ix_run_params_name_num", table_name="run_params")
    with op.batch_alter_table("run_params") as batch:
        batch.drop_column("num")
