"""Pooled profiles: the figures of the union of tables, from the tables' profiles alone."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from pipetrail.observability.drift_pool import pool_profiles
from pipetrail.observability.drift_stats import null_rate, numeric_distances
from pipetrail.store.serializers.table_profile import profile_table


def _table(seed: int, n: int, *, shift: float = 0.0, nulls: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.normal(10.0 + shift, 2.0, n).tolist()
    for i in range(nulls):
        amount[i] = None
    return pa.table(
        {
            "amount": pa.array(amount, pa.float64()),
            "city": pa.array(rng.choice(["a", "b", "c"], n).tolist()),
        }
    )


def _column(profile: dict, name: str) -> dict:
    return next(c for c in profile["columns"] if c["name"] == name)


def test_pooled_figures_are_those_of_the_concatenated_tables() -> None:
    tables = [_table(1, 500, nulls=5), _table(2, 800, shift=1.0), _table(3, 300, nulls=30)]
    pooled = pool_profiles([profile_table(t) for t in tables])
    whole = profile_table(pa.concat_tables(tables))
    assert pooled["rows"] == whole["rows"] == 1600
    assert pooled["pooled"] == 3
    amount, expected = _column(pooled, "amount"), _column(whole, "amount")
    assert amount["nulls"] == expected["nulls"] == 35
    assert null_rate(amount, pooled["rows"]) == pytest.approx(35 / 1600)
    assert (amount["min"], amount["max"]) == (expected["min"], expected["max"])
    assert amount["mean"] == pytest.approx(expected["mean"], rel=1e-9)
    assert amount["std"] == pytest.approx(expected["std"], rel=1e-9)
    assert sum(amount["histogram"]["counts"]) == pytest.approx(1600 - 35)
    assert amount["quantiles"] is None
    # Re-binning spreads counts inside bins: the pooled histogram is near the exact one.
    found = numeric_distances(amount, expected)
    assert found is not None
    assert found["ks"] < 0.02
    city, expected_city = _column(pooled, "city"), _column(whole, "city")
    assert sorted(map(tuple, city["top"])) == sorted(map(tuple, expected_city["top"]))
    assert city["other"] == 0


def test_a_category_hidden_in_one_tables_other_goes_to_other() -> None:
    one = {"rows": 10, "columns": [{"name": "k", "type": "string", "kind": "categorical",
           "nulls": 0, "distinct": 2, "top": [["x", 6], ["y", 4]], "other": 0}]}  # fmt: skip
    two = {"rows": 10, "columns": [{"name": "k", "type": "string", "kind": "categorical",
           "nulls": 1, "distinct": 30, "top": [["x", 5]], "other": 4}]}  # fmt: skip
    pooled = _column(pool_profiles([one, two]), "k")
    # "y" is listed by one table only and the other's list is incomplete: not guessed.
    assert pooled["top"] == [["x", 11]]
    assert pooled["other"] == 8
    assert pooled["nulls"] == 1
    assert pooled["distinct"] == 30


def test_columns_missing_or_retyped_in_an_older_table_take_nothing_from_it() -> None:
    newest = profile_table(pa.table({"a": [1.0, 2.0, 3.0], "b": ["x", "y", None]}))
    older = profile_table(pa.table({"a": ["1", "2"], "c": [1, 2]}))
    pooled = pool_profiles([newest, older])
    assert [c["name"] for c in pooled["columns"]] == ["a", "b"]
    a = _column(pooled, "a")
    assert a["mean"] == pytest.approx(2.0)
    assert a["pooled_rows"] == 3
    b = _column(pooled, "b")
    assert null_rate(b, pooled["rows"]) == pytest.approx(1 / 3)
    assert math.isclose(sum(a["histogram"]["counts"]), 3)


def test_one_profile_is_its_own_pool_and_none_is_refused() -> None:
    profile = profile_table(_table(1, 10))
    assert pool_profiles([profile]) is profile
    with pytest.raises(ValueError, match="at least one profile"):
        pool_profiles([])


def test_a_drift_of_two_named_runs_does_not_load_the_run_listing() -> None:
    import subprocess
    import sys

    # Only a pooled baseline lists runs; the plain command is spared that import.
    code = (
        "import sys\nimport pipetrail.observability.drift\n"
        "print('pipetrail.ledger.read_model' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip().splitlines()[-1] == "False"
