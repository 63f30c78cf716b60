"""The orjson path of canonical JSON writes exactly the reference encoder's bytes."""

from __future__ import annotations

import datetime
import enum
import math
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetrail.errors import UnhashableValueError
from pipetrail.hashing import canonical_bytes, canonical_json
from pipetrail.hashing.canonical import (
    CANONICAL_VERSION,
    _orjson_safe,
    checked_canonical_bytes,
    checked_canonical_json,
    checked_json_of_members,
    reference_json,
)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**65)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e20, max_value=1e20)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x7F))
    | st.sampled_from(["\u2028", "\u2029", "\x7f", "\x00", "\x1f", '"', "\\", "/", "\ud800"])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(st.text(), inner, max_size=5)
    ),
    max_leaves=30,
)


def _reference_bytes(value: Any) -> bytes:
    return CANONICAL_VERSION + reference_json(value).encode("utf-8")


@settings(max_examples=2000, deadline=None)
@given(_values)
def test_orjson_and_reference_give_the_same_text(value: Any) -> None:
    assert canonical_json(value) == reference_json(value)


@settings(max_examples=1000, deadline=None)
@given(_values)
def test_orjson_and_reference_give_the_same_bytes(value: Any) -> None:
    try:
        expected = _reference_bytes(value)
    except UnicodeEncodeError:
        with pytest.raises(UnhashableValueError, match="no UTF-8 encoding"):
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == expected


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_orjson_encodes_matches_repr(value: float) -> None:
    assert canonical_json([value]) == "[" + repr(value) + "]"


@pytest.mark.parametrize(
    "value",
    [
        1e16,
        1e-5,
        1.5e300,
        math.nan,
        math.inf,
        {"x": [1.0, float("-inf")]},
    ],
)
def test_values_orjson_would_write_differently_take_the_reference_path(value: Any) -> None:
    assert not _orjson_safe(value)
    try:
        expected = reference_json(value)
    except UnhashableValueError:
        with pytest.raises(UnhashableValueError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, {"n": 2**64}, [1, -(2**70)], {"a": {"b": [2**64]}}],
)
def test_integers_orjson_refuses_are_written_by_the_reference_encoder(value: Any) -> None:
    # Their type does not rule them out: orjson refuses them, and the reference writes them.
    expected = reference_json(value)
    assert checked_canonical_json(value) == (expected, False)
    assert checked_canonical_bytes(value) == (_reference_bytes(value), False)
    assert checked_json_of_members({"v": value}, frozenset()) == (
        reference_json({"v": value}),
        False,
    )
    for limit in (2**64 - 1, -(2**63)):  # the extremes orjson writes, as repr does
        assert checked_canonical_json([limit]) == ("[" + repr(limit) + "]", True)


class _Color(enum.Enum):
    RED = "red"


class _Name(str):
    pass


@dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        _Color.RED,
        uuid.UUID(int=1),
        datetime.date(2024, 1, 2),
        _Point(1),
        {"k": [_Point(1)]},
    ],
    ids=["enum", "uuid", "date", "dataclass", "nested-dataclass"],
)
def test_types_orjson_encodes_but_the_canonical_form_refuses_are_refused(value: Any) -> None:
    with pytest.raises(UnhashableValueError):
        canonical_json(value)
    with pytest.raises(UnhashableValueError):
        canonical_bytes(value)


def test_a_str_subclass_is_encoded_as_its_text() -> None:
    assert canonical_json({"a": _Name("x")}) == reference_json({"a": "x"}) == '{"a":"x"}'


@pytest.mark.parametrize(
    "value",
    [
        1e16,
        9999999999999998.0,
        1e-4,
        math.nextafter(1e-4, 0.0),
        math.nextafter(1e-4, 1.0),
        math.nextafter(1e16, 0.0),
        -1e16,
        -1e-4,
        -math.nextafter(1e-4, 0.0),
        0.0,
        -0.0,
        5e-324,
        1.7976931348623157e308,
        123456789012345.67,
    ],
)
def test_floats_at_the_exponent_bounds_take_the_path_repr_gives(value: float) -> None:
    # In a dict, in a list, and alone: each checks its members in its own loop.
    for wrapped in ({"v": value}, [value], value):
        assert _orjson_safe(wrapped) == ("e" not in repr(value))
        assert canonical_json(wrapped) == reference_json(wrapped)


