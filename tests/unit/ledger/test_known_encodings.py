"""Shortcuts of the append and read paths give exactly what the full computation gives.

* the chain hash of typed fields, encoded by orjson directly, is the reference's;
* a payload encoded with some members known plain has the text and flag of the full check;
* a chain hash remembered from an append is used only for the very fields it was made of.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetrail.hashing import digest_value
from pipetrail.hashing.canonical import (
    checked_canonical_bytes,
    checked_canonical_json,
    checked_json_of_members,
    is_plain,
)
from pipetrail.ledger.events import (
    HASH_FORMAT,
    Event,
    EventKind,
    encoded_draft,
    event_hash,
    hashed_here,
    remember_hashes,
)

_text = st.text() | st.sampled_from(["", "\ud800", "a\udfffb", "\u2028", '"\\'])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**65)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e20, max_value=1e20)
    | _text
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


def _reference_hash(**fields: Any) -> str:
    return digest_value(
        {
            "format": HASH_FORMAT,
            "seq": fields["seq"],
            "ts": fields["ts"],
            "actor": fields["actor"],
            "kind": fields["kind"],
            "run_id": fields["run_id"],
            "payload": fields["payload_text"],
            "prev": fields["prev_hash"],
        }
    )


@settings(max_examples=500, deadline=None)
@given(
    seq=st.integers(min_value=-(2**65), max_value=2**65) | st.booleans(),
    ts=_text,
    actor=_text,
    kind=_text,
    run_id=st.none() | _text,
    payload_text=_text,
    prev_hash=_text,
)
def test_the_chain_hash_of_typed_fields_is_the_reference_hash(**fields: Any) -> None:
    try:
        expected: str | Exception = _reference_hash(**fields)
    except Exception as exc:  # noqa: BLE001 - the same refusal is expected
        expected = exc
    try:
        got: str | Exception = event_hash(**fields)
    except Exception as exc:  # noqa: BLE001
        got = exc
    if isinstance(expected, Exception):
        assert type(got) is type(expected)
    else:
        assert got == expected


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _values, max_size=6), st.data())
def test_members_known_plain_give_the_text_and_flag_of_the_full_check(
    payload: dict[str, Any], data: st.DataObject
) -> None:
    try:
        expected = checked_canonical_json(payload)
    except Exception as exc:  # noqa: BLE001 - the same refusal is expected
        expected_error: Exception | None = exc
    else:
        expected_error = None
    # Only members shown plain may be named known: any subset of them.
    plain = sorted(k for k, v in payload.items() if is_plain(v))
    known = frozenset(data.draw(st.lists(st.sampled_from(plain), unique=True)) if plain else [])
    if expected_error is not None:
        with pytest.raises(type(expected_error)):
            checked_json_of_members(payload, known)
        return
    assert checked_json_of_members(payload, known) == expected
    draft = encoded_draft(EventKind.STEP_CACHED, payload, run_id=None, plain=known)
    assert draft.encoded == expected


@settings(max_examples=300, deadline=None)
@given(_values)
def test_checked_bytes_say_orjson_wrote_them_exactly_when_the_text_does(value: Any) -> None:
    try:
        data, plain = checked_canonical_bytes(value)
    except Exception:  # noqa: BLE001 - refused alike by both
        return
    text, text_plain = checked_canonical_json(value)
    assert plain == text_plain
    assert data.endswith(text.encode("utf-8"))


def _event(seq: int, **changes: Any) -> Event:
    fields: dict[str, Any] = {
        "seq": seq,
        "ts": "2026-12-06T10:00:00.000001Z",
        "actor": "someone@host",
        "kind": "step.cached",
        "run_id": "01RUN",
        "payload_text": '{"a":1}',
        "prev_hash": "blake3:" + "1" * 64,
    }
    fields.update(changes)
    return Event(
        fields["seq"],
        fields["ts"],
        fields["actor"],
        fields["kind"],
        fields["run_id"],
        fields["payload_text"],
        fields["prev_hash"],
        event_hash(**fields),
    )


def test_a_remembered_hash_serves_only_the_fields_it_was_computed_from() -> None:
    seq = 987_654_321
    appended = _event(seq)
    remember_hashes([appended], [True])
    assert hashed_here(appended) == (appended.hash, True)
    assert appended.computed_hash() == appended.hash
    for column, value in [
        ("ts", "2026-12-06T10:00:00.000002Z"),
        ("actor", "mallory@host"),
        ("kind", "step.completed"),
        ("run_id", None),
        ("payload_text", '{"a":2}'),
        ("prev_hash", "blake3:" + "2" * 64),
    ]:
        edited = Event(*{**appended.fields(), column.replace("_text", ""): value}.values())
        assert hashed_here(edited) is None, column
        # The edited fields are hashed again: the edit shows.
        assert edited.computed_hash() != appended.hash, column
    # The stored hash is not part of what is remembered: an edited hash still fails.
    forged = Event(*{**appended.fields(), "hash": "blake3:" + "3" * 64}.values())
    assert forged.computed_hash() == appended.hash != forged.hash
    assert hashed_here(_event(seq + 1)) is None
