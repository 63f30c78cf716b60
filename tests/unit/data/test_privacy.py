"""Privacy operations on pandas tables: what they return and the errors they give."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest

from pipetrail import privacy
from pipetrail.errors import DefinitionError

KEY = b"k" * 32


def people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["ann", "bob", "cy", "dee", "ann", None],
            "age": [17, 34, 52, 70, 34, 44],
            "city": ["Paris", "Lyon", "Paris", "Nice", "Paris", "Lyon"],
            "spend": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        }
    )


def test_pseudonyms_are_keyed_stable_and_keep_nulls() -> None:
    df = people()
    out = privacy.pseudonymize(df, "name", key=KEY)
    assert df["name"].tolist()[0] == "ann"  # the input is not modified
    values = out["name"].tolist()
    assert values[0] == values[4]  # same value, same pseudonym: joins still work
    assert values[0] != values[1]
    assert len(values[0]) == 32
    assert values[5] is None
    other = privacy.pseudonymize(df, ["name"], key=b"x" * 32)["name"].tolist()
    assert other[0] != values[0]  # another key, other pseudonyms
    with pytest.raises(DefinitionError, match="at least 16 bytes"):
        privacy.pseudonymize(df, "name", key=b"short")
    with pytest.raises(DefinitionError, match="'nope'"):
        privacy.pseudonymize(df, "nope", key=KEY)


def test_drop_and_generalize() -> None:
    df = people()
    assert list(privacy.drop(df, ["name", "city"]).columns) == ["age", "spend"]
    aged = privacy.generalize(df, "age", bins=[0, 18, 65, 120])
    assert aged["age"].tolist() == [
        "[0, 18)",
        "[18, 65)",
        "[18, 65)",
        "[65, 120)",
        "[18, 65)",
        "[18, 65)",
    ]
    regions = privacy.generalize(df, "city", levels={"Paris": "north", "Lyon": "south"})
    assert regions["city"].tolist() == ["north", "south", "north", None, "north", "south"]
    with pytest.raises(DefinitionError, match="exactly one of bins"):
        privacy.generalize(df, "age")
    with pytest.raises(DefinitionError, match="increasing numbers"):
        privacy.generalize(df, "age", bins=[10, 5])


def test_aggregate_suppresses_small_groups() -> None:
    out = privacy.aggregate(
        people(), by="city", aggs={"total": "spend:sum", "mean_age": "age:mean"}, min_group_size=2
    )
    assert out["city"].tolist() == ["Lyon", "Paris"]  # Nice has one row: suppressed
    assert out["n"].tolist() == [2, 3]
    assert out["total"].tolist() == [80.0, 90.0]
    with pytest.raises(DefinitionError, match="'column:function'"):
        privacy.aggregate(people(), by="city", aggs={"x": "spend:explode"})
    with pytest.raises(DefinitionError, match="min_group_size"):
        privacy.aggregate(people(), by="city", aggs={"x": "spend:sum"}, min_group_size=0)


def test_k_anonymity_is_measured() -> None:
    result = privacy.check_k_anonymity(people(), ["city"], 2)
    assert (result.k, result.groups, result.violating_rows, result.ok) == (1, 3, 1, False)
    assert result.violating == [{"city": "Nice"}]
    assert privacy.check_k_anonymity(people(), "city", 1).ok


def test_other_table_libraries_are_refused_with_the_fix() -> None:
    with pytest.raises(DefinitionError, match=r"got a polars table; convert it with \.to_pandas"):
        privacy.drop(pl.DataFrame({"a": [1]}), "a")
