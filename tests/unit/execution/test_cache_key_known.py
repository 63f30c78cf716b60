"""A cache key computed with components known plain is the key computed without."""

from __future__ import annotations

from typing import Any

import pytest

from pipetrail.errors import UnhashableValueError
from pipetrail.execution.cache import cache_key, checked_cache_key
from pipetrail.hashing.canonical import canonical_bytes, checked_plain_bytes, is_plain_but

_KNOWN = frozenset({"code_parts", "distributions", "version", "output_names", "inputs"})


def _components(**changes: Any) -> dict[str, Any]:
    components: dict[str, Any] = {
        "step": "inc",
        "code": "blake3:" + "1" * 64,
        "code_parts": {"m.inc": "blake3:" + "2" * 64},
        "version": None,
        "output_names": ["output"],
        "inputs": {"x": "blake3:" + "3" * 64},
        "input_formats": {"x": "json@1 builtins.int 13f75a58bcb6"},
        "params": {},
        "distributions": {"python": "3.11"},
        "seed": 2714226396,
        "allow_pickle": False,
        "formats": "bytes@1 json@1",
    }
    components.update(changes)
    return components


def test_known_components_give_the_same_key_and_flag() -> None:
    components = _components()
    assert checked_cache_key(components, _KNOWN) == checked_cache_key(components)
    assert checked_cache_key(components, _KNOWN)[1] is True


@pytest.mark.parametrize(
    "changes",
    [
        {"params": {"lr": 1e16}},  # repr writes 1e+16, orjson 1e16: the reference encodes
        {"params": {"lr": float("nan")}},
        {"params": {"big": 2**70}},  # beyond orjson's integers
        {"input_formats": {"x": 1e-7}},
    ],
)
def test_a_component_not_known_is_still_walked(changes: dict[str, Any]) -> None:
    components = _components(**changes)
    key, plain = checked_cache_key(components, _KNOWN)
    assert plain is False
    assert key == cache_key(components) == checked_cache_key(components)[0]


def test_a_string_orjson_refuses_in_a_known_component_is_refused_as_before() -> None:
    components = _components(inputs={"x": "\ud800"})
    with pytest.raises(UnhashableValueError):
        checked_cache_key(components)
    with pytest.raises(UnhashableValueError):
        checked_cache_key(components, _KNOWN)


def test_checked_plain_bytes_falls_back_to_the_reference_encoder() -> None:
    assert checked_plain_bytes({"a": [1, "b"]}) == (canonical_bytes({"a": [1, "b"]}), True)
    with pytest.raises(UnhashableValueError):
        checked_plain_bytes({"a": "\ud800"})


def test_is_plain_but_walks_only_the_members_not_known() -> None:
    value = {"known": [1e16], "other": {"x": 1.5}}
    assert is_plain_but(value, frozenset({"known"})) is True
    assert is_plain_but(value, frozenset()) is False
    assert is_plain_but({"other": {"x": 1e16}}, frozenset({"known"})) is False
