"""The trusted read path parses the ledger's JSON through orjson only where it reads the same."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipetrail.ledger.json_text import parse_json, read_json
from pipetrail.ledger.trusted import _holds


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"b":[true,false,null],"c":{"d":"e"}}',
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        # Beyond 64 bits orjson would read a float: these must stay exact integers.
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
        '{"seed":[1,-12345678901234567890]}',
        # Nineteen or twenty digits inside a string only take the slow path.
        '{"digest":"blake3:12345678901234567890123"}',
        '"x-1234567890123456789"',
        "0.1",
        "1e16",
        "-0.0",
        '"caf\\u00e9 \\ud83d\\ude00"',
        # What orjson refuses, the standard library reads.
        "NaN",
        "1e400",
        '"\\ud800"',
        '{"a":1,"a":2}',
    ],
)
def test_loads_reads_as_the_standard_library_does(text: str) -> None:
    got, want = parse_json(text), json.loads(text)
    assert json.dumps(got) == json.dumps(want)
    assert type(got) is type(want)


def test_loads_keeps_big_integers_nested_exact() -> None:
    text = '{"a":{"b":[123456789012345678901234567890]}}'
    assert parse_json(text)["a"]["b"][0] == 123456789012345678901234567890


@pytest.mark.parametrize("text", ["", "{", "[1,]", "nope"])
def test_loads_refuses_what_is_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json(text)


@pytest.mark.parametrize(
    ("text", "value", "holds"),
    [
        # The projection's own text: equal without parsing.
        ('{"a":1,"b":[true,"x"],"c":null}', {"b": [True, "x"], "a": 1, "c": None}, True),
        # Another encoding of the same value: parsed, still equal.
        ('{ "b": [true, "x"], "a": 1 }', {"a": 1, "b": [True, "x"]}, True),
        ('{"a":1.0}', {"a": 1}, True),
        # A different value, whatever the encoding.
        ('{"a":2}', {"a": 1}, False),
        ('{"a":1}', {"a": 1, "b": None}, False),
        # Beyond 64 bits orjson refuses the value: compared by value.
        ('{"a":123456789012345678901234567890}', {"a": 123456789012345678901234567890}, True),
        ('{"a":123456789012345678901234567890}', {"a": 123456789012345678901234567891}, False),
        # A lone surrogate orjson cannot encode: compared by value.
        ('{"a":"\\ud800"}', {"a": "\ud800"}, True),
        ("not json", {"a": 1}, False),
    ],
)
@pytest.mark.parametrize("finite", [True, False])
def test_a_json_column_holds_the_event_value_by_value(
    text: str, value: object, holds: bool, finite: bool
) -> None:
    assert _holds("components", text, value, finite=finite) is holds


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_float_is_never_taken_for_the_null_orjson_writes(value: float) -> None:
    # A payload the standard library read may hold NaN or an infinity; orjson writes
    # either as null, so equal text proves nothing there: the column is parsed.
    assert _holds("components", '{"a":null}', {"a": value}, finite=False) is False


def test_a_payload_orjson_read_is_known_finite() -> None:
    assert read_json('{"a":[1.5,null]}') == ({"a": [1.5, None]}, True)
    value, finite = read_json('{"a":NaN}')
    assert finite is False
    assert value["a"] != value["a"]
    assert read_json('{"a":1e400}')[1] is False


def _step_values() -> tuple[Any, ...]:
    from pipetrail.ledger.projection_rows import STEP_ROW_COLUMNS

    values: dict[str, Any] = dict.fromkeys(STEP_ROW_COLUMNS, "x")
    values.update(
        components={"step": "inc", "code": "blake3:00"},
        inputs={"x": "blake3:11"},
        outputs={"return": "blake3:22"},
        resources={"wall_ns": 5},
        resource_requests=None,
        seed=7,
        first_seq=3,
        last_seq=9,
    )
    return tuple(values[c] for c in STEP_ROW_COLUMNS)


def _stored(values: tuple[Any, ...]) -> tuple[Any, ...]:
    from pipetrail.hashing.canonical import member_json
    from pipetrail.ledger.projection_rows import JSON_COLUMNS, STEP_ROW_COLUMNS

    return tuple(
        member_json(v) if c in JSON_COLUMNS else v
        for c, v in zip(STEP_ROW_COLUMNS, values, strict=True)
    )


def test_a_step_row_written_from_its_event_is_taken_at_once() -> None:
    from pipetrail.ledger.trusted import _holds_exactly

    values = _step_values()
    stored = _stored(values)
    assert _holds_exactly(stored, values)
    # first_seq is the step.started event's: not the closing event's to say.
    assert _holds_exactly((*stored[:-2], 1, stored[-1]), values)


def test_any_other_step_row_is_left_to_the_column_by_column_check() -> None:
    from pipetrail.ledger.projection_rows import STEP_ROW_COLUMNS
    from pipetrail.ledger.trusted import _holds_exactly

    values = _step_values()
    stored = _stored(values)
    for at, column in enumerate(STEP_ROW_COLUMNS):
        if column == "first_seq":
            continue
        for other in ("y", None, '{"return": "blake3:22"}', 8):
            if other == stored[at]:
                continue
            changed = (*stored[:at], other, *stored[at + 1 :])
            assert not _holds_exactly(changed, values), (column, other)
    # A value orjson cannot write (beyond 64 bits) is compared by value instead.
    big = list(values)
    big[STEP_ROW_COLUMNS.index("resources")] = {"wall_ns": 2**70}
    assert not _holds_exactly(stored, tuple(big))


def test_a_lookup_reads_the_step_columns_in_the_order_the_projection_writes_them() -> None:
    from pipetrail.ledger.projection_rows import STEP_ROW_COLUMNS
    from pipetrail.ledger.trusted_sql import STEP_COLUMNS

    assert STEP_COLUMNS == STEP_ROW_COLUMNS  # _holds_exactly compares them by position


@pytest.mark.parametrize(
    "text",
    [
        # Beyond 64 bits orjson reads a float: never taken as read exactly.
        '{"a":18446744073709551616}',
        '{"a":[-9223372036854775809]}',
        # A key twice, a float orjson writes otherwise, what orjson refuses, not an object.
        '{"a":1,"a":2}',
        '{"a":1.50}',
        '{"a":-0}',
        '{"a":NaN}',
        '{"a":"\\ud800"}',
        "[1,2]",
        "{",
    ],
)
def test_a_payload_orjson_does_not_write_back_is_left_to_the_full_checks(text: str) -> None:
    from pipetrail.ledger.trusted import _exact_payload

    assert _exact_payload(text, None) is None


def test_a_payload_orjson_writes_back_is_read_as_the_standard_library_reads_it() -> None:
    from pipetrail.ledger.trusted import _exact_payload

    text = '{"a":{"b":[1,2.5,null,true]},"digest":"blake3:12345678901234567890123","n":-5}'
    assert _exact_payload(text, None) == json.loads(text)
    # The text this process's orjson wrote (what hashed_here says) is read at once.
    assert _exact_payload('{"a":1}', ("blake3:00", True)) == {"a": 1}
