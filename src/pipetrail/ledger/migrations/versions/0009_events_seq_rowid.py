"""Events keyed by their rowid on SQLite; no index on event hashes; step runs by step.

Revision ID: 0009
Revises: 0008

Three changes to what a run writes and reads (docs/adr/0034):

- On SQLite, ``events.seq`` becomes ``INTEGER PRIMARY KEY``: the rowid itself. A
  ``BIGINT`` primary key was a separate index beside the table, so every event read by
  its seq was an index search and then a table search, and every append wrote both. The
  table is rebuilt keeping every row (in seq order) and its other indexes. PostgreSQL
  keeps its ``BIGINT`` key, which is already the table's one index on seq.
- The unique index on ``events.hash`` is dropped on both backends. No query reads an
  event by its hash, and the chain already rules out two events with one hash: an
  event's hash covers its seq and its predecessor's hash, so two equal hashes would be a
  BLAKE3 collision, and a forged event is caught by re-hashing (``audit verify``, and
  every trusted read), not by the index. Each append wrote a leaf of that index at a
  random place.
- ``ix_step_runs_pipeline_node`` (pipeline, node id) becomes ``ix_step_runs_pipeline_step``
  (pipeline, step, first_seq): the only query over a pipeline's step runs asks for the
  newest earlier run of a step, which this index answers without sorting, and new rows
  land at its end instead of beside every node id of the pipeline.

The rebuild runs in the migration's transaction: a failure leaves the ledger at 0008.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = "seq, ts, actor, kind, run_id, payload, prev_hash, hash"
# As SQLAlchemy writes the table for the schema module, the key type aside.
_CREATE = (
    "CREATE TABLE {name} (\n"
    "\tseq {key} NOT NULL, \n"
    "\tts VARCHAR(32) NOT NULL, \n"
    "\tactor VARCHAR(200) NOT NULL, \n"
    "\tkind VARCHAR(64) NOT NULL, \n"
    "\trun_id VARCHAR(40), \n"
    "\tpayload TEXT NOT NULL, \n"
    "\tprev_hash VARCHAR(71) NOT NULL, \n"
    "\thash VARCHAR(71) NOT NULL, \n"
    "\tPRIMARY KEY (seq){unique}\n"
    ")"
)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        _rebuild_events(key="INTEGER", unique="")
    else:
        for constraint in sa.inspect(conn).get_unique_constraints("events"):
            if constraint["column_names"] == ["hash"] and constraint["name"]:
                op.drop_constraint(constraint["name"], "events", type_="unique")
    op.drop_index("ix_step_runs_pipeline_node", table_name="step_runs")
    op.create_index("ix_step_runs_pipeline_step", "step_runs", ["pipeline", "step", "first_seq"])


def downgrade() -> None:
    op.drop_index("ix_step_runs_pipeline_step", table_name="step_runs")
    op.create_index("ix_step_runs_pipeline_node", "step_runs", ["pipeline", "node_id"])
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_events(key="BIGINT", unique=", \n\tUNIQUE (hash)")
    else:
        op.create_unique_constraint("events_hash_key", "events", ["hash"])


def _rebuild_events(*, key: str, unique: str) -> None:
    """Copy ``events`` into a table of the new shape, in seq order, and put it in place."""
    op.execute(_CREATE.format(name="events_rebuilt", key=key, unique=unique))
    op.execute(
        f"INSERT INTO events_rebuilt ({_COLUMNS}) "  # noqa: S608 - constant names
        f"SELECT {_COLUMNS} FROM events ORDER BY seq"
    )
    op.execute("DROP TABLE events")  # its indexes go with it
    op.execute("ALTER TABLE events_rebuilt RENAME TO events")
    op.create_index("ix_events_run_id", "events", ["run_id"])
    op.create_index("ix_events_kind", "events", ["kind"])
