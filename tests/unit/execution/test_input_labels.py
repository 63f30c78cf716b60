"""The label of how an input is read, as a node's cache key holds it."""

from __future__ import annotations

from typing import Any

import pytest

from pipetrail.execution.node_inputs import _label_of
from pipetrail.store.serializers.registry import reading_label


@pytest.mark.parametrize(
    "reading",
    [
        {"format": "json@1", "type_name": "builtins.int", "size": 1, "meta": {}},
        {"format": "json@1", "type_name": "builtins.int", "size": 2, "meta": {}},
        {"format": "json@1", "type_name": "builtins.bool", "size": 1, "meta": {}},
        {"format": "json@2", "type_name": "builtins.int", "size": 1, "meta": {}},
        # Not given by the three alone: labelled from the whole reading.
        {"format": "json@1", "type_name": "builtins.int", "size": True, "meta": {}},
        {"format": "json@1", "type_name": "builtins.int", "size": 1, "meta": {"k": 1}},
        {"format": "json@1", "type_name": "builtins.int", "size": 1, "meta": {}, "blob": "b"},
        {"format": "json@1", "type_name": "builtins.int", "size": 1, "meta": {}, "sealed": 1},
    ],
)
def test_a_label_is_the_label_of_the_whole_reading(reading: dict[str, Any]) -> None:
    # Twice: the second is the label remembered for the first.
    assert _label_of(dict(reading)) == reading_label(reading)
    assert _label_of(dict(reading)) == reading_label(reading)


def test_readings_differing_in_size_alone_have_their_own_labels() -> None:
    one = {"format": "json@1", "type_name": "builtins.int", "size": 1, "meta": {}}
    assert _label_of(one) != _label_of({**one, "size": 2})
