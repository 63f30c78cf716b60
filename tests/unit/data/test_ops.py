"""sample and split: determinism, table types, strata, groups, leakage, bad input, records."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetrail import data
from pipetrail.data.row_identity import column_identities
from pipetrail.errors import DefinitionError, LeakageError, LeakageWarning, ParamError
from pipetrail.execution.metrics import StepRecorder, recording
from pipetrail.store import default_registry
from pipetrail.store.memory import MemoryStore
from pipetrail.store.serializers.parquet_format import table_value_digest

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _frame(rows: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(rows),
            "name": [f"n{i}" for i in range(rows)],
            "x": [i / 4 for i in range(rows)],
        }
    )


def _ids(parts: dict[str, Any]) -> dict[str, list[int]]:
    out = {}
    for name, part in parts.items():
        if isinstance(part, pa.Table):
            out[name] = part.column("id").to_pylist()
        elif isinstance(part, pl.DataFrame):
            out[name] = part["id"].to_list()
        else:
            out[name] = part["id"].tolist()
    return out


# -- determinism -----------------------------------------------------------------------
def test_golden_split_and_sample() -> None:
    # Pinned: any change to the row identities, scores or counting rules shows up here.
    parts = data.split(_frame(), FRACTIONS, seed=42)
    assert _ids(parts) == {
        "train": [1, 3, 5, 6, 7, 8, 9, 10, 11, 14, 17, 18],
        "val": [2, 13, 16, 19],
        "test": [0, 4, 12, 15],
    }
    assert data.sample(_frame(), n=5, seed=7)["id"].tolist() == [2, 7, 9, 13, 15]


def test_golden_column_identities() -> None:
    ints = column_identities(pa.array([1, None, -1]))
    assert [hex(v) for v in ints.tolist()] == [
        "0xd4348ff8400d9edc",
        "0x4e554c4c5a15cdb4",
        "0x3dc3320e06b88922",
    ]
    texts = column_identities(pa.array(["", "a", "héllo", None]))
    assert [hex(v) for v in texts.tolist()] == [
        "0xb32b9e3261a2a66",
        "0x3df1ccc8be60749f",
        "0xa8f4330def99bc4d",
        "0x4e554c4c64b6736c",
    ]
    # Repeated values are hashed once through a dictionary: the same identities.
    repeated = column_identities(pa.array(["a", "héllo", None] + ["a"] * 10))
    assert repeated[0] == texts[1]
    assert repeated[1] == texts[2]
    assert repeated[2] == texts[3]


def test_equal_values_have_equal_identities_across_types() -> None:
    assert (column_identities(pa.array([7], pa.int32())) == column_identities(pa.array([7]))).all()
    floats = column_identities(pa.array([0.0, -0.0, float("nan"), -float("nan")]))
    assert floats[0] == floats[1]
    assert floats[2] == floats[3]
    large = column_identities(pa.array(["ab"], pa.large_string()))
    assert large[0] == column_identities(pa.array(["ab"]))[0]
    categorical = column_identities(pa.array(["ab"]).dictionary_encode())
    assert categorical[0] == large[0]


def test_same_rows_in_every_library() -> None:
    df = _frame(200)
    expected = _ids(data.split(df, FRACTIONS, seed=3))
    assert _ids(data.split(pl.from_pandas(df), FRACTIONS, seed=3)) == expected
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    assert _ids(data.split(arrow, FRACTIONS, seed=3)) == expected


def test_types_are_kept() -> None:
    df = _frame()
    assert isinstance(data.split(pl.from_pandas(df), FRACTIONS, seed=1)["val"], pl.DataFrame)
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    assert isinstance(data.sample(arrow, n=3, seed=1), pa.Table)
    assert isinstance(data.split(df, FRACTIONS, seed=1)["test"], pd.DataFrame)


def test_row_order_does_not_change_which_rows_are_chosen() -> None:
    df = _frame(100)
    shuffled = df.sample(frac=1.0, random_state=0)
    first = {k: sorted(v) for k, v in _ids(data.split(df, FRACTIONS, seed=9)).items()}
    second = {k: sorted(v) for k, v in _ids(data.split(shuffled, FRACTIONS, seed=9)).items()}
    assert first == second


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(-5, 5), min_size=1, max_size=60),
    seed=st.integers(0, 2**32 - 1),
    weights=st.lists(st.integers(1, 5), min_size=1, max_size=4),
)
def test_split_is_a_deterministic_partition(
    values: list[int], seed: int, weights: list[int]
) -> None:
    df = pd.DataFrame({"id": range(len(values)), "v": values})
    fractions = {f"s{i}": w / sum(weights) for i, w in enumerate(weights)}
    parts = data.split(df, fractions, seed=seed)
    again = data.split(df, fractions, seed=seed)
    ids = _ids(parts)
    assert ids == _ids(again)
    assert sorted(i for part in ids.values() for i in part) == list(range(len(values)))
    for name, part in ids.items():
        assert abs(len(part) - len(values) * fractions[name]) < 1
        assert part == sorted(part)  # input order is kept


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 80),
    seed=st.integers(0, 2**32 - 1),
    small=st.integers(0, 80),
    large=st.integers(0, 80),
)
def test_a_smaller_sample_is_part_of_a_larger_one(
    rows: int, seed: int, small: int, large: int
) -> None:
    small, large = sorted((min(small, rows), min(large, rows)))
    df = _frame(rows)
    smaller = set(data.sample(df, n=small, seed=seed)["id"])
    larger = set(data.sample(df, n=large, seed=seed)["id"])
    assert len(smaller) == small
    assert smaller <= larger


def test_seeds_give_different_orders_and_shuffle_returns_seeded_order() -> None:
    df = _frame(100)
    assert _ids(data.split(df, FRACTIONS, seed=1)) != _ids(data.split(df, FRACTIONS, seed=2))
    shuffled = data.sample(df, frac=1.0, seed=5, shuffle=True)["id"].tolist()
    assert sorted(shuffled) == list(range(100))
    assert shuffled != list(range(100))
    assert data.sample(df, frac=1.0, seed=5)["id"].tolist() == list(range(100))


def test_pandas_rows_keep_their_index_labels() -> None:
    df = _frame().set_index(pd.Index([f"r{i}" for i in range(20)]))
    part = data.sample(df, n=4, seed=1)
    assert list(part.index) == [f"r{i}" for i in part["id"]]


def test_sample_fraction_rounds_half_up() -> None:
    assert len(data.sample(_frame(10), frac=0.25, seed=1)) == 3  # 2.5 rows -> 3
    assert len(data.sample(_frame(10), frac=0.24, seed=1)) == 2
    assert len(data.sample(_frame(10), frac=0.0, seed=1)) == 0


# -- strata and groups -----------------------------------------------------------------
def test_stratify_keeps_class_proportions() -> None:
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b", "c"], size=1000, p=[0.6, 0.3, 0.1])
    df = pd.DataFrame({"id": range(1000), "y": y})
    parts = data.split(df, {"train": 0.7, "test": 0.3}, seed=4, stratify="y")
    assert [len(p) for p in parts.values()] == [700, 300]
    overall = df["y"].value_counts()
    for name, share in (("train", 0.7), ("test", 0.3)):
        counts = parts[name]["y"].value_counts()
        for label, total in overall.items():
            assert abs(counts[label] - total * share) <= 1


def test_stratify_on_several_columns_and_rare_classes() -> None:
    df = pd.DataFrame({"id": range(12), "a": [0, 1] * 6, "b": [0] * 6 + [1, 2, 3, 4, 5, 6]})
    parts = data.split(df, {"train": 0.5, "test": 0.5}, seed=0, stratify=["a", "b"])
    assert [len(p) for p in parts.values()] == [6, 6]


def test_group_keeps_every_group_in_one_subset() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"id": range(2000), "patient": rng.integers(0, 300, size=2000)})
    parts = data.split(df, FRACTIONS, seed=8, group="patient")
    seen: dict[int, str] = {}
    for name, part in parts.items():
        for patient in set(part["patient"]):
            assert seen.setdefault(patient, name) == name
        assert abs(len(part) - 2000 * FRACTIONS[name]) < 60  # within a few groups
    assert sum(len(p) for p in parts.values()) == 2000


def test_stratify_with_group_is_refused() -> None:
    df = pd.DataFrame({"id": range(4), "g": [1, 1, 2, 2], "y": [0, 1, 0, 1]})
    with pytest.raises(DefinitionError, match="cannot combine stratify= and group="):
        data.split(df, FRACTIONS, seed=1, stratify="y", group="g")


# -- leakage ---------------------------------------------------------------------------
def _duplicated() -> pd.DataFrame:
    # Four equal rows: equal rows get equal scores, so they stay together unless they
    # straddle a subset boundary, as they do with seed 2 (one in train, three in test).
    return pd.DataFrame({"v": [1, 1, 1, 1, 2, 3, 4, 5, 6, 7]})


def test_duplicate_rows_across_subsets_are_refused_with_counts() -> None:
    with pytest.raises(LeakageError) as info:
        data.split(_duplicated(), {"train": 0.5, "test": 0.5}, seed=2)
    message = str(info.value)
    assert "'train' and 'test' share 1 row" in message
    assert "row content" in message
    assert "drop_duplicates" in message
    assert "group=" in message
    assert "leakage='warn'" in message
    assert info.value.overlaps == ({"subsets": ["train", "test"], "rows": 1, "groups": None},)


def test_equal_rows_stay_together_unless_they_straddle_a_boundary() -> None:
    parts = data.split(_duplicated(), {"train": 0.5, "test": 0.5}, seed=0)
    assert parts["train"]["v"].tolist().count(1) in (0, 4)


def test_leakage_warn_and_off() -> None:
    with pytest.warns(LeakageWarning, match="share 1 row"):
        parts = data.split(_duplicated(), {"train": 0.5, "test": 0.5}, seed=2, leakage="warn")
    assert sum(len(p) for p in parts.values()) == 10
    data.split(_duplicated(), {"train": 0.5, "test": 0.5}, seed=2, leakage="off")
    with pytest.raises(DefinitionError, match="leakage='maybe' is not one of"):
        data.split(_duplicated(), {"a": 1.0}, seed=0, leakage="maybe")


def test_leakage_by_key_columns() -> None:
    df = pd.DataFrame({"id": [1, 1, 2, 3, 4, 5], "v": range(6)})  # id 1 twice, rows differ
    with pytest.raises(LeakageError, match=r"share 1 row \(compared by key \['id'\]\)"):
        data.split(df, {"train": 0.5, "test": 0.5}, seed=5, key="id")
    # By content the rows differ, so nothing leaks.
    data.split(df, {"train": 0.5, "test": 0.5}, seed=5)


def test_group_split_never_leaks_duplicate_groups() -> None:
    df = pd.DataFrame({"g": [1, 1, 1, 2, 2, 3, 4, 5], "v": [0, 0, 0, 1, 1, 2, 3, 4]})
    parts = data.split(df, {"train": 0.5, "test": 0.5}, seed=0, group="g")
    assert not data.check_leakage(parts["train"], parts["test"], group="g")


def test_check_leakage_standalone() -> None:
    a = pd.DataFrame({"id": [1, 2, 3, 3], "g": ["x", "y", "z", "z"]})
    b = pl.DataFrame({"id": [3, 4, 1], "g": ["z", "x", "w"]})
    result = data.check_leakage(a, b)
    assert (result.rows, result.groups) == (1, None)  # (3, "z"); (1, "x") != (1, "w")
    assert data.check_leakage(a, b, key="id").rows == 2
    by_group = data.check_leakage(a, b, group="g")
    assert (by_group.rows, by_group.groups) == (1, 2)
    assert by_group.to_record() == {"rows": 1, "groups": 2, "key": [], "group": ["g"]}
    with pytest.raises(LeakageError, match="share 2 rows"):
        data.assert_no_leakage(a, b, key="id")
    clean = data.assert_no_leakage(a, b.filter(pl.col("id") == 4), key="id")
    assert not clean.leaked


def test_check_leakage_needs_the_same_columns() -> None:
    with pytest.raises(DefinitionError, match="different columns"):
        data.check_leakage(pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [1]}))


# -- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda df: data.split(df, {"a": 0.5, "b": 0.4}, seed=1), DefinitionError, "sum to 1"),
        (
            lambda df: data.split(df, FRACTIONS, seed=1, stratify="nope"),
            DefinitionError,
            "stratify column 'nope' is not in the table; its columns are 'id', 'name', 'x'",
        ),
        (
            lambda df: data.split(df, FRACTIONS, seed=1, group=["id", "zz"]),
            DefinitionError,
            "group column 'zz'",
        ),
        (
            lambda df: data.sample(df, n=21, seed=1),
            DefinitionError,
            "n=21 but the table has 20 rows",
        ),
        (lambda df: data.sample(df, n=2.5, seed=1), DefinitionError, "whole number"),  # type: ignore[arg-type]  # the wrong type is the point
        (lambda df: data.sample(df, seed=1), DefinitionError, "exactly one of n"),
        (lambda df: data.sample(df, n=1, frac=0.1, seed=1), DefinitionError, "exactly one"),
        (lambda df: data.sample(df, frac=1.5, seed=1), DefinitionError, "between 0 and 1"),
        (lambda df: data.split(df, FRACTIONS, seed=2**32), ParamError, r"^split\(\): seed must be"),
        (
            lambda df: data.sample(df, n=1, seed=-1),
            ParamError,
            r"^sample\(\): seed .* 0 and 4294967295",
        ),
        (lambda df: data.sample(df, n=1, seed="7"), ParamError, "seed must be"),  # type: ignore[arg-type]  # the wrong type is the point
        (lambda df: data.split(df, FRACTIONS), DefinitionError, "needs seed=... outside"),
        (
            lambda df: data.split(df.to_dict(), FRACTIONS, seed=1),
            DefinitionError,
            "takes a pandas or polars DataFrame or a pyarrow Table, not builtins.dict",
        ),
        (
            lambda df: data.split(df, FRACTIONS, seed=1, key=[]),
            DefinitionError,
            "non-empty list of column names",
        ),
    ],
)
def test_bad_input_is_refused(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call(_frame())


def test_empty_tables_are_refused() -> None:
    with pytest.raises(DefinitionError, match="table with no rows"):
        data.split(_frame(0), FRACTIONS, seed=1)
    with pytest.raises(DefinitionError, match="table with no rows"):
        data.sample(pl.DataFrame({"a": []}), n=0, seed=1)


def test_lazy_frames_get_a_hint() -> None:
    with pytest.raises(DefinitionError, match=r"call \.collect\(\)"):
        data.sample(pl.DataFrame({"a": [1]}).lazy(), n=1, seed=1)


# -- records inside a step -------------------------------------------------------------
def _recorder(seed: int | None = 1234) -> StepRecorder:
    return StepRecorder("prepare", MemoryStore(), default_registry(), seed=seed)


def test_inside_a_step_the_seed_defaults_and_ops_are_recorded() -> None:
    df = _frame(50)
    recorder = _recorder()
    with recording(recorder):
        parts = data.split(df, FRACTIONS, stratify="id")
        small = data.sample(df, frac=0.1, seed=5)
    assert _ids(parts) == _ids(data.split(df, FRACTIONS, seed=1234, stratify="id"))
    split_op, sample_op = recorder.data_ops
    assert split_op["op"] == "split"
    assert (split_op["seed"], split_op["seed_from"]) == (1234, "step")
    assert split_op["args"]["fractions"] == FRACTIONS
    assert split_op["args"]["stratify"] == ["id"]
    assert split_op["input"] == {"digest": table_value_digest(df), "rows": 50}
    assert split_op["outputs"] == {
        name: {"digest": table_value_digest(part), "rows": len(part)}
        for name, part in parts.items()
    }
    assert split_op["leakage"]["outcome"] == "ok"
    assert [o["rows"] for o in split_op["leakage"]["overlaps"]] == [0, 0, 0]
    assert (sample_op["seed"], sample_op["seed_from"]) == (5, "argument")
    assert sample_op["args"] == {"key": [], "shuffle": False, "frac": 0.1, "n": 5}
    assert sample_op["outputs"]["sample"]["digest"] == table_value_digest(small)


def test_a_refused_split_is_recorded_with_its_counts() -> None:
    recorder = _recorder()
    with recording(recorder), pytest.raises(LeakageError):
        data.split(_duplicated(), {"train": 0.5, "test": 0.5}, seed=2)
    (op,) = recorder.data_ops
    assert op["leakage"]["outcome"] == "refused"
    assert op["leakage"]["overlaps"][0]["rows"] == 1


def test_a_step_without_a_seed_needs_one() -> None:
    with recording(_recorder(seed=None)), pytest.raises(DefinitionError, match="needs seed"):
        data.sample(_frame(), n=1)
