"""Canonical JSON and canonical bytes (docs/adr/0001-digests-and-canonical-encoding.md)."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any

import pytest
from blake3 import blake3
from hypothesis import given
from hypothesis import strategies as st

from pipetrail.errors import UnhashableValueError
from pipetrail.hashing import canonical_bytes, canonical_json, digest_value
from pipetrail.hashing.canonical import CANONICAL_VERSION, to_canonical_obj

# -- canonical_json -----------------------------------------------------------------------


def test_keys_are_sorted_by_code_point() -> None:
    # "B" (U+0042) < "a" (U+0061) < "é" (U+00E9) < "€" (U+20AC): code point order,
    # not a locale or case-insensitive order.
    value = {"€": 4, "a": 2, "é": 3, "B": 1}
    assert canonical_json(value) == '{"B":1,"a":2,"é":3,"€":4}'


def test_nested_keys_are_sorted_too() -> None:
    value = {"z": {"y": 1, "x": [{"d": 1, "c": 2}]}, "a": None}
    assert canonical_json(value) == '{"a":null,"z":{"x":[{"c":2,"d":1}],"y":1}}'


def test_insertion_order_does_not_matter() -> None:
    first = {"alpha": 1, "beta": 2, "gamma": 3}
    second = OrderedDict([("gamma", 3), ("alpha", 1), ("beta", 2)])
    assert canonical_json(first) == canonical_json(second)


def test_no_insignificant_whitespace() -> None:
    text = canonical_json({"a": [1, 2, {"b": "c d"}], "e": "f"})
    assert text == '{"a":[1,2,{"b":"c d"}],"e":"f"}'
    # The only space left is the one inside the string value.
    assert text.count(" ") == 1
    assert "\n" not in text


def test_unicode_is_kept_not_escaped() -> None:
    text = canonical_json({"clé": "naïve ☃ 日本"})
    assert text == '{"clé":"naïve ☃ 日本"}'
    assert "\\u" not in text


def test_control_characters_are_escaped() -> None:
    # JSON requires escaping control characters even with ensure_ascii=False.
    assert canonical_json("a\nb\x00") == '"a\\nb\\u0000"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-7, "-7"),
        (2**70, "1180591620717411303424"),
        (1.0, "1.0"),
        (0.1, "0.1"),
        (-0.0, "-0.0"),
        (1e300, "1e+300"),
        ("text", '"text"'),
        ([], "[]"),
        ({}, "{}"),
    ],
)
def test_scalars_and_empty_containers(value: Any, expected: str) -> None:
    assert canonical_json(value) == expected


def test_floats_use_shortest_round_trip_form() -> None:
    value = 0.1 + 0.2
    text = canonical_json(value)
    assert text == repr(value) == "0.30000000000000004"
    assert float(text) == value


def test_int_and_float_stay_distinct() -> None:
    assert canonical_json(1) != canonical_json(1.0)
    assert canonical_json(True) != canonical_json(1)


@pytest.mark.parametrize(
    ("value", "tag"),
    [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")],
)
def test_non_finite_floats_are_tagged(value: float, tag: str) -> None:
    assert canonical_json(value) == '{"$float":"' + tag + '"}'
    assert canonical_json([value]) == '[{"$float":"' + tag + '"}]'
    assert canonical_json({"x": value}) == '{"x":{"$float":"' + tag + '"}}'
    # The output is strict JSON: no bare NaN/Infinity tokens.
    assert "NaN" not in canonical_json(value)
    assert "Infinity" not in canonical_json(value)


def test_to_canonical_obj_normalizes_nested_non_finite_floats() -> None:
    assert to_canonical_obj({"a": [math.inf, 1.5]}) == {"a": [{"$float": "inf"}, 1.5]}


def test_tuples_are_encoded_as_lists() -> None:
    assert canonical_json((1, "a", (2.5, None))) == '[1,"a",[2.5,null]]'
    assert canonical_json((1, 2)) == canonical_json([1, 2])


@pytest.mark.parametrize("key", [1, 1.5, None, True, ("a", "b"), b"bytes"])
def test_non_string_dict_keys_are_rejected(key: Any) -> None:
    with pytest.raises(UnhashableValueError, match="use string keys"):
        canonical_json({key: "value"})


def test_non_string_key_deep_inside_is_rejected() -> None:
    with pytest.raises(UnhashableValueError, match=r"dict key 3 of type int"):
        canonical_json({"outer": [{"ok": 1}, {3: "bad"}]})


@pytest.mark.parametrize(
    "value",
    [b"raw", {1, 2}, frozenset(), object(), 1 + 2j, bytearray(b"x")],
    ids=["bytes", "set", "frozenset", "object", "complex", "bytearray"],
)
def test_non_json_values_are_rejected_with_their_type(value: Any) -> None:
    with pytest.raises(UnhashableValueError, match=type(value).__qualname__):
        canonical_json(value)


def test_non_json_value_nested_in_list_is_rejected() -> None:
    with pytest.raises(UnhashableValueError, match="no canonical"):
        canonical_json([1, 2, {"a": object()}])


def test_lone_surrogate_is_unhashable_not_a_unicode_error() -> None:
    # os.fsdecode() of a non-UTF-8 file name yields lone surrogates; they have no UTF-8
    # encoding, so canonical bytes must refuse them with our error, not UnicodeEncodeError.
    with pytest.raises(UnhashableValueError, match="UTF-8"):
        canonical_bytes({"path": "data/\udcff.csv"})


# -- canonical_bytes ----------------------------------------------------------------------


def test_canonical_bytes_has_version_prefix() -> None:
    assert CANONICAL_VERSION == b"pt-c1\x00"
    assert canonical_bytes({"b": 1, "a": "é"}) == b'pt-c1\x00{"a":"\xc3\xa9","b":1}'


def test_canonical_bytes_is_prefix_plus_utf8_canonical_json() -> None:
    value = {"name": "日本", "values": [1, 2.5, None, math.nan]}
    data = canonical_bytes(value)
    assert data.startswith(CANONICAL_VERSION)
    assert data[len(CANONICAL_VERSION) :].decode("utf-8") == canonical_json(value)


def test_digest_value_hashes_canonical_bytes() -> None:
    value = {"x": [1, 2, 3]}
    assert digest_value(value) == "blake3:" + blake3(canonical_bytes(value)).hexdigest()


# -- golden digests -----------------------------------------------------------------------
#
# GOLDEN VALUES. These digests pin pipetrail's canonical encoding (version tag, key order,
# separators, float spelling, non-finite tags). If one of these assertions fails, the
# encoding changed, and every cache key, artifact id and ledger hash ever recorded changes
# with it. Such a change must be deliberate: bump the version tag, add a CHANGELOG entry
# and update docs/adr/0001-digests-and-canonical-encoding.md. Never "fix" this test by
# pasting the new digests.
GOLDEN_DIGESTS: list[tuple[Any, str]] = [
    (None, "blake3:0d3292c04f87808e19e192abf80b6be65eb3326b75212b038d39756e8ff24ea7"),
    (True, "blake3:3577c6b66c7cc8b725b18c63a859e8f9e603b6d945dc06ec8b659e5971fdc702"),
    (0, "blake3:460dae1bb88fc127d6093bbb312bb9a8bfc7054cd1fcd7f8481db11436672e59"),
    (1, "blake3:07e7f19c462be873020adfee2f9440942f041a5d85d65d31ae2700770bd669be"),
    (1.0, "blake3:c6f04a9a51a5ac9b7dae2d969a9602fdc0d466b88f7669eaf29336414908a742"),
    (0.1, "blake3:acb171bf28931f5f456f1c976081d8582402eafc1ca2bd375dbda7c66b6b47a8"),
    ("pipetrail", "blake3:2371947f537a35cbed19907c0893489e3f1bd279f92efb8a7bc0db01e33ea913"),
    ("é", "blake3:e7068ee9b9dd534623f66dd083ebfa5d6ec1afcfad32ffb51244d9e7361fcbdd"),
    ([], "blake3:1c7e969632717baf5999d211df5fe67e83d933987c53c579575cfddaa0c54a15"),
    ({}, "blake3:fcadbff4dca1375d909cbc822f9e2e4a7606622200290a086248e6efad0cf342"),
    (
        {"b": [1, 2.5, None], "a": "x"},
        "blake3:731afbec9a4d9b400ae64d3fa938a827962a1979a25811a1baf28d5a4f33ce30",
    ),
    (math.nan, "blake3:102a4592ff8a865b86143b8c740e9eb7f1ddbf1a4996edcc0f2bdcc6b8fcdbbf"),
    (math.inf, "blake3:8bad10a068a0bc52b8d783ce3dd5fa54aeb26ad8262b96faa524f235577336c1"),
    (
        [1, "two", {"three": 3.0}],
        "blake3:1a30504c83848219c51ef192c935788398bf34b3a19138f98d7c6ce367ff874e",
    ),
]


@pytest.mark.parametrize(("value", "expected"), GOLDEN_DIGESTS, ids=repr)
def test_golden_digest_value(value: Any, expected: str) -> None:
    # See the GOLDEN VALUES comment above before changing anything here.
    assert digest_value(value) == expected


def test_golden_digests_are_all_distinct() -> None:
    digests = [expected for _, expected in GOLDEN_DIGESTS]
    assert len(set(digests)) == len(digests)


# -- properties ---------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
json_like = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@given(json_like)
def test_canonical_json_round_trips_through_json(value: Any) -> None:
    text = canonical_json(value)
    assert canonical_json(json.loads(text)) == text


@given(st.dictionaries(st.text(max_size=8), st.integers(), max_size=8))
def test_canonical_json_does_not_depend_on_insertion_order(value: dict[str, int]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert canonical_json(reordered) == canonical_json(value)


@given(json_like)
def test_canonical_bytes_are_valid_utf8_after_the_tag(value: Any) -> None:
    data = canonical_bytes(value)
    assert data[: len(CANONICAL_VERSION)] == CANONICAL_VERSION
    assert data[len(CANONICAL_VERSION) :].decode("utf-8") == canonical_json(value)
