"""A modelled table's rows checked together refuse exactly what one by one refuses."""

from __future__ import annotations

from typing import Any

import pytest

from pipetrail.ledger.audit_model import TableModel, Unmodelled

GOOD = ("R1", "data.csv", "blake3:" + "0" * 64, 9, 1_700_000_000, "2026-01-01T00:00:00Z", 0, 4)

# One value of a sources row changed: (the column's position, the value).
CHANGES: dict[str, tuple[int, Any]] = {
    "a size that is true": (3, True),
    "a size that is a float": (3, 9.0),
    "a size beyond 64 bits": (3, 2**63),
    "a size below 64 bits": (3, -(2**63) - 1),
    "a null time": (5, None),
    "a path that is a number": (1, 5),
    "a path with a lone surrogate": (1, "data\ud800.csv"),
    "a path that is a list": (1, ["data.csv"]),
}


def _one_by_one(rows: list[tuple[Any, ...]], plain: bool) -> bool:
    layout = TableModel().layout["sources"]
    try:
        for row in rows:
            layout.check(row, plain)
    except Unmodelled:
        return False
    return True


def _together(rows: list[tuple[Any, ...]], plain: bool) -> bool:
    layout = TableModel().layout["sources"]
    try:
        assert layout.check_many(rows, plain) is rows
    except Unmodelled:
        return False
    return True


@pytest.mark.parametrize("plain", [True, False])
@pytest.mark.parametrize("case", sorted(CHANGES))
def test_a_bad_value_among_good_rows_is_refused(case: str, plain: bool) -> None:
    at, value = CHANGES[case]
    bad = (*GOOD[:at], value, *GOOD[at + 1 :])
    rows = [GOOD, bad, GOOD]
    expected = plain and case == "a path with a lone surrogate"  # plain: orjson's text
    assert _one_by_one(rows, plain) is expected
    assert _together(rows, plain) is expected


@pytest.mark.parametrize("plain", [True, False])
def test_good_rows_pass(plain: bool) -> None:
    edges = [(*GOOD[:3], 2**63 - 1, -(2**63), "été", 1, 5), GOOD]
    assert _one_by_one(edges, plain)
    assert _together(edges, plain)


def test_a_null_where_the_column_allows_one_passes() -> None:
    layout = TableModel().layout["step_runs"]
    nullable = [at for at, allowed in enumerate(layout.nullable) if allowed]
    assert nullable
    row = tuple(None if at in nullable else kind() for at, kind in enumerate(layout.types))
    assert layout.check(row, False) == row
    assert layout.check_many([row, row], False) == [row, row]
