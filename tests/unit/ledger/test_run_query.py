"""Parsing run search conditions, sort orders and columns."""

from __future__ import annotations

import pytest

from pipetrail.errors import ParamError
from pipetrail.ledger.run_query import (
    Condition,
    Sort,
    parse_columns,
    parse_sort,
    parse_value,
    parse_where,
)


def test_conditions_parse_with_their_kinds_and_values() -> None:
    found = parse_where("metrics.f1 > 0.9 and params.C <= 1 AND tags.stage = 'pre prod'")
    assert found == [
        Condition("metrics.f1", ">", 0.9),
        Condition("params.C", "<=", 1),
        Condition("tags.stage", "=", "pre prod"),
    ]
    assert [c.kind for c in found] == ["metrics", "params", "tags"]
    assert [c.name for c in found] == ["f1", "C", "stage"]
    assert parse_where(["status != failed", "metrics.evaluate.roc_auc>=0.95"]) == [
        Condition("status", "<>", "failed"),
        Condition("metrics.evaluate.roc_auc", ">=", 0.95),
    ]
    assert parse_where("metrics.train[lr-0.1].loss == 2")[0].field == "metrics.train[lr-0.1].loss"


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1), ("1.0", 1.0), ("-2e3", -2000.0), ("true", True), ("'a b'", "a b"), ("x", "x")],
)
def test_values(text: str, value: object) -> None:
    parsed = parse_value(text)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "matches nothing"),
        ("metrics.f1", "cannot read the condition"),
        ("f1 > 0.9", "unknown field 'f1'"),
        ("metrics. > 1", "unknown field"),
        ("metrics.f1 > high", "metrics compare with numbers"),
        ("params.model > lr", "as numbers only"),
        ("tags.stage > a", "tags compare with = and != only"),
        ("pipeline > a", "pipeline compares with = and != only"),
        ("metrics.f1 > nan", "metrics compare with numbers"),
        ("metrics.f1 > 1e999", "not a finite number"),
    ],
)
def test_bad_conditions_are_refused_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(ParamError, match=message):
        parse_where(text)


def test_sort_and_columns() -> None:
    assert parse_sort("metrics.f1 desc") == Sort("metrics.f1", True)
    assert parse_sort("-params.C") == Sort("params.C", True)
    assert parse_sort("started_at") == Sort("started_at", False)
    for bad, message in [
        ("metrics.f1 down", "asc or desc"),
        ("tags.stage", "not tags"),
        ("owner", "unknown field"),
        ("", "FIELD"),
    ]:
        with pytest.raises(ParamError, match=message):
            parse_sort(bad)
    assert parse_columns(["params.C,metrics.f1", "tags.stage"]) == [
        "params.C",
        "metrics.f1",
        "tags.stage",
    ]
    with pytest.raises(ParamError, match=r"is not params\.NAME"):
        parse_columns("C")
