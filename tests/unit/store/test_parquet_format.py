"""The parquet serializer: one digest for equal data from pandas, pyarrow and polars."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import polars as pl
import pyarrow as pa

from pipetrail.hashing import canonical_json, is_digest
from pipetrail.store import ContentStore, MemoryStore, SerializerRegistry

if TYPE_CHECKING:
    from tests.unit.store.conftest import RoundTrip


COLUMNS: dict[str, list[Any]] = {
    "id": [1, 2, 3, 4],
    "score": [0.5, None, 2.25, -1.0],
    "name": ["ann", None, "cy", "dé"],
    "flag": [True, False, None, True],
}


def pandas_table(columns: dict[str, list[Any]]) -> pd.DataFrame:
    df = pd.DataFrame({k: v for k, v in columns.items() if k != "flag"})
    df["flag"] = pd.array(columns["flag"], dtype="boolean")
    return df


def test_same_table_from_pandas_pyarrow_polars_has_one_digest(
    registry: SerializerRegistry, store: ContentStore
) -> None:
    records = [
        registry.dump(pandas_table(COLUMNS), store),
        registry.dump(pa.table(COLUMNS), store),
        registry.dump(pl.DataFrame(COLUMNS), store),
        registry.dump(pa.Table.from_batches(pa.table(COLUMNS).to_batches(max_chunksize=1)), store),
    ]
    assert {r.digest for r in records} == {records[0].digest}
    assert [r.meta["library"] for r in records] == ["pandas", "pyarrow", "polars", "pyarrow"]
    assert all(r.serializer == "parquet" and r.blob != r.digest for r in records)
    assert len({r.meta["schema_fingerprint"] for r in records}) == 1


def test_table_digest_changes_with_values_names_order_and_types(
    registry: SerializerRegistry, store: ContentStore
) -> None:
    base = registry.dump(pa.table(COLUMNS), store).digest
    changed = dict(COLUMNS, score=[0.5, None, 2.25, -1.5])
    renamed = {("label" if k == "name" else k): v for k, v in COLUMNS.items()}
    reordered = dict(reversed(list(COLUMNS.items())))
    null_moved = dict(COLUMNS, score=[0.5, 1.0, None, -1.0])
    narrower = pa.table(COLUMNS).set_column(0, "id", pa.array(COLUMNS["id"], pa.int32()))
    variants = [pa.table(changed), pa.table(renamed), pa.table(reordered), pa.table(null_moved)]
    digests = [registry.dump(t, store).digest for t in [*variants, narrower]]
    assert base not in digests
    assert len(set(digests)) == len(digests)


def test_categorical_is_distinct_from_plain_strings(
    registry: SerializerRegistry, store: ContentStore
) -> None:
    plain = registry.dump(pd.DataFrame({"c": ["a", "b", "a"]}), store)
    pandas_cat = registry.dump(pd.DataFrame({"c": pd.Categorical(["a", "b", "a"])}), store)
    polars_cat = registry.dump(
        pl.DataFrame({"c": ["a", "b", "a"]}, schema={"c": pl.Categorical}), store
    )
    assert pandas_cat.digest == polars_cat.digest != plain.digest


def test_table_meta(registry: SerializerRegistry, store: ContentStore) -> None:
    record = registry.dump(pl.DataFrame(COLUMNS), store)
    assert record.type_name == "polars.DataFrame"
    meta = record.meta
    assert meta["schema"] == [
        {"name": "id", "type": "int64"},
        {"name": "score", "type": "double"},
        {"name": "name", "type": "string"},
        {"name": "flag", "type": "bool"},
    ]
    assert meta["rows"] == 4
    assert meta["columns"] == 4
    assert meta["nulls"] == {"id": 0, "score": 1, "name": 1, "flag": 1}
    assert is_digest(meta["schema_fingerprint"])
    assert meta["library"] == "polars"
    assert canonical_json(meta)  # JSON-able


def test_tables_round_trip_to_their_own_library(
    registry: SerializerRegistry, store: ContentStore, round_trip: RoundTrip
) -> None:
    df = pandas_table(COLUMNS)
    pd.testing.assert_frame_equal(round_trip(registry, store, df), df)
    table = pa.table(COLUMNS).replace_schema_metadata({"owner": "team"})
    assert round_trip(registry, store, table).equals(table, check_metadata=True)
    frame = pl.DataFrame(COLUMNS)
    loaded = round_trip(registry, store, frame)
    assert isinstance(loaded, pl.DataFrame)
    assert loaded.equals(frame)


def test_pandas_index_round_trips_and_counts(
    registry: SerializerRegistry, store: ContentStore, round_trip: RoundTrip
) -> None:
    named = pd.DataFrame({"x": [1, 2, 3]}, index=pd.Index(["p", "q", "r"], name="key"))
    multi = pd.DataFrame(
        {"x": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    )
    shifted = pd.DataFrame({"x": [1, 2, 3]}, index=pd.RangeIndex(10, 13))
    for df in (named, multi, shifted):
        pd.testing.assert_frame_equal(round_trip(registry, store, df), df)
    record = registry.dump(named, store)
    assert [c["name"] for c in record.meta["schema"]] == ["x", "key"]
    assert record.meta["pandas"]["index_columns"] == ["key"]
    with_key_column = pa.table({"x": [1, 2, 3], "key": ["p", "q", "r"]})
    assert registry.dump(with_key_column, store).digest == record.digest
    default = registry.dump(pd.DataFrame({"x": [1, 2, 3]}), store)
    assert default.digest == registry.dump(pa.table({"x": [1, 2, 3]}), store).digest


def test_parquet_blob_is_deterministic(registry: SerializerRegistry) -> None:
    first, second = MemoryStore(), MemoryStore()
    one = registry.dump(pandas_table(COLUMNS), first)
    two = registry.dump(pandas_table(COLUMNS), second)
    assert one == two
    assert first.get_bytes(one.blob) == second.get_bytes(two.blob)
    assert first.get_bytes(one.blob)[:4] == b"PAR1"


def test_table_digest_is_pinned(registry: SerializerRegistry) -> None:
    """Golden value: a change here changes every table artifact's identity (changelog it)."""
    record = registry.dump(pa.table({"id": [1, 2], "name": ["a", None]}), MemoryStore())
    assert record.digest == (
        "blake3:b44c1b5a5fe2ade6ee16e1971ac9321d08ad438a9941fdc8754a519fa8dd3d94"
    )
    assert record.meta["schema_fingerprint"] == (
        "blake3:5ae53dbbb0b498b916cff32a369c9712f22f123bbe9ceefdd87011ee4b47f461"
    )
