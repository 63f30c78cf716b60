"""OpenLineage run ids: pipetrail ULIDs become deterministic, time-ordered UUIDv7s."""

from __future__ import annotations

import uuid

from pipetrail.core.clock import new_id
from pipetrail.lineage.exports import run_uuid

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid_int(text: str) -> int:
    value = 0
    for char in text:
        value = value << 5 | _CROCKFORD.index(char)
    return value


def test_a_ulid_becomes_a_uuid7_with_the_same_milliseconds() -> None:
    identifier = new_id()
    value = uuid.UUID(run_uuid(identifier))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == _ulid_int(identifier) >> 80


def test_only_the_version_and_variant_bits_change() -> None:
    identifier = new_id()
    mask = ~((0xF << 76) | (0x3 << 62)) & (2**128 - 1)
    assert uuid.UUID(run_uuid(identifier)).int & mask == _ulid_int(identifier) & mask


def test_the_mapping_is_deterministic_and_keeps_order() -> None:
    first, second = new_id(), new_id()
    assert run_uuid(first) == run_uuid(first)
    assert run_uuid(first.lower()) == run_uuid(first)
    assert run_uuid(first) != run_uuid(second)
    if first[:10] != second[:10]:  # different milliseconds: order follows the ids
        assert (run_uuid(first) < run_uuid(second)) == (first < second)


def test_a_pinned_id_maps_to_a_pinned_uuid() -> None:
    # Golden: changing the mapping changes every exported runId; do it only on purpose.
    assert run_uuid("01M8DQB5A3WVQQ58H2849A2SYM") == "01a21b75-9543-76ef-b2a2-224112a167d4"


def test_other_ids_map_through_uuid5() -> None:
    value = uuid.UUID(run_uuid("not-a-ulid"))
    assert value.version == 5
    assert run_uuid("not-a-ulid") == str(value)
    # 26 Crockford characters above 2**128 are not a ULID either.
    assert uuid.UUID(run_uuid("8" + "0" * 25)).version == 5
