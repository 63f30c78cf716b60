"""The derived tables' columns written out for ``audit verify`` are the schema's."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import Float, Integer, String

from pipetrail.ledger.audit_columns import TABLES
from pipetrail.ledger.schema import PROJECTION_TABLES


def _python_type(column: object) -> type:
    kind = column.type  # type: ignore[attr-defined]
    if isinstance(kind, Integer):
        return int
    if isinstance(kind, Float):
        return float
    assert isinstance(kind, String), f"{column}: no Python type for {kind}"
    return str


def test_the_same_tables_in_the_same_order() -> None:
    assert list(TABLES) == [str(table.name) for table in PROJECTION_TABLES]


@pytest.mark.parametrize("table", PROJECTION_TABLES, ids=lambda t: str(t.name))
def test_each_table_has_the_schemas_columns(table: object) -> None:
    written = TABLES[str(table.name)]  # type: ignore[attr-defined]
    columns = list(table.columns)  # type: ignore[attr-defined]
    assert written.names == tuple(str(c.name) for c in columns)
    assert written.types == tuple(_python_type(c) for c in columns)
    assert written.nullable == tuple(bool(c.nullable) for c in columns)
    assert written.keys == tuple(str(c.name) for c in table.primary_key.columns)  # type: ignore[attr-defined]


def test_the_second_process_checks_without_importing_sqlalchemy() -> None:
    """The model's layout, and a replica with a model, come from the columns written out."""
    code = (
        "import sys\n"
        "from pipetrail.ledger.audit_model import TableModel\n"
        "from pipetrail.ledger.audit_replica import Replica\n"
        "TableModel(); Replica(model=True).close()\n"
        "print('sqlalchemy' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def test_the_column_names_are_the_row_builders_keys_themselves() -> None:
    """Interned, as names in code are: a row dict is read by them key by key, by identity."""
    from pipetrail.ledger.events import Event
    from pipetrail.ledger.projection_rows import note_row

    event = Event(7, "2026-01-01T00:00:00Z", "tester", "run.noted", "R1", "{}", "", "")
    row = note_row(event, {"run_id": "R1", "text": "hello"})
    names = TABLES["run_notes"].names
    assert list(row) == list(names)
    assert all(key is name for key, name in zip(row, names, strict=True))
    for table in TABLES.values():
        assert all(sys.intern(name) is name for name in table.names)


def test_the_value_builders_give_the_tables_column_order() -> None:
    """The model stores the values of run_values and run_param_values as rows in place."""
    from pipetrail.ledger.projection_rows import PARAM_ROW_COLUMNS, RUN_ROW_COLUMNS

    assert TABLES["runs"].names == RUN_ROW_COLUMNS
    assert TABLES["run_params"].names == PARAM_ROW_COLUMNS
