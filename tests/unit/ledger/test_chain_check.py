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
from pipetrail.ledger.chain_check import (
    UNHASHABLE,
    chain_hash,
    check_chain,
    parse_payload,
    parse_plain_payload,
)
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


# -- check_chain: the walk's loop over a batch of rows --------------------------------------

_GENESIS = "blake3:" + "0" * 64


def _chain(payloads: list[str]) -> list[tuple[Any, ...]]:
    """Rows of a valid chain, hashed by the reference."""
    rows: list[tuple[Any, ...]] = []
    prev = _GENESIS
    for seq, payload in enumerate(payloads, 1):
        run_id = None if seq % 3 == 0 else f"R{seq}"
        fields = (seq, f"2026-01-01T00:00:{seq:02d}Z", "ann", "source.observed", run_id, payload)
        stored = _reference(*fields, prev)
        rows.append((*fields, prev, stored))
        prev = stored
    return rows


def _reference_walk(rows: list[tuple[Any, ...]]) -> tuple[list[bytes], tuple[int, str] | None]:
    """The walk as written before check_chain: one reference hash per row."""
    expected, prev, digests = 1, _GENESIS, []
    for seq, ts, actor, kind, run_id, payload, prev_hash, stored in rows:
        if seq != expected:
            return digests, (
                expected,
                f"event {expected} is missing (the next stored event is {seq})",
            )
        if prev_hash != prev:
            return digests, (seq, "its prev_hash does not match the hash of the event before it")
        try:
            reference = _reference(seq, ts, actor, kind, run_id, payload, prev_hash)
        except UnhashableValueError:  # the reference raises: the walk reports the row
            return digests, (seq, UNHASHABLE)
        if reference != stored:
            return digests, (seq, "its content does not match its hash (the row was edited)")
        digests.append(bytes.fromhex(stored.removeprefix("blake3:")))
        prev, expected = stored, expected + 1
    return digests, None


_payloads = st.lists(_json.map(lambda v: canonical_json({"v": v})), min_size=1, max_size=12)
_edits = st.sampled_from(
    ["none", "payload", "payload-type", "seq-type", "ts", "run_id", "prev", "hash", "hash-of-other",
     "drop", "swap", "bytes", "float"]
)  # fmt: skip


def _tamper(rows: list[tuple[Any, ...]], edit: str, at: int) -> list[tuple[Any, ...]]:
    rows = [list(r) for r in rows]  # type: ignore[misc]
    row = rows[at]
    if edit == "payload":
        row[5] = row[5][:-1] + ',"x":1}'
    elif edit == "payload-type":
        row[5] = row[5].encode()
    elif edit == "seq-type":
        row[0] = float(row[0])
    elif edit == "ts":
        row[1] = row[1] + " "
    elif edit == "run_id":
        row[4] = "R0" if row[4] is None else None
    elif edit == "prev":
        row[6] = "blake3:" + "1" * 64
    elif edit == "hash":
        row[7] = "blake3:" + "2" * 64
    elif edit == "hash-of-other":  # a well-formed hash, of another row
        row[7] = rows[at - 1][7] if at else _GENESIS
    elif edit == "drop":
        del rows[at]
    elif edit == "swap" and at + 1 < len(rows):
        rows[at], rows[at + 1] = rows[at + 1], rows[at]
    elif edit == "bytes":
        row[2] = b"ann"
    elif edit == "float":
        row[3] = 1e16
    return [tuple(r) for r in rows]


@settings(max_examples=600, deadline=None)
@given(payloads=_payloads, edit=_edits, where=st.integers(min_value=0))
def test_check_chain_gives_what_the_reference_walk_gives(
    payloads: list[str], edit: str, where: int
) -> None:
    rows = _tamper(_chain(payloads), edit, where % len(payloads))
    assert check_chain(rows, 1, _GENESIS) == _reference_walk(rows)


def test_check_chain_hands_on_the_recomputed_digest_never_the_stored_text() -> None:
    rows = _chain(['{"a":1}', '{"a":2}', '{"a":3}'])
    digests, failure = check_chain(rows, 1, _GENESIS)
    assert failure is None
    assert [d.hex() for d in digests] == [r[7].removeprefix("blake3:") for r in rows]
    # An edited payload whose stored hash and the next link were rewritten to match each
    # other, but not the content: caught at that row, and no digest handed on for it.
    edited = list(rows)
    edited[1] = (*rows[1][:5], '{"a":20}', rows[1][6], rows[1][7])
    digests, failure = check_chain(edited, 1, _GENESIS)
    assert failure == (2, "its content does not match its hash (the row was edited)")
    assert len(digests) == 1


def test_check_chain_continues_a_chain_from_where_a_batch_ended() -> None:
    rows = _chain([f'{{"i":{i}}}' for i in range(10)])
    first, failure = check_chain(rows[:4], 1, _GENESIS)
    assert failure is None
    rest, failure = check_chain(rows[4:], 5, rows[3][7])
    assert failure is None
    assert first + rest == check_chain(rows, 1, _GENESIS)[0]
    _, failure = check_chain(rows[4:], 5, rows[2][7])  # the wrong link before the batch
    assert failure == (5, "its prev_hash does not match the hash of the event before it")


def test_a_row_the_reference_cannot_hash_fails_as_edited_instead_of_raising() -> None:
    rows = _chain(['{"a":1}', '{"a":2}'])
    for edited in ((*rows[1][:5], "\ud800", *rows[1][6:]), (*rows[1][:2], b"ann", *rows[1][3:])):
        digests, failure = check_chain([rows[0], edited], 1, _GENESIS)
        assert failure == (2, UNHASHABLE)
        assert len(digests) == 1
