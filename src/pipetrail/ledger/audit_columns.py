"""The derived tables' columns, as ``audit verify`` needs them, without SQLAlchemy.

``audit verify`` needs each derived table's column order, the Python type of each column,
whether it allows NULL and which columns are its key. The schema
(:mod:`pipetrail.ledger.schema`) says all that, but reading it costs the import of
SQLAlchemy, about 0.2 s of CPU in each process of the check, where nothing else of
SQLAlchemy is used (the second process of :mod:`pipetrail.ledger.audit_parallel`). So
they are written out here; a unit test holds them equal to the schema, so the two
cannot drift apart.

Each table is one line of column names in the schema's order. After a name: ``#`` an
integer column, ``%`` a floating-point one (text otherwise); ``?`` NULL allowed; ``*``
part of the primary key, in key order.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

__all__ = ["TABLES", "Columns"]

_SPEC = {
    "runs": "run_id* pipeline pipeline_fingerprint status owner host process params seed# "
    "git? environment? record started_at ended_at? error? steps_total# first_seq# "
    "last_seq# name? purpose",
    "step_runs": "step_run_id* run_id node_id step pipeline status cache_key? "
    "cache_decision? cache_reason? reused_step_run_id? code_digest? components? inputs? "
    "outputs? resources? resource_requests? logs? seed#? started_at ended_at? error? "
    "traceback? first_seq# last_seq#",
    "artifacts": "digest* blob serializer type_name size# meta role first_run_id? "
    "first_step_run_id? created_at first_seq#",
    "step_run_io": "step_run_id* direction* name* digest run_id",
    "sources": "run_id* path* digest size# mtime_ns# observed_at by_reference# seq#",
    "run_params": "run_id* name* value num%?",
    "run_tags": "run_id* key* value seq#",
    "run_notes": "seq#* run_id text actor noted_at",
    "run_metrics": "step_run_id* key* run_id node_id name value% origin",
    "run_deletions": "run_id* reason deleted_by deleted_at seq#",
}


class Columns(NamedTuple):
    """One derived table's columns.

    Attributes:
        names: the column names, in the schema's order.
        types: each column's Python type (``str``, ``int`` or ``float``).
        nullable: whether each column allows NULL.
        keys: the primary key's columns, in key order.
    """

    names: tuple[str, ...]
    types: tuple[type, ...]
    nullable: tuple[bool, ...]
    keys: tuple[str, ...]


def _columns(spec: str) -> Columns:
    names: list[str] = []
    types: list[type] = []
    nullable: list[bool] = []
    keys: list[str] = []
    for token in spec.split():
        # Interned, as the names written in the row builders' code are: reading a row
        # dict by them then finds each key by identity.
        name = sys.intern(token.rstrip("#%?*"))
        marks = token[len(name) :]
        names.append(name)
        types.append(int if "#" in marks else float if "%" in marks else str)
        nullable.append("?" in marks)
        if "*" in marks:
            keys.append(name)
    return Columns(tuple(names), tuple(types), tuple(nullable), tuple(keys))


# The derived tables, in the schema's order (``PROJECTION_TABLES``).
TABLES = {table: _columns(spec) for table, spec in _SPEC.items()}
