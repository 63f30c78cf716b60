"""The chain walk's fast hash and payload parse give exactly what the reference gives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetrail.errors import UnhashableValueError
from pipetrail.hashing import canonical_json
from pipetrail.hashing.canonical import member_json
from pipetrail.ledger.chain_check import chain_hash, parse_payload, parse_plain_payload
from pipetrail.ledger.events import event_hash

_text = st.text() | st.sampled_from(["", "\u2028", "\x00", '"', "\\", "é", "\U0001f600"])
_field = _text | st.integers() | st.none() | st.floats(allow_nan=False) | st.booleans()


def _reference(*fields: Any) -> str:
    seq, ts, actor, kind, run_id, payload, prev = fields
    return event_hash(
        seq=seq, ts=ts, actor=actor, kind=kind, run_id=run_id, payload_text=payload, prev_hash=prev
    )


@settings(max_examples=1500, deadline=None)
@given(
    seq=st.integers(min_value=-(2**70), max_value=2**70),
    ts=_text,
    actor=_text,
    kind=_text,
    run_id=st.none() | _text,
    payload=_text,
    prev=_text,
)
def test_the_fast_hash_of_a_typed_row_is_the_reference_hash(**row: Any) -> None:
    fields = (row["seq"], row["ts"], row["actor"], row["kind"], row["run_id"], row["payload"],
              row["prev"])  # fmt: skip
    assert chain_hash(*fields) == _reference(*fields)


@settings(max_examples=800, deadline=None)
@given(fields=st.tuples(_field, _field, _field, _field, _field, _field, _field))
def test_a_row_of_other_types_is_hashed_by_the_reference(fields: tuple[Any, ...]) -> None:
    try:
        expected = _reference(*fields)
    except UnhashableValueError:
        with pytest.raises(UnhashableValueError):
            chain_hash(*fields)
        return
    assert chain_hash(*fields) == expected


def test_a_string_with_a_lone_surrogate_fails_as_the_reference_does() -> None:
    row = (1, "t", "a", "k", None, "\ud800", "p")
    with pytest.raises(UnhashableValueError):
        _reference(*row)
    with pytest.raises(UnhashableValueError):
        chain_hash(*row)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1500, deadline=None)
@given(value=_json)
def test_a_canonical_payload_parses_as_the_standard_library_parses_it(value: Any) -> None:
    text = canonical_json(value)
    parsed = parse_payload(text)
    assert parsed == json.loads(text)
    assert canonical_json(parsed) == text  # types too: 2**70 stays an int, 1.0 a float


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": 2}',  # not canonical (spaces)
        '{"a":1,"a":2}',  # a repeated key
        '{"a":123456789012345678901234567890}',  # beyond 64 bits
        '{"a":1e16}',
        '{"a":NaN}',
        '{"a":1e400}',
        '"\\ud800"',
        "[1,2,3]",
    ],
)
def test_an_unusual_payload_parses_as_the_standard_library_parses_it(text: str) -> None:
    parsed, expected = parse_payload(text), json.loads(text)
    assert repr(parsed) == repr(expected)


@pytest.mark.parametrize("text", ["", "{", "nope", '{"a":}'])
def test_text_that_is_not_json_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_payload(text)


def _members(value: Any) -> list[Any]:
    """``value`` and every value inside it, at any depth."""
    found = [value]
    inner = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for item in inner:
        found += _members(item)
    return found


@settings(max_examples=1000, deadline=None)
@given(value=_json)
def test_a_payload_orjson_wrote_has_members_orjson_encodes_canonically(value: Any) -> None:
    # The replay of `audit verify` encodes JSON columns of such payloads with orjson.
    text = canonical_json({"p": value})
    parsed, plain = parse_plain_payload(text)
    assert parsed == parse_payload(text)
    if plain:
        for member in _members(parsed):  # None is no text: a NULL column either way
            expected = None if member is None else canonical_json(member)
            assert member_json(member) == expected


@pytest.mark.parametrize(
    "text", ['{"a": 1}', '{"a":1,"a":2}', '{"a":123456789012345678901234567890}', '{"a":1e16}']
)
def test_a_payload_orjson_did_not_write_is_not_plain(text: str) -> None:
    assert parse_plain_payload(text)[1] is False


def test_a_canonical_payload_is_plain() -> None:
    assert parse_plain_payload('{"a":[1,2.5,"x",null,true],"b":{"c":{}}}')[1] is True
