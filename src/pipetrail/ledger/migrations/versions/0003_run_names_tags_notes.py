"""Run names, purposes, tags and notes; params as rows, so runs filter by them in SQL.

Revision ID: 0003
Revises: 0002

``runs`` gains ``name`` and ``purpose`` (``run``, ``reproduce`` or ``check``), and its
pipeline and status indexes take ``run_id`` too, so a filtered listing comes newest first
from the index without sorting. New
projections: ``run_params`` (one row per top-level parameter, its value as canonical JSON
text), ``run_tags`` and ``run_notes``. Existing runs are back-filled from what their
``run.started`` events projected: their params rows, and ``reproduce`` for a run that
records the run it reproduces, exactly as replaying the events would give.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from pipetrail.ledger.projection_rows import param_text

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("purpose", sa.String(16), nullable=False, server_default="run"))
    op.create_index("ix_runs_purpose_run_id", "runs", ["purpose", "run_id"])
    op.create_index("ix_runs_pipeline_run_id", "runs", ["pipeline", "run_id"])
    op.create_index("ix_runs_status_run_id", "runs", ["status", "run_id"])
    op.drop_index("ix_runs_pipeline", table_name="runs")
    op.drop_index("ix_runs_status", table_name="runs")
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "run_params",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("ix_run_params_name_value", "run_params", ["name", "value", "run_id"])
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_run_tags_key_value", "run_tags", ["key", "value", "run_id"])
    op.create_table(
        "run_notes",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("noted_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_run_notes_run_id", "run_notes", ["run_id"])
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT run_id, params, record FROM runs")).all()
    params = []
    reproductions = []
    for run_id, params_text, record_text in rows:
        for name, value in (json.loads(params_text) or {}).items():
            params.append({"r": run_id, "n": name, "v": param_text(value)})
        if (json.loads(record_text) or {}).get("reproduces"):
            reproductions.append({"r": run_id})
    if params:
        conn.execute(
            sa.text("INSERT INTO run_params (run_id, name, value) VALUES (:r, :n, :v)"), params
        )
    if reproductions:
        conn.execute(
            sa.text("UPDATE runs SET purpose = 'reproduce' WHERE run_id = :r"), reproductions
        )


def downgrade() -> None:
    op.drop_table("run_notes")
    op.drop_table("run_tags")
    op.drop_table("run_params")
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.create_index("ix_runs_pipeline", "runs", ["pipeline"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.drop_index("ix_runs_status_run_id", table_name="runs")
    op.drop_index("ix_runs_pipeline_run_id", table_name="runs")
    op.drop_index("ix_runs_purpose_run_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("purpose")
        batch.drop_column("name")
