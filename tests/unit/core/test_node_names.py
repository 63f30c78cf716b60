"""Naming a node at the call site: ``step.named(...)``, its ids, and the names refused."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pipetrail.core.graph import PipelineGraph, step_base
from pipetrail.core.pipeline import PipelineDefinition
from pipetrail.core.step import step
from pipetrail.errors import DefinitionError


@step
def load() -> list[int]:
    return [1, 2, 3]


@step
def train(rows: list[int], C: float = 1.0, name: str = "model") -> dict[str, Any]:
    # A parameter called ``name``: naming the node must not clash with it.
    return {"C": C, "name": name}


def build(func: Any, **params: Any) -> PipelineGraph:
    definition = PipelineDefinition(func)
    return definition.build(definition.resolve_params(params))


def test_named_calls_get_ids_from_their_names_and_do_not_renumber_the_others() -> None:
    def fan(cs: list[float]) -> None:
        rows = load()
        train(rows, C=0.5)
        for c in cs:
            train.named(f"lr-{c}")(rows, C=c, name="kept")
        train(rows, C=2.0)

    graph = build(fan, cs=[0.1, 1.0])
    assert list(graph.nodes) == ["load", "train", "train[lr-0.1]", "train[lr-1.0]", "train[1]"]
    named = graph.nodes["train[lr-0.1]"]
    assert named.name == "lr-0.1"
    assert named.inputs["name"] == "kept"  # the step's own parameter is untouched
    assert named.base == "train"
    assert graph.nodes["train[1]"].name is None


def test_a_named_call_outside_a_pipeline_just_runs_the_function() -> None:
    assert train.named("x")([1], C=3.0) == {"C": 3.0, "name": "model"}


def test_a_duplicate_name_is_refused_naming_the_step_and_the_name() -> None:
    def twice() -> None:
        rows = load()
        train.named("lr")(rows, C=0.1)
        train.named("lr")(rows, C=1.0)

    with pytest.raises(DefinitionError, match=r"calls step 'train' twice with the node name 'lr'"):
        build(twice)


def test_the_same_name_may_label_calls_of_different_steps() -> None:
    @step
    def evaluate(model: dict[str, Any]) -> float:
        return 1.0

    def branch() -> None:
        model = train.named("lr")(load(), C=0.1)
        evaluate.named("lr")(model)

    assert set(build(branch).nodes) == {"load", "train[lr]", "evaluate[lr]"}


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("a" * 101, "(at most 100)"),
        ("lr 0.1", "may hold only"),
        ("a/b", "may hold only"),
        ("a[1]", "may hold only"),
        ("run:x", "may hold only"),
        ("12", "all digits"),
    ],
)
def test_invalid_names_are_refused_with_the_reason(name: str, problem: str) -> None:
    with pytest.raises(DefinitionError, match=rf"step 'train': node name .* {re.escape(problem)}"):
        train.named(name)


def test_a_name_that_is_not_text_is_refused() -> None:
    with pytest.raises(DefinitionError, match="node name must be text, got float"):
        train.named(0.1)  # type: ignore[arg-type]


def test_names_allow_the_characters_params_usually_print_with() -> None:
    for name in ("lr-0.1", "C=1e-05", "rf+depth,3", "_x", "0.5"):
        assert train.named(name) is not None


def test_step_base_drops_positions_and_names() -> None:
    assert step_base("outer[1]/train[lr-0.1]") == "outer/train"
    assert step_base("train") == "train"
    assert step_base("train[2]") == "train"
    assert step_base("train[lr-0.1]") == "train"
    assert step_base("outer/train") == "outer/train"


def test_an_output_placeholder_is_frozen_and_copies_whole() -> None:
    import copy as copying
    import dataclasses

    from pipetrail.core.graph import OutputRef

    ref = OutputRef("train[2]", 1, "model")
    assert (ref.node_id, ref.index, ref.name) == ("train[2]", 1, "model")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.name = "other"  # type: ignore[misc]
    copy = copying.deepcopy(ref)  # by the same reduction as pickle
    assert (copy.node_id, copy.index, copy.name) == ("train[2]", 1, "model")
    assert dataclasses.astuple(copy) == ("train[2]", 1, "model")
