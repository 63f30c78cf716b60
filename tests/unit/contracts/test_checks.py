"""Checking values: every check listed with its status, failures with a few examples."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
import pandera.polars as pap
import polars as pl
import pyarrow
import pydantic
import pytest
from pandera.config import config_context

from pipetrail.contracts import MAX_EXAMPLES, Contract, check_boundary, describe_violations
from pipetrail.core.contract import Boundary


def _check(contract: Contract, value: Any, direction: str = "output") -> Any:
    return check_boundary(Boundary(direction, "df", contract), value, fingerprint="blake3:f")


def _statuses(result: Any) -> dict[tuple[str | None, str], str]:
    return {(c.column, c.check): c.status for c in result.checks}


AGES = pa.DataFrameSchema(
    {
        "age": pa.Column(int, [pa.Check.ge(0), pa.Check.le(120)], unique=True),
        "kind": pa.Column(str, pa.Check.isin(["a", "b"]), nullable=True),
    }
)


def test_a_passing_frame_lists_every_check_as_passed() -> None:
    result = _check(
        Contract(AGES, rows=(1, 10)), pd.DataFrame({"age": [1, 2], "kind": ["a", None]})
    )
    assert result.ok
    assert result.rows == 2
    assert _statuses(result) == {
        (None, "row_count in [1, 10]"): "passed",
        ("age", "column_in_dataframe"): "passed",
        ("age", "dtype('int64')"): "passed",
        ("age", "not_nullable"): "passed",
        ("age", "field_uniqueness"): "passed",
        ("age", "greater_than_or_equal_to(0)"): "passed",
        ("age", "less_than_or_equal_to(120)"): "passed",
        ("kind", "column_in_dataframe"): "passed",
        # pandas decides how its string dtype is spelled
        ("kind", f"dtype('{AGES.columns['kind'].dtype}')"): "passed",
        ("kind", "isin(['a', 'b'])"): "passed",
    }


def test_failures_name_the_column_the_check_and_a_few_rows() -> None:
    frame = pd.DataFrame({"age": [-1, 5, 5, 130, -7, -8, -9, -10, -11], "kind": ["a"] * 8 + ["z"]})
    result = _check(Contract(AGES), frame)
    assert not result.ok
    failed = {c.check: c for c in result.failed()}
    assert set(failed) == {
        "greater_than_or_equal_to(0)",
        "less_than_or_equal_to(120)",
        "field_uniqueness",
        "isin(['a', 'b'])",
    }
    ge = failed["greater_than_or_equal_to(0)"]
    assert ge.column == "age"
    assert ge.failures == 6
    assert len(ge.examples) == MAX_EXAMPLES
    assert ge.examples[0] == {"index": 0, "value": -1}
    assert failed["isin(['a', 'b'])"].examples == [{"index": 8, "value": "z"}]
    message = describe_violations("clean", [result])
    assert message.startswith("step 'clean': output 'df' breaks its pandera contract: ")
    assert "column 'age' greater_than_or_equal_to(0) failed for 6 values (e.g. row 0: -1" in message


def test_a_missing_column_names_the_columns_the_artifact_has() -> None:
    result = _check(Contract(AGES), pd.DataFrame({"age": [1], "colour": ["red"]}))
    missing = [c for c in result.failed() if c.check == "column_in_dataframe"]
    assert len(missing) == 1
    assert missing[0].column == "kind"
    assert missing[0].message == "column 'kind' is missing; the artifact has columns: age, colour"
    assert _statuses(result)[("kind", "isin(['a', 'b'])")] == "skipped"


def test_custom_and_frame_level_checks_are_listed_and_matched() -> None:
    schema = pa.DataFrameSchema(
        {"x": pa.Column(int, pa.Check(lambda s: s % 2 == 0, name="even"))},
        checks=[pa.Check(lambda df: len(df) > 3, name="enough"), pa.Check(lambda df: True)],
        strict=True,
    )
    result = _check(Contract(schema), pd.DataFrame({"x": [2, 3], "y": [0, 0]}))
    statuses = _statuses(result)
    assert statuses[("x", "even")] == "failed"
    assert statuses[(None, "enough")] == "failed"
    assert statuses[(None, "<lambda>")] == "passed"
    assert statuses[(None, "column_in_schema")] == "failed"
    strict = next(c for c in result.checks if c.check == "column_in_schema")
    assert strict.message == "columns not in the contract: y"


def test_row_count_bounds() -> None:
    frame = pd.DataFrame({"age": [1, 2, 3], "kind": ["a", "b", "a"]})
    result = _check(Contract(AGES, rows=(5, None)), frame)
    row_check = result.checks[0]
    assert (row_check.check, row_check.status) == ("row_count in [5, inf]", "failed")
    assert row_check.message == "the artifact has 3 rows"
    assert _check(Contract(rows=(1, 3)), [1, 2, 3]).ok
    assert not _check(Contract(rows=(0, 2)), [1, 2, 3]).ok


def test_a_value_of_the_wrong_type_is_a_violation_not_a_crash() -> None:
    result = _check(Contract(AGES), {"age": [1]})
    assert [(c.check, c.status) for c in result.checks] == [("type", "failed")]
    assert result.checks[0].message == (
        "the pandera contract checks pandas DataFrames, but the value is a dict"
    )


def test_validation_runs_even_when_pandera_is_switched_off() -> None:
    frame = pd.DataFrame({"age": [-1], "kind": ["a"]})
    with config_context(validation_enabled=False):
        result = _check(Contract(AGES), frame)
    assert not result.ok


def test_a_dataframe_model_is_a_schema() -> None:
    class Ages(pa.DataFrameModel):
        age: int = pa.Field(ge=0)

    assert not _check(Contract(Ages), pd.DataFrame({"age": [-3]})).ok


def test_polars_frames_are_checked_with_pandera_polars() -> None:
    schema = pap.DataFrameSchema(
        {"a": pap.Column(pl.Int64, pap.Check.ge(0), nullable=False), "c": pap.Column(pl.Utf8)}
    )
    result = _check(Contract(schema, rows=(1, None)), pl.DataFrame({"a": [1, -1, None]}))
    statuses = _statuses(result)
    assert statuses[("a", "greater_than_or_equal_to(0)")] == "failed"
    assert statuses[("a", "not_nullable")] == "failed"
    assert statuses[("c", "column_in_dataframe")] == "failed"
    assert statuses[("c", "dtype('String')")] == "skipped"
    assert result.rows == 3
    lazy = _check(Contract(schema), pl.DataFrame({"a": [1], "c": ["x"]}).lazy())
    assert lazy.ok
    assert lazy.rows == 1


def test_a_lazy_frame_missing_a_column_is_reported_without_a_polars_warning() -> None:
    # Reading LazyFrame.columns warns (PerformanceWarning); the test suite turns that
    # into an error, as it would for a user running with -W error.
    schema = pap.DataFrameSchema({"a": pap.Column(pl.Int64), "zz": pap.Column(pl.Utf8)})
    result = _check(Contract(schema), pl.DataFrame({"a": [1], "b": [2]}).lazy())
    missing = next(c for c in result.checks if (c.column, c.check) == ("zz", "column_in_dataframe"))
    assert missing.status == "failed"
    assert missing.message == "column 'zz' is missing; the artifact has columns: a, b"


def test_arrow_schemas_check_tables_and_pandas_frames() -> None:
    schema = pyarrow.schema(
        [
            pyarrow.field("a", pyarrow.int64(), nullable=False),
            pyarrow.field("s", pyarrow.string()),
            pyarrow.field("q", pyarrow.float64()),
        ]
    )
    frame = pd.DataFrame({"a": [1.0, None, 3.0], "s": ["x", "y", "z"]})
    for value in (frame, pyarrow.Table.from_pandas(frame, preserve_index=False)):
        result = _check(Contract(schema), value)
        statuses = _statuses(result)
        assert statuses[("a", "type(int64)")] == "failed"
        assert statuses[("a", "not_nullable")] == "failed"
        assert statuses[("s", "type(string)")] == "passed"
        assert statuses[("q", "column_in_dataframe")] == "failed"
        nulls = next(c for c in result.checks if c.check == "not_nullable")
        assert nulls.examples == [{"index": 1, "value": None}]
    good = pyarrow.table({"a": [1, 2], "s": ["x", "y"], "q": [0.5, 1.5]})
    assert _check(Contract(schema), good).ok


class Config(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    lr: float = pydantic.Field(gt=0)
    layers: int = 2


def test_pydantic_models_check_dicts_field_by_field() -> None:
    good = _check(Contract(Config), {"lr": 0.1}, "input")
    assert good.ok
    assert _statuses(good) == {("lr", "valid"): "passed", ("layers", "valid"): "passed"}
    bad = _check(Contract(Config), {"lr": -1, "depth": 3}, "input")
    statuses = _statuses(bad)
    assert statuses[("lr", "valid")] == "failed"
    assert statuses[("depth", "extra_forbidden")] == "failed"
    lr = next(c for c in bad.checks if c.column == "lr")
    assert lr.message == "Input should be greater than 0"
    assert lr.examples == [{"index": "lr", "value": -1, "error": "greater_than"}]
    assert not _check(Contract(Config), pd.DataFrame(), "input").ok


def test_a_check_that_raises_is_reported_as_failed() -> None:
    def boom(series: pd.Series) -> pd.Series:
        raise RuntimeError("bad check")

    schema = pa.DataFrameSchema({"x": pa.Column(int, pa.Check(boom, name="boom"))})
    result = _check(Contract(schema), pd.DataFrame({"x": [1]}))
    assert not result.ok


@pytest.mark.parametrize("rows", [(None, None)])
def test_open_bounds_accept_any_count(rows: tuple[None, None]) -> None:
    assert _check(Contract(AGES, rows=rows), pd.DataFrame({"age": [1], "kind": ["a"]})).ok
