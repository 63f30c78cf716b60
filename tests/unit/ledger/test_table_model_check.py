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


# A step_runs column that allows NULL, holding text in some rows and NULL in others.
_LOGS = TableModel().layout["step_runs"].columns.index("logs")


def _step_runs(logs: list[Any]) -> list[tuple[Any, ...]]:
    layout = TableModel().layout["step_runs"]
    good = tuple(kind() for kind in layout.types)
    return [(*good[:_LOGS], value, *good[_LOGS + 1 :]) for value in logs]


@pytest.mark.parametrize("plain", [True, False])
@pytest.mark.parametrize(
    ("logs", "unplain_ok"),
    [
        ([None, "out.log", None], True),
        ([None, "été.log"], True),
        ([None, "data\ud800.log", None], False),
        ([None, 5, None], False),
        ([None, b"out.log"], False),
    ],
)
def test_text_and_nulls_in_one_column_are_checked_as_one_by_one(
    logs: list[Any], unplain_ok: bool, plain: bool
) -> None:
    rows = _step_runs(logs)
    layout = TableModel().layout["step_runs"]

    def together() -> bool:
        try:
            layout.check_many(rows, plain)
        except Unmodelled:
            return False
        return True

    def one_by_one() -> bool:
        try:
            for row in rows:
                layout.check(row, plain)
        except Unmodelled:
            return False
        return True

    # With plain (orjson parsed the text), only the type of a text value is checked.
    expected = unplain_ok or (plain and all(type(v) in (str, type(None)) for v in logs))
    assert one_by_one() is expected
    assert together() is expected


@pytest.mark.parametrize(
    ("table", "columns"),
    [("step_runs", "STEP_ROW_COLUMNS"), ("step_run_io", "IO_ROW_COLUMNS"),
     ("run_metrics", "METRIC_ROW_COLUMNS"), ("artifacts", "ARTIFACT_ROW_COLUMNS")],
)  # fmt: skip
def test_the_value_builders_give_the_tables_columns_in_order(table: str, columns: str) -> None:
    from pipetrail.ledger import projection_rows

    assert list(getattr(projection_rows, columns)) == TableModel().layout[table].columns


def _sources(*rows: tuple[Any, ...]) -> TableModel:
    model = TableModel()
    for row in rows:
        model.sources[row[:2]] = row
    return model


OTHER = ("R2", "data.csv", *GOOD[2:])


@pytest.mark.parametrize("size", [1, 2, 5])
def test_rows_read_a_chunk_at_a_time_equal_the_model_in_its_order(size: int) -> None:
    model = _sources(GOOD, OTHER)
    chunks = [[GOOD, OTHER][at : at + size] for at in range(0, 2, size)]
    assert model.same_in_order("sources", chunks) is True
    assert model.compare("sources", [GOOD, OTHER])


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param([[OTHER], [GOOD]], id="another order"),
        pytest.param([[GOOD]], id="a row missing"),
        pytest.param([[GOOD], [OTHER], [OTHER]], id="a row repeated"),
        pytest.param([[GOOD], [(*OTHER[:3], 10, *OTHER[4:])]], id="a value changed"),
    ],
)
def test_rows_not_in_the_models_order_are_left_to_the_keyed_comparison(
    stored: list[list[tuple[Any, ...]]],
) -> None:
    model = _sources(GOOD, OTHER)
    assert model.same_in_order("sources", stored) is None
    rows = [row for chunk in stored for row in chunk]
    assert model.compare("sources", rows) == (sorted(rows) == sorted([GOOD, OTHER]))


def test_a_released_or_broken_model_compares_nothing() -> None:
    model = _sources(GOOD)
    model.broken = "a payload the projections reject"
    assert model.same_in_order("sources", [[GOOD]]) is False
    assert not model.compare("sources", [GOOD])
    model = _sources(GOOD)
    model.release()
    assert model.broken is None
    with pytest.raises(RuntimeError, match="released"):
        model.same_in_order("sources", [[GOOD]])
    with pytest.raises(RuntimeError, match="released"):
        model.compare("sources", [GOOD])


def test_metrics_held_by_step_run_are_read_in_the_order_of_their_rows() -> None:
    model = TableModel()
    first = [("S1", k, "R1", "train", f"train.{k}", 0.5, "output") for k in ("auc", "loss")]
    second = [("S2", "auc", "R2", "train", "train.auc", 0.7, "logged")]
    model.metrics = {"S1": {r[1]: r for r in first}, "S0": {}, "S2": {r[1]: r for r in second}}
    rows = [*first, *second]
    assert model.same_in_order("run_metrics", [rows[:2], rows[2:]]) is True
    assert model.same_in_order("run_metrics", [rows[1:2], rows[:1], rows[2:]]) is None
    assert model.same_in_order("run_metrics", [rows[:2]]) is None  # a row missing
    assert model.compare("run_metrics", rows)
    assert model.count("run_metrics") == 3
