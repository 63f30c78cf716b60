"""Initial schema: the events ledger, its head, and the run/step/artifact projections.

Revision ID: 0001
Revises:

Written out in full (not derived from pipetrail.ledger.schema at run time) so that later
changes to the schema module never change what this revision creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(71), nullable=False),
        sa.Column("hash", sa.String(71), nullable=False, unique=True),
    )
    op.create_index("ix_events_kind", "events", ["kind"])
    op.create_index("ix_events_run_id", "events", ["run_id"])
    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(71), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("pipeline_fingerprint", sa.String(71), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("process", sa.String(64), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("git", sa.Text(), nullable=True),
        sa.Column("environment", sa.String(71), nullable=True),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("ended_at", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("steps_total", sa.Integer(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_runs_pipeline", "runs", ["pipeline"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "step_runs",
        sa.Column("step_run_id", sa.String(40), primary_key=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("node_id", sa.String(300), nullable=False),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cache_key", sa.String(71), nullable=True),
        sa.Column("cache_decision", sa.String(16), nullable=True),
        sa.Column("cache_reason", sa.Text(), nullable=True),
        sa.Column("reused_step_run_id", sa.String(40), nullable=True),
        sa.Column("code_digest", sa.String(71), nullable=True),
        sa.Column("components", sa.Text(), nullable=True),
        sa.Column("inputs", sa.Text(), nullable=True),
        sa.Column("outputs", sa.Text(), nullable=True),
        sa.Column("resources", sa.Text(), nullable=True),
        sa.Column("logs", sa.String(71), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("ended_at", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_step_runs_cache_key", "step_runs", ["cache_key"])
    op.create_index("ix_step_runs_pipeline_node", "step_runs", ["pipeline", "node_id"])
    op.create_index("ix_step_runs_run_id", "step_runs", ["run_id"])
    op.create_table(
        "artifacts",
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("blob", sa.String(71), nullable=False),
        sa.Column("serializer", sa.String(32), nullable=False),
        sa.Column("type_name", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("first_run_id", sa.String(40), nullable=True),
        sa.Column("first_step_run_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "step_run_io",
        sa.Column("step_run_id", sa.String(40), primary_key=True),
        sa.Column("direction", sa.String(3), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
    )
    op.create_index("ix_step_run_io_digest", "step_run_io", ["digest", "direction"])
    op.create_table(
        "sources",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("observed_at", sa.String(32), nullable=False),
        sa.Column("by_reference", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_sources_digest", "sources", ["digest"])


def downgrade() -> None:
    op.drop_table("sources")
    op.drop_table("step_run_io")
    op.drop_table("artifacts")
    op.drop_table("step_runs")
    op.drop_table("runs")
    op.drop_table("ledger_head")
    op.drop_table("events")
