"""A batch's step rows are bound in the order they are built, by statements that do what
``STEP_INSERT`` and ``STEP_UPSERT`` do."""

from __future__ import annotations

import re

from pipetrail.ledger.driver import _value_order
from pipetrail.ledger.projection_batch import _STEP_STATEMENTS, STEP_UPSERT
from pipetrail.ledger.projection_rows import STEP_ROW_COLUMNS
from pipetrail.ledger.projections import STEP_INSERT


def _shape(sql: str) -> tuple[frozenset[str], str]:
    """The columns an insert names, and what follows its values (its conflict clause)."""
    found = re.match(r"INSERT INTO step_runs \(([^)]*)\) VALUES \(([^)]*)\)(.*)$", sql)
    assert found is not None
    columns = [c.strip() for c in found.group(1).split(",")]
    marks = [m.strip().removeprefix(":") for m in found.group(2).split(",")]
    assert columns == marks
    return frozenset(columns), found.group(3)


def test_the_step_statements_take_the_rows_as_built() -> None:
    for sql in (STEP_INSERT, STEP_UPSERT):
        found = _value_order(_STEP_STATEMENTS[sql], STEP_ROW_COLUMNS)
        assert found is not None
        assert found[1] is None  # no reordering of each row's values


def test_the_step_statements_write_what_the_projection_statements_write() -> None:
    for sql in (STEP_INSERT, STEP_UPSERT):
        assert _shape(_STEP_STATEMENTS[sql]) == _shape(sql)
