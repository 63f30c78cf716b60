"""Node identities: independent of call position and of names, distinct for every call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.core.pipeline import PipelineDefinition
from pipetrail.core.step import step
from pipetrail.execution.node_identity import node_identities

if TYPE_CHECKING:
    from pipetrail.core.graph import PipelineGraph


@step
def load() -> list[int]:
    return [1, 2, 3]


@step
def train(rows: list[int], C: float = 1.0) -> dict[str, float]:
    return {"C": C}


@step
def evaluate(model: dict[str, float]) -> float:
    return 0.0


def fan(cs: list[float], named: bool = False, repeat: int = 1) -> None:
    rows = load()
    for c in cs:
        for _ in range(repeat):
            model = train.named(f"lr-{c}")(rows, C=c) if named else train(rows, C=c)
            evaluate(model)


def identities(**params: Any) -> tuple[PipelineGraph, dict[str, str]]:
    definition = PipelineDefinition(fan)
    graph = definition.build(definition.resolve_params(params))
    return graph, node_identities(graph).identity


def by_c(graph: PipelineGraph, found: dict[str, str]) -> dict[float, tuple[str, str]]:
    """C -> (identity of its train node, identity of the evaluate node reading it)."""
    out = {}
    for node in graph.nodes.values():
        if node.step.name == "evaluate":
            up = graph.nodes[node.upstream()[0]]
            out[up.inputs["C"]] = (found[up.id], found[node.id])
    return out


def test_a_step_called_once_is_identified_by_its_place_whatever_its_params() -> None:
    _, one = identities(cs=[0.1])
    _, other = identities(cs=[5.0])
    assert one == other == {"load": "load", "train": "train", "evaluate": "evaluate"}


def test_reordering_or_growing_a_list_keeps_each_calls_identity() -> None:
    graph, first = identities(cs=[0.1, 1.0])
    reordered = by_c(*identities(cs=[1.0, 0.1]))
    grown = by_c(*identities(cs=[10.0, 0.1, 1.0]))
    before = by_c(graph, first)
    assert reordered == before
    assert {c: grown[c] for c in before} == before
    assert len({ident for pair in grown.values() for ident in pair}) == 6
    assert all(ident.startswith("train@") for ident, _ in grown.values())


def test_naming_the_calls_keeps_their_identities() -> None:
    assert by_c(*identities(cs=[0.1, 1.0], named=True)) == by_c(*identities(cs=[0.1, 1.0]))


def test_identical_calls_are_told_apart_by_order_and_so_are_their_consumers() -> None:
    graph, found = identities(cs=[0.1], repeat=2)
    assert found["train"] != found["train[1]"]
    assert found["evaluate"] != found["evaluate[1]"]
    assert len(set(found.values())) == len(graph.nodes)


def _reference_identities(graph: PipelineGraph) -> dict[str, str]:
    """The identities as the module docstring defines them, every value hashed by digest_value."""
    from collections import Counter

    from pipetrail.execution.node_identity import IDENTITY_FORMAT, _wired, plain_params
    from pipetrail.hashing import digest_value

    found: dict[str, str] = {}
    calls = Counter(node.base for node in graph.nodes.values())
    seen: Counter[str] = Counter()
    for node_id, node in graph.nodes.items():
        if calls[node.base] == 1:
            found[node_id] = node.base
            continue
        params, _ = plain_params(node)
        inputs = {
            name: _wired(value, found) for name, value in node.inputs.items() if name not in params
        }
        shape = digest_value(
            {"format": IDENTITY_FORMAT, "step": node.base, "params": params, "inputs": inputs}
        )
        digest = digest_value(
            {"format": IDENTITY_FORMAT, "shape": shape, "occurrence": seen[shape]}
        )
        seen[shape] += 1
        found[node_id] = f"{node.base}@{digest.split(':', 1)[-1][:32]}"
    return found


@step
def combine(models: list[dict[str, float]], weight: float = 0.5) -> float:
    return weight


def mixed(cs: list[float]) -> None:
    """Fan-outs whose shapes are hashed without a walk, and others that need one."""
    from pipetrail.core.graph import source

    rows = load()
    models = [train(rows, C=c) for c in cs]  # plain floats, and floats orjson writes otherwise
    for model in models:
        evaluate(model)
    combine(models)  # a list of step outputs
    combine(models, weight=float("nan"))
    combine([{"rows": source("data/a.csv")}])  # a source inside a value
    combine([{"rows": source("data/a.csv")}])


def test_identities_are_those_every_value_hashed_by_digest_value_gives() -> None:
    definition = PipelineDefinition(mixed)
    cs = [0.1, 1.0, 1e20, 1e-7, 3.0, 3.0]
    graph = definition.build(definition.resolve_params({"cs": cs}))
    found = node_identities(graph).identity
    assert found == _reference_identities(graph)
    assert len(set(found.values())) == len(graph.nodes)
