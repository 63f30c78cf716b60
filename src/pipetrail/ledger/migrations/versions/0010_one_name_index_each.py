"""One name-led index for run parameters, none for metric names.

Revision ID: 0010
Revises: 0009

Each run wrote an entry per parameter in two indexes led by the parameter's name, and an
entry per metric in two indexes led by its name: keys spread over the whole index, so
each entry dirtied a leaf of its own (docs/adr/0036).

- ``run_params``: ``ix_run_params_name_value`` (name, value, run_id) and
  ``ix_run_params_name_num`` (name, num, run_id) become one index
  ``ix_run_params_name_num_value`` (name, num, value, run_id). ``num`` is a function of
  ``value`` (the number it writes, or NULL), so a query for a value also names its
  ``num`` and finds its rows, newest run first, as before; number comparisons use the
  index's first two columns.
- ``run_metrics``: ``ix_run_metrics_name_value`` (name, value, run_id) is dropped and
  ``ix_run_metrics_key_value`` (key, value, run_id) becomes
  ``ix_run_metrics_key_value_name`` (key, value, run_id, name). A metric's name is
  ``NODE.KEY``, so the rows of a name are among those of the keys it can end with; the
  index finds those and holds the name to pick them out, without reading the table.

Only indexes change; no row does.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_run_params_name_num_value", "run_params", ["name", "num", "value", "run_id"]
    )
    op.drop_index("ix_run_params_name_value", table_name="run_params")
    op.drop_index("ix_run_params_name_num", table_name="run_params")
    op.create_index(
        "ix_run_metrics_key_value_name", "run_metrics", ["key", "value", "run_id", "name"]
    )
    op.drop_index("ix_run_metrics_name_value", table_name="run_metrics")
    op.drop_index("ix_run_metrics_key_value", table_name="run_metrics")


def downgrade() -> None:
    op.create_index("ix_run_metrics_key_value", "run_metrics", ["key", "value", "run_id"])
    op.create_index("ix_run_metrics_name_value", "run_metrics", ["name", "value", "run_id"])
    op.drop_index("ix_run_metrics_key_value_name", table_name="run_metrics")
    op.create_index("ix_run_params_name_num", "run_params", ["name", "num", "run_id"])
    op.create_index("ix_run_params_name_value", "run_params", ["name", "value", "run_id"])
    op.drop_index("ix_run_params_name_num_value", table_name="run_params")
