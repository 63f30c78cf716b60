"""The JSON columns of many rows, read together, read as each text read alone does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipetrail.ledger.json_text import parse_json, parse_json_all
from pipetrail.ledger.queries import _decode, _decoded

_TEXTS = [
    '{"a":1,"b":[true,false,null],"c":{"d":"e"}}',
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",  # beyond 64 bits: an exact integer, not a float
    "-9223372036854775809",
    '{"seed":[1,-12345678901234567890]}',
    '{"digest":"blake3:12345678901234567890123"}',
    "0.1",
    "1e16",
    "-0.0",
    "NaN",
    "1e400",
    '{"a":1,"a":2}',
    "{}",
]


def _same(got: list[Any], texts: list[str]) -> None:
    want = [parse_json(text) for text in texts]
    assert json.dumps(got) == json.dumps(want)
    assert [type(v) for v in got] == [type(v) for v in want]


@pytest.mark.parametrize("at", range(len(_TEXTS)))
def test_each_text_reads_as_parse_json_reads_it_among_plain_ones(at: int) -> None:
    texts = ['{"x":1}', '{"y":[2,3]}', _TEXTS[at], '{"z":"w"}']
    _same(parse_json_all(texts), texts)


def test_all_texts_together_read_as_one_by_one() -> None:
    _same(parse_json_all(_TEXTS), _TEXTS)


def test_a_big_integer_stays_exact_beside_plain_texts() -> None:
    texts = ['{"a":1}', '{"n":123456789012345678901234567890}', '{"b":2}']
    assert parse_json_all(texts)[1]["n"] == 123456789012345678901234567890


def test_digits_across_two_texts_are_not_one_run() -> None:
    # Ten digits ending one text and ten starting the next are no run of nineteen.
    texts = ["1234567890", "1234567890"]
    assert parse_json_all(texts) == [1234567890, 1234567890]


@pytest.mark.parametrize("odd", ['"caf\\u00e9"', '"café"', '"\\ud800"'])
def test_texts_not_ascii_or_with_escapes_read_the_same(odd: str) -> None:
    texts = ['{"a":1}', odd, "18446744073709551616"]
    _same(parse_json_all(texts), texts)


def test_a_text_with_a_lone_surrogate_reads_as_parse_json_reads_it() -> None:
    texts = ['{"a":1}', '"\ud800"']
    assert parse_json_all(texts) == [parse_json(t) for t in texts]


@pytest.mark.parametrize("bad", ["", "{", "[1,]", "nope"])
def test_a_text_that_is_not_json_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_json_all(['{"a":1}', bad])


def test_rows_read_together_equal_rows_read_one_by_one() -> None:
    def rows() -> list[dict[str, Any]]:
        return [
            {
                "step_run_id": f"s{i}",
                "components": '{"seed":' + str(10**19 + i) + "}" if i % 3 == 0 else "{}",
                "inputs": '{"x":"blake3:1234567890123456789012"}',
                "outputs": None,
                "seed": i,
            }
            for i in range(7)
        ]

    together = _decoded(rows())
    alone = [_decode(row) for row in rows()]
    assert together == alone
    assert together[0]["components"]["seed"] == 10**19
