"""The metadata schema: the append-only ``events`` table and the projections built from it.

``events`` is the source of truth. ``runs``, ``step_runs``, ``artifacts``, ``step_run_io``,
``sources``, ``run_params``, ``run_tags`` and ``run_notes`` are projections: they are
written in the same transaction as the event that causes them and can be rebuilt from the
events at any time
(:meth:`pipetrail.ledger.Ledger.rebuild_projections`). JSON-valued columns hold canonical
JSON text so SQLite and PostgreSQL store byte-identical values.

This module is imported by the Alembic migrations; a change here needs a new migration
(see src/pipetrail/ledger/migrations/versions/).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "PROJECTION_TABLES",
    "api_tokens",
    "artifacts",
    "events",
    "ledger_head",
    "merkle_nodes",
    "metadata",
    "run_deletions",
    "run_notes",
    "run_params",
    "run_tags",
    "runs",
    "sources",
    "step_run_io",
    "step_runs",
]

metadata = MetaData()

DIGEST = 71  # "blake3:" + 64 hex
ID = 40
# A 64-bit integer; on SQLite the INTEGER that makes a primary key the rowid.
SEQ = BigInteger().with_variant(Integer, "sqlite")

events = Table(
    "events",
    metadata,
    # seq is assigned by the appender (last + 1) under a write lock, never by the database,
    # so that gaps and reordering are detectable and both backends behave the same. On
    # SQLite it is the rowid itself (INTEGER PRIMARY KEY, migration 0009): one B-tree,
    # and a read by seq is one search.
    Column("seq", SEQ, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("run_id", String(ID), nullable=True),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(DIGEST), nullable=False),
    # Not indexed (migration 0009): no query reads an event by its hash, and the hash
    # covers the seq and the previous hash, so the chain already keeps hashes distinct.
    Column("hash", String(DIGEST), nullable=False),
    Index("ix_events_run_id", "run_id"),
    Index("ix_events_kind", "kind"),
)

# One row: the newest (seq, hash). A deleted tail of `events` shows up as a mismatch here
# (and in projections that point past the last event). Signed checkpoints exported outside
# the database are the planned stronger guard (DESIGN.md roadmap, governance).
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(DIGEST), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(ID), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("pipeline_fingerprint", String(DIGEST), nullable=False),
    Column("status", String(16), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("host", String(200), nullable=False),
    Column("process", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("git", Text, nullable=True),
    Column("environment", String(DIGEST), nullable=True),
    Column("record", Text, nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("ended_at", String(32), nullable=True),
    Column("error", Text, nullable=True),
    Column("steps_total", Integer, nullable=False, default=0),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    # Migration 0003: the run's name (``run.started`` or ``run.named``) and what started
    # it (``run``, ``reproduce``, ``check``; ``run`` for runs recorded before 0003).
    Column("name", String(200), nullable=True),
    Column("purpose", String(16), nullable=False, server_default="run"),
    # Filters then newest first, from the index alone (migration 0003).
    Index("ix_runs_pipeline_run_id", "pipeline", "run_id"),
    Index("ix_runs_status_run_id", "status", "run_id"),
    Index("ix_runs_purpose_run_id", "purpose", "run_id"),
    Index("ix_runs_started_at", "started_at"),
)

step_runs = Table(
    "step_runs",
    metadata,
    Column("step_run_id", String(ID), primary_key=True),
    Column("run_id", String(ID), nullable=False),
    Column("node_id", String(300), nullable=False),
    Column("step", String(200), nullable=False),
    Column("pipeline", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("cache_key", String(DIGEST), nullable=True),
    Column("cache_decision", String(16), nullable=True),
    Column("cache_reason", Text, nullable=True),
    Column("reused_step_run_id", String(ID), nullable=True),
    Column("code_digest", String(DIGEST), nullable=True),
    Column("components", Text, nullable=True),
    Column("inputs", Text, nullable=True),
    Column("outputs", Text, nullable=True),
    Column("resources", Text, nullable=True),
    # Migration 0008: what the step asked for (``resource_requests`` of its events).
    Column("resource_requests", Text, nullable=True),
    Column("logs", String(DIGEST), nullable=True),
    Column("seed", BigInteger, nullable=True),
    Column("started_at", String(32), nullable=False),
    Column("ended_at", String(32), nullable=True),
    Column("error", Text, nullable=True),
    Column("traceback", Text, nullable=True),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Index("ix_step_runs_run_id", "run_id"),
    # Newest step run with a key first, from the index alone (migration 0002).
    Index("ix_step_runs_cache_key_seq", "cache_key", "last_seq"),
    # An earlier run of a step, newest first (`why`); new rows land at its end
    # (migration 0009; it replaced an index on pipeline and node id).
    Index("ix_step_runs_pipeline_step", "pipeline", "step", "first_seq"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("digest", String(DIGEST), primary_key=True),
    Column("blob", String(DIGEST), nullable=False),
    Column("serializer", String(32), nullable=False),
    Column("type_name", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("meta", Text, nullable=False),
    Column("role", String(32), nullable=False),
    Column("first_run_id", String(ID), nullable=True),
    Column("first_step_run_id", String(ID), nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("first_seq", BigInteger, nullable=False),
)

# Edges of the lineage graph: which step run read or wrote which artifact.
step_run_io = Table(
    "step_run_io",
    metadata,
    Column("step_run_id", String(ID), primary_key=True),
    Column("direction", String(3), primary_key=True),  # "in" | "out"
    Column("name", String(200), primary_key=True),
    Column("digest", String(DIGEST), nullable=False),
    Column("run_id", String(ID), nullable=False),
    Index("ix_step_run_io_digest", "digest", "direction"),
)

sources = Table(
    "sources",
    metadata,
    Column("run_id", String(ID), primary_key=True),
    Column("path", String(1000), primary_key=True),
    Column("digest", String(DIGEST), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("observed_at", String(32), nullable=False),
    Column("by_reference", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_sources_digest", "digest"),
)

# Migration 0003: a run's top-level params (canonical JSON text of each value), its tags
# (``run.tagged`` / ``run.untagged``, newest value per key) and its notes (``run.noted``).
run_params = Table(
    "run_params",
    metadata,
    Column("run_id", String(ID), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    # Migration 0005: the value as a number when it is one (int or float, not bool), so
    # `--where 'params.C > 0.1'` compares numbers in SQL.
    Column("num", Float, nullable=True),
    # Migration 0010 (docs/adr/0036): one index serves both the number comparisons and
    # the equality of values (``num`` is a function of ``value``: a query for a value
    # names its ``num`` too, ``IS NULL`` when it is not a number).
    Index("ix_run_params_name_num_value", "name", "num", "value", "run_id"),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(ID), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_run_tags_key_value", "key", "value", "run_id"),
)

run_notes = Table(
    "run_notes",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("run_id", String(ID), nullable=False),
    Column("text", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("noted_at", String(32), nullable=False),
    Index("ix_run_notes_run_id", "run_id"),
)

# Migration 0005: the metrics of each finished step run, one row per metric: the last value
# of a logged series (origin "logged"), or a number the step returned in a dict ("output");
# a logged metric wins over an output number of the same name. A cache hit has the rows
# of the step run it reused. ``name`` is ``NODE.KEY``, ``key`` the name within the step.
run_metrics = Table(
    "run_metrics",
    metadata,
    Column("step_run_id", String(ID), primary_key=True),
    Column("key", String(400), primary_key=True),
    Column("run_id", String(ID), nullable=False),
    Column("node_id", String(400), nullable=False),
    Column("name", String(800), nullable=False),
    Column("value", Float, nullable=False),
    Column("origin", String(8), nullable=False),
    # No index leads with ``name`` (migration 0010, docs/adr/0036): ``name`` is
    # ``NODE.KEY``, so a query for a name asks for the keys it can end with
    # (``run_query.metric_keys``) and this index answers it, ``name`` included.
    Index("ix_run_metrics_key_value_name", "key", "value", "run_id", "name"),
    Index("ix_run_metrics_run_id", "run_id"),
)

# Runs marked deleted (``run.deleted``; migration 0004): the first deletion of a run counts.
# The run's own rows stay; readers leave deleted runs out of listings and ``latest``.
run_deletions = Table(
    "run_deletions",
    metadata,
    Column("run_id", String(ID), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("deleted_by", String(200), nullable=False),
    Column("deleted_at", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
)

# The Merkle tree over the events (docs/adr/0020): one row per complete subtree, the
# 2**level leaves from idx * 2**level, written in the transaction that appends its last
# leaf (migration 0006). Derived from the events like the projections, checked and
# rebuilt by `audit verify` / `audit rebuild` (pipetrail.ledger.merkle_store).
merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)

# The server's API tokens (migration 0007, docs/adr/0024): not derived from the events;
# only each token's digest is kept (pipetrail.ledger.api_tokens).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("digest", String(DIGEST), nullable=False, unique=True),
    Column("user_name", String(64), nullable=False),
    Column("label", String(200), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("expires_at", String(32), nullable=True),
    Column("revoked_at", String(32), nullable=True),
    Column("revoked_by", String(64), nullable=True),
    Index("ix_api_tokens_user", "user_name"),
)

PROJECTION_TABLES = (
    runs,
    step_runs,
    artifacts,
    step_run_io,
    sources,
    run_params,
    run_tags,
    run_notes,
    run_metrics,
    run_deletions,
)
