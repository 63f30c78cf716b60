"""The trusted read path parses the ledger's JSON through orjson only where it reads the same."""

from __future__ import annotations

import json

import pytest

from pipetrail.ledger.trusted import _loads


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
    got, want = _loads(text), json.loads(text)
    assert json.dumps(got) == json.dumps(want)
    assert type(got) is type(want)


def test_loads_keeps_big_integers_nested_exact() -> None:
    text = '{"a":{"b":[123456789012345678901234567890]}}'
    assert _loads(text)["a"]["b"][0] == 123456789012345678901234567890


@pytest.mark.parametrize("text", ["", "{", "[1,]", "nope"])
def test_loads_refuses_what_is_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        _loads(text)
