"""Table profiles: figures on pandas, polars and Arrow tables, nulls, empties, odd types."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from pipetrail.store.local import LocalStore
from pipetrail.store.serializers.parquet_format import ParquetSerializer, linked_profiles
from pipetrail.store.serializers.table_normalize import normalize_table
from pipetrail.store.serializers.table_profile import (
    HISTOGRAM_BINS,
    SAMPLE_ROWS,
    profile_bytes,
    profile_table,
)


def _column(profile: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in profile["columns"] if c["name"] == name)


def test_numeric_column_figures_are_exact_on_small_tables() -> None:
    values = [1.0, 2.0, 3.0, 4.0, None, 5.0]
    profile = profile_table(pa.table({"x": pa.array(values)}))
    col = _column(profile, "x")
    assert profile["rows"] == 6
    assert col["kind"] == "numeric"
    assert col["nulls"] == 1
    assert (col["min"], col["max"], col["mean"]) == (1.0, 5.0, 3.0)
    assert col["std"] == pytest.approx(math.sqrt(2.0))
    assert col["quantiles"]["p50"] == 3.0
    assert col["quantiles"]["p25"] == 2.0
    assert col["distinct"] == 5
    assert col["distinct_exact"] is True
    histogram = col["histogram"]
    assert len(histogram["edges"]) == HISTOGRAM_BINS + 1
    assert sum(histogram["counts"]) == 5
    assert histogram["counts"][0] == 1  # 1.0 in the first bin
    assert histogram["counts"][-1] == 1  # the maximum lands in the last bin, closed


def test_non_finite_values_are_counted_and_left_out() -> None:
    col = _column(profile_table(pa.table({"x": [1.0, float("nan"), float("inf"), 3.0]})), "x")
    assert col["non_finite"] == 2
    assert (col["min"], col["max"], col["mean"]) == (1.0, 3.0, 2.0)


def test_categorical_columns_list_top_values_most_frequent_first() -> None:
    table = pa.table({"city": ["b", "a", "b", None, "c", "a", "b"], "flag": [True] * 7})
    profile = profile_table(table)
    city = _column(profile, "city")
    assert city["kind"] == "categorical"
    assert city["top"][:2] == [["b", 3], ["a", 2]]
    assert city["nulls"] == 1
    assert city["distinct"] == 3
    assert city["other"] == 0
    assert _column(profile, "flag")["top"] == [[True, 7]]


def test_categories_beyond_the_top_are_counted_as_other() -> None:
    values = [f"v{i:03d}" for i in range(100)]
    col = _column(profile_table(pa.table({"v": values})), "v")
    assert len(col["top"]) == 20
    assert col["other"] == 80
    assert col["top"][0] == ["v000", 1]  # ties broken by value


def test_all_null_and_empty_columns_have_no_figures() -> None:
    table = pa.table(
        {"x": pa.array([None, None], pa.float64()), "s": pa.array([None, None], pa.string())}
    )
    profile = profile_table(table)
    x = _column(profile, "x")
    assert x["nulls"] == 2
    assert x["min"] is None
    assert x["histogram"] is None
    assert _column(profile, "s")["top"] == []
    empty = profile_table(pa.table({"x": pa.array([], pa.int64())}))
    assert empty["rows"] == 0
    assert _column(empty, "x")["quantiles"] is None


def test_unsupported_columns_are_skipped_with_a_reason() -> None:
    table = pa.table(
        {
            "raw": pa.array([b"a", b"b"]),
            "items": pa.array([[1], [2, 3]]),
            "nothing": pa.array([None, None]),
            "n": [1, 2],
        }
    )
    profile = profile_table(table)
    assert _column(profile, "raw")["kind"] == "skipped"
    assert "binary" in _column(profile, "raw")["reason"]
    assert "list" in _column(profile, "items")["reason"]
    assert "null type" in _column(profile, "nothing")["reason"]
    assert _column(profile, "n")["kind"] == "numeric"


def test_wide_integers_and_decimals_are_profiled_as_floats() -> None:
    import decimal

    table = pa.table(
        {
            "big": pa.array([2**63 - 1, -(2**63), 0], pa.int64()),
            "money": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("2.25")]),
            "half": pa.array(np.array([1, 2, 3], dtype=np.float16)),
        }
    )
    profile = profile_table(table)
    assert _column(profile, "big")["max"] == pytest.approx(2.0**63)
    assert (_column(profile, "money")["min"], _column(profile, "money")["max"]) == (1.5, 2.25)
    assert _column(profile, "half")["mean"] == 2.0


def test_temporal_columns_are_profiled_in_their_unit() -> None:
    stamps = pa.array([0, 1_000, 2_000], pa.timestamp("ms"))
    col = _column(profile_table(pa.table({"t": stamps})), "t")
    assert col["kind"] == "temporal"
    assert col["unit"] == "ms"
    assert (col["min"], col["max"]) == (0.0, 2000.0)


def test_large_columns_are_sampled_for_quantiles_and_distinct() -> None:
    n = SAMPLE_ROWS * 4
    values = np.arange(n, dtype=np.float64)
    col = _column(profile_table(pa.table({"x": values, "k": values % 10})), "x")
    assert col["sample_stride"] == 4
    assert col["distinct_exact"] is False
    assert col["distinct"] == n  # every sampled value unique: all rows
    assert col["quantiles"]["p50"] == pytest.approx(n / 2, rel=0.01)
    assert col["min"] == 0.0  # min/max/histogram are over every row
    assert sum(col["histogram"]["counts"]) == n
    assert _column(profile_table(pa.table({"k": values % 10})), "k")["distinct"] == 10


def test_equal_tables_from_each_library_give_the_same_profile_bytes() -> None:
    data = {"a": [1.5, None, 3.0], "s": ["x", "y", None], "i": [1, 2, 3]}
    profiles = {
        profile_bytes(profile_table(normalize_table(table)))
        for table in (
            pa.table(data),
            pl.DataFrame(data).to_arrow(),
            pa.Table.from_pandas(pd.DataFrame(data), preserve_index=False),
        )
    }
    assert len(profiles) == 1
    text = profiles.pop()
    assert json.loads(text)["rows"] == 3


def test_a_dump_links_its_stored_profile(tmp_path: Any) -> None:
    store = LocalStore(tmp_path / "objects")
    frame = pd.DataFrame({"a": [1, 2, 3], "s": ["x", "y", "x"]})
    record = ParquetSerializer().dump(frame, store)
    link = record.meta["profile"]
    stored = store.get_bytes(link["digest"])
    assert len(stored) == link["size"]
    assert _column(json.loads(stored), "s")["top"] == [["x", 2], ["y", 1]]
    [(profile, role)] = linked_profiles([record])
    assert role == "profile"
    assert profile.digest == link["digest"]
    assert profile.serializer == "json"
    again = ParquetSerializer().dump(pl.DataFrame({"a": [1, 2, 3], "s": ["x", "y", "x"]}), store)
    assert again.meta["profile"] == link  # deterministic: same table, same profile


def test_the_profile_link_is_not_part_of_how_a_table_is_read(tmp_path: Any) -> None:
    from pipetrail.store import default_registry

    store = LocalStore(tmp_path / "objects")
    record = ParquetSerializer().dump(pd.DataFrame({"a": [1, 2]}), store)
    reading = default_registry().reading(record)
    assert "profile" in record.meta
    assert set(reading["meta"]) == {"library", "pandas"}  # consumers' keys stay as they were