@settings(max_examples=5000, deadline=None)
@given(st.floats() | st.floats(min_value=1e-6, max_value=1e-3) | st.floats(min_value=1e15))
def test_a_float_is_plain_exactly_when_repr_has_no_exponent(value: float) -> None:
    plain = math.isfinite(value) and "e" not in repr(value)
    assert _orjson_safe({"v": value}) == plain
    assert _orjson_safe([value]) == plain


# (Keys that are not exactly a str are refused by orjson itself: see the tests below.)
_NESTED_ODD = [
    {"x": [uuid.UUID(int=1)]},
    {"x": (1, _Color.RED)},
    {"x": {"y": _Name("s")}},
    {"x": {"y": [1, "a", None, True, 1e16]}},
    {"x": {"y": {"z": math.nan}}},
    {"x": [], "y": {}, "z": (), "w": [[], {}, [1e-5]]},
]


@pytest.mark.parametrize("value", _NESTED_ODD)
def test_odd_members_below_leaf_only_siblings_take_the_reference_path(value: Any) -> None:
    # Empty and leaf-only containers are not walked: what is odd deeper still is found.
    assert not _orjson_safe(value)
    try:
        expected = reference_json(value)
    except UnhashableValueError:
        with pytest.raises(UnhashableValueError):
            canonical_json(value)
        return
    assert checked_canonical_json(value) == (expected, False)
    wrapped = {"v": value, "plain": {"a": [1, 2]}}
    assert checked_json_of_members(wrapped, frozenset({"plain"})) == (
        reference_json(wrapped),
        False,
    )


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.text(), _values, max_size=6))
def test_members_checked_or_known_give_the_text_and_flag_of_a_full_check(
    value: dict[str, Any],
) -> None:
    # A member is known plain only when a full check of it says so (what callers ensure).
    known = frozenset(k for k, v in value.items() if _orjson_safe(v))
    assert checked_json_of_members(value, known) == checked_canonical_json(value)
    assert checked_json_of_members(value, frozenset()) == checked_canonical_json(value)


@settings(max_examples=1000, deadline=None)
@given(_values)
def test_a_plain_value_is_encoded_unwalked_to_the_same_bytes(value: Any) -> None:
    from pipetrail.hashing.canonical import is_plain, plain_canonical_bytes
    from pipetrail.hashing.digest import digest_plain, digest_value

    if not is_plain(value):
        return  # only values the caller knows to be plain are given to it
    try:
        expected = canonical_bytes(value)
    except UnhashableValueError:
        with pytest.raises(UnhashableValueError, match="no UTF-8 encoding"):
            plain_canonical_bytes(value)
        return
    assert plain_canonical_bytes(value) == expected
    assert digest_plain(value) == digest_value(value)


def test_a_plain_value_orjson_refuses_is_decided_as_canonical_bytes_decides() -> None:
    from pipetrail.hashing.canonical import plain_canonical_bytes

    assert plain_canonical_bytes({"n": 2**70}) == canonical_bytes({"n": 2**70})
    with pytest.raises(UnhashableValueError, match="no UTF-8 encoding"):
        plain_canonical_bytes({"path": "\ud800"})


class _Key(str):
    pass


class _KeyEnum(enum.StrEnum):
    A = "a"


@pytest.mark.parametrize("key", [_Key("k"), _KeyEnum.A])
def test_a_key_not_exactly_a_str_is_refused_by_orjson_and_written_by_the_reference(
    key: Any,
) -> None:
    # The walk does not look at keys: orjson refuses them, so the reference encoder
    # writes (or refuses) every value holding one, at any depth.
    for value in ({key: 1}, {"x": [{key: "a"}]}, ({"y": {key: None}},)):
        text, by_orjson = checked_canonical_json(value)
        assert not by_orjson
        assert text == reference_json(value)
        assert checked_canonical_bytes(value) == (_reference_bytes(value), False)
        known = frozenset({"x"})
        if isinstance(value, dict):
            assert checked_json_of_members(value, known) == (reference_json(value), False)


@pytest.mark.parametrize("key", [1, True, None, 1.5, _Color.RED, uuid.UUID(int=1)])
def test_a_key_neither_encoder_writes_is_refused(key: Any) -> None:
    with pytest.raises(UnhashableValueError):
        canonical_json({"x": {key: 1}})
    with pytest.raises(UnhashableValueError):
        canonical_bytes([{key: 1}])
    with pytest.raises(UnhashableValueError):
        checked_json_of_members({"x": {key: 1}}, frozenset({"x"}))
