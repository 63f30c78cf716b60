"""Arrow type strings from table artifact schemas map to SQL-style names."""

from __future__ import annotations

import pytest

from pipetrail.lineage.exports.arrow_types import schema_fields, sql_type


@pytest.mark.parametrize(
    ("arrow", "sql"),
    [
        ("int64", "BIGINT"),
        ("int32", "INTEGER"),
        ("int8", "TINYINT"),
        ("uint64", "UBIGINT"),
        ("double", "DOUBLE"),
        ("float", "FLOAT"),
        ("bool", "BOOLEAN"),
        ("string", "STRING"),
        ("large_string", "STRING"),
        ("large_binary", "BINARY"),
        ("fixed_size_binary[4]", "BINARY"),
        ("date32[day]", "DATE"),
        ("timestamp[ns]", "TIMESTAMP"),
        ("timestamp[us, tz=Europe/Paris]", "TIMESTAMP WITH TIME ZONE"),
        ("time64[us]", "TIME"),
        ("duration[ns]", "INTERVAL"),
        ("decimal128(10, 2)", "DECIMAL(10, 2)"),
        ("list<item: int64>", "ARRAY<BIGINT>"),
        ("large_list<item: string>", "ARRAY<STRING>"),
        ("fixed_size_list<item: int32>[3]", "ARRAY<INTEGER>"),
        ("map<string, int64>", "MAP<STRING, BIGINT>"),
        ("struct<a: int64, b: list<item: string>>", "STRUCT<a: BIGINT, b: ARRAY<STRING>>"),
        ("dictionary<values=string, ordered=0>", "STRING"),
        ("dictionary<values=string, indices=int32, ordered=1>", "STRING"),
        ("null", "NULL"),
        ("some_future_type", "SOME_FUTURE_TYPE"),
    ],
)
def test_sql_type(arrow: str, sql: str) -> None:
    assert sql_type(arrow) == sql


def test_schema_fields_number_columns_and_nest_structs() -> None:
    fields = schema_fields(
        [
            {"name": "id", "type": "int64"},
            {"name": "point", "type": "struct<x: double, y: double>"},
        ]
    )
    assert fields == [
        {"name": "id", "type": "BIGINT", "ordinal_position": 1},
        {
            "name": "point",
            "type": "STRUCT<x: DOUBLE, y: DOUBLE>",
            "ordinal_position": 2,
            "fields": [
                {"name": "x", "type": "DOUBLE", "ordinal_position": 1},
                {"name": "y", "type": "DOUBLE", "ordinal_position": 2},
            ],
        },
    ]
