"""Which nodes a run's result names: the step events Run.outputs reads (execution.run)."""

from __future__ import annotations

from typing import Any

import pytest

from pipetrail.execution.run import _result_nodes


@pytest.mark.parametrize(
    ("ref", "nodes"),
    [
        (["train", "output"], {"train"}),
        ([["a", "output"], ["b", "model"]], {"a", "b"}),
        ({"x": ["a", "output"], "y": [["b", "output"], None], "z": None}, {"a", "b"}),
        ({"same": ["a", "output_0"], "again": ["a", "output_1"]}, {"a"}),
        (None, set()),
        ([], set()),
        ({}, set()),
        ([None, None], set()),
    ],
)
def test_result_nodes_are_the_node_ids_the_result_names(ref: Any, nodes: set[str]) -> None:
    assert _result_nodes(ref) == nodes
