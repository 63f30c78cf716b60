"""Graph building: node ids, placeholders, nesting, sources and dependencies."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pipetrail.core.graph import (
    GraphBuilder,
    MultiOutput,
    Node,
    OutputRef,
    PipelineGraph,
    SourceRef,
    current_builder,
    source,
)
from pipetrail.core.pipeline import PipelineDefinition
from pipetrail.core.step import step
from pipetrail.errors import DefinitionError


@step
def load(path: Any) -> list[int]:
    # "Any": inside a build it receives a source() placeholder, when run a Path.
    return [1, 2, 3]


@step
def clean(rows: list[int], threshold: int = 0) -> list[int]:
    return [r for r in rows if r > threshold]


@step
def split(rows: list[int]) -> tuple[list[int], list[int]]:
    return rows[:1], rows[1:]


@step(outputs=("model", "metrics"))
def train(rows: list[int], lr: float = 0.1) -> Any:
    return 0, {"acc": 1.0}


@step
def combine(parts: list[list[int]]) -> list[int]:
    return [x for part in parts for x in part]


@step
def report(model: int, extra: dict[str, Any] | None = None) -> str:
    return "ok"


def build(func: Any, **params: Any) -> PipelineGraph:
    definition = PipelineDefinition(func)
    return definition.build(definition.resolve_params(params))


# -- node ids -----------------------------------------------------------------------------


def test_single_calls_use_the_step_name() -> None:
    def pipe() -> Any:
        rows = load(source("data.csv"))
        return clean(rows)

    graph = build(pipe)
    assert graph.name == "pipe"
    assert list(graph.nodes) == ["load", "clean"]
    assert graph.nodes["clean"].step is clean
    assert graph.result == OutputRef("clean", 0, "output")


def test_fan_out_in_a_loop_numbers_later_calls() -> None:
    def pipe(n: int = 3) -> Any:
        rows = load(source("data.csv"))
        cleaned = [clean(rows, threshold=i) for i in range(n)]
        return combine(cleaned)

    graph = build(pipe, n=4)
    assert list(graph.nodes) == ["load", "clean", "clean[1]", "clean[2]", "clean[3]", "combine"]
    assert [graph.nodes[i].inputs["threshold"] for i in ("clean", "clean[1]", "clean[3]")] == [
        0,
        1,
        3,
    ]
    assert graph.nodes["combine"].upstream() == ["clean", "clean[1]", "clean[2]", "clean[3]"]


def test_builds_are_independent() -> None:
    def pipe() -> Any:
        return clean(load(source("data.csv")))

    assert list(build(pipe).nodes) == ["load", "clean"]
    # Counters start over for every build: no "clean[1]" on the second build.
    assert list(build(pipe).nodes) == ["load", "clean"]


def test_node_records_bound_inputs_with_defaults() -> None:
    def pipe() -> Any:
        rows = load(source("data.csv"))
        return train(rows)

    node = build(pipe).nodes["train"]
    assert isinstance(node, Node)
    assert node.inputs == {"rows": OutputRef("load", 0, "output"), "lr": 0.1}
    assert node.output_names == ("model", "metrics")


def test_explicit_step_name_is_the_node_id() -> None:
    @step(name="ingest.v2")
    def ingest() -> int:
        return 1

    def pipe() -> Any:
        return [ingest(), ingest()]

    assert list(build(pipe).nodes) == ["ingest.v2", "ingest.v2[1]"]


# -- multiple outputs ---------------------------------------------------------------------


def test_multi_output_unpacking() -> None:
    unpacked: list[Any] = []

    def pipe() -> Any:
        first, rest = split(load(source("data.csv")))
        unpacked.extend([first, rest])
        return combine([first, rest])

    graph = build(pipe)
    assert unpacked == [OutputRef("split", 0, "output_0"), OutputRef("split", 1, "output_1")]
    assert graph.nodes["combine"].upstream() == ["split"]


def test_multi_output_attribute_access_by_name() -> None:
    seen: dict[str, Any] = {}

    def pipe() -> Any:
        out = train(load(source("data.csv")))
        seen["out"] = out
        return report(out.model)

    graph = build(pipe)
    out = seen["out"]
    assert isinstance(out, MultiOutput)
    assert len(out) == 2
    assert out.metrics == OutputRef("train", 1, "metrics")
    assert out[0] is out.model
    assert graph.nodes["report"].inputs["model"] == OutputRef("train", 0, "model")


def test_multi_output_unknown_attribute() -> None:
    out = MultiOutput([OutputRef("train", 0, "model")])
    with pytest.raises(AttributeError, match="weights"):
        _ = out.weights


# -- placeholders refuse to act like values -----------------------------------------------


def test_placeholder_in_if_raises() -> None:
    def pipe() -> Any:
        rows = load(source("data.csv"))
        if rows:
            return clean(rows)
        return rows

    with pytest.raises(DefinitionError, match="cannot be used in a condition") as info:
        build(pipe)
    assert "'load'" in str(info.value)
    assert "branch on parameters instead" in str(info.value)


def test_unpacking_a_single_output_raises() -> None:
    def pipe() -> Any:
        first, _second = load(source("data.csv"))
        return first

    with pytest.raises(DefinitionError, match="step 'load' has a single output") as info:
        build(pipe)
    assert "tuple[...] return annotation" in str(info.value)


def test_attribute_access_on_placeholder_raises() -> None:
    def pipe() -> Any:
        rows = load(source("data.csv"))
        return clean(rows.copy())

    with pytest.raises(DefinitionError, match=r"'\.copy' cannot be used here") as info:
        build(pipe)
    message = str(info.value)
    assert "do this inside a step" in message
    assert "'load'" in message


MISUSES: dict[str, Any] = {
    "len": lambda df: len(df),
    "index": lambda df: df["a"],
    "set item": lambda df: df.__setitem__("a", 1),
    "add": lambda df: df + 1,
    "radd": lambda df: 1 + df,
    "in-place add": lambda df: df.__iadd__(1),
    "divide": lambda df: df / 2,
    "compare": lambda df: df > 0,
    "equal": lambda df: df == 1,
    "not equal": lambda df: df != "x",
    "contains": lambda df: "a" in df,
    "str": lambda df: str(df),
    "f-string": lambda df: f"{df}.csv",
    "int": lambda df: int(df),
    "float": lambda df: float(df),
    "negate": lambda df: -df,
    "iterate": lambda df: [row for row in df],
    "slice": lambda df: [1, 2, 3][df:],
    "attribute": lambda df: df.columns,
    "condition": lambda df: bool(df),
}


@pytest.mark.parametrize("use", MISUSES.values(), ids=MISUSES.keys())
def test_every_use_of_an_output_placeholder_is_a_clear_definition_error(use: Any) -> None:
    def pipe() -> Any:
        rows = load(source("data.csv"))
        use(rows)
        return rows

    with pytest.raises(DefinitionError) as info:
        build(pipe)
    message = str(info.value)
    assert "the output 'output' of step 'load'" in message
    assert "has no value while the pipeline is being built" in message
    assert "inside a step" in message or "branch on parameters" in message


@pytest.mark.parametrize(
    "use",
    [MISUSES["len"], MISUSES["add"], MISUSES["condition"], MISUSES["str"], MISUSES["equal"]],
    ids=["len", "add", "condition", "str", "equal"],
)
def test_every_use_of_a_source_placeholder_is_a_clear_definition_error(use: Any) -> None:
    with pytest.raises(DefinitionError) as info:
        use(source("data.csv"))
    message = str(info.value)
    assert "source('data.csv') is a placeholder" in message
    assert "pass it to a step" in message


def test_a_source_placeholder_cannot_be_joined_into_a_path() -> None:
    with pytest.raises(DefinitionError, match="pass it to a step"):
        _ = source("data") / "x.csv"  # type: ignore[operator]  # refused at run time


def test_placeholders_compare_and_hash_among_themselves() -> None:
    a, b = OutputRef("load", 0, "output"), OutputRef("load", 0, "output")
    assert a == b
    assert a != OutputRef("load", 1, "other")
    assert len({a, b}) == 1
    assert {source("x.csv"): 1}[source("x.csv")] == 1
    assert "OutputRef(node_id='load'" in repr(a)


def test_dunder_lookup_on_placeholder_is_a_normal_attribute_error() -> None:
    ref = OutputRef("load", 0, "output")
    # Python protocols (copy, pickle, numpy) probe dunders and expect AttributeError.
    assert not hasattr(ref, "__array__")
    assert ref.node_id == "load"


def test_source_placeholder_has_no_path_yet() -> None:
    with pytest.raises(DefinitionError, match="is a placeholder while the pipeline is being"):
        os.fspath(source("data.csv"))
    with pytest.raises(DefinitionError, match="placeholder"):
        Path(source("data.csv"))


def test_output_of_another_build_is_refused() -> None:
    leaked: list[Any] = []

    def first() -> Any:
        rows = load(source("data.csv"))
        leaked.append(rows)
        return rows

    def second() -> Any:
        return clean(leaked[0])

    build(first)
    with pytest.raises(DefinitionError, match="belongs to a different pipeline build") as info:
        build(second)
    assert "step 'clean' parameter 'rows'" in str(info.value)


# -- nested pipelines ---------------------------------------------------------------------


def _prep_definition() -> PipelineDefinition:
    def prep(rows: Any, threshold: int = 0) -> Any:
        cleaned = clean(rows, threshold=threshold)
        return split(cleaned)

    return PipelineDefinition(prep)


def test_nested_pipeline_prefixes_node_ids() -> None:
    prep = _prep_definition()

    def outer() -> Any:
        rows = load(source("data.csv"))
        first, rest = prep(rows, threshold=2)
        return combine([first, rest])

    graph = build(outer)
    assert list(graph.nodes) == ["load", "prep/clean", "prep/split", "combine"]
    assert graph.nodes["prep/clean"].inputs == {
        "rows": OutputRef("load", 0, "output"),
        "threshold": 2,
    }
    assert graph.nodes["combine"].upstream() == ["prep/split"]


def test_nested_pipeline_called_twice_gets_numbered_prefix() -> None:
    prep = _prep_definition()

    def outer() -> Any:
        rows = load(source("data.csv"))
        a, _ = prep(rows)
        b, _ = prep(rows, threshold=1)
        return combine([a, b])

    graph = build(outer)
    assert list(graph.nodes) == [
        "load",
        "prep/clean",
        "prep/split",
        "prep[1]/clean",
        "prep[1]/split",
        "combine",
    ]
    assert graph.nodes["prep[1]/clean"].inputs["threshold"] == 1


def test_doubly_nested_pipelines() -> None:
    def inner(rows: Any) -> Any:
        return clean(rows)

    inner_def = PipelineDefinition(inner)

    def middle(rows: Any) -> Any:
        return inner_def(inner_def(rows))

    middle_def = PipelineDefinition(middle)

    def outer() -> Any:
        rows = load(source("data.csv"))
        return [middle_def(rows), middle_def(rows)]

    assert list(build(outer).nodes) == [
        "load",
        "middle/inner/clean",
        "middle/inner[1]/clean",
        "middle[1]/inner/clean",
        "middle[1]/inner[1]/clean",
    ]


def test_prefix_is_removed_after_nested_pipeline_returns() -> None:
    prep = _prep_definition()

    def outer() -> Any:
        rows = load(source("data.csv"))
        prep(rows)
        return clean(rows)

    assert list(build(outer).nodes)[-1] == "clean"


def test_nested_pipeline_that_raises_restores_prefix() -> None:
    def failing(rows: Any) -> Any:
        clean(rows)
        raise DefinitionError("inner problem")

    failing_def = PipelineDefinition(failing)
    builder = GraphBuilder("outer")
    with builder:
        rows = load(source("data.csv"))
        with pytest.raises(DefinitionError, match="inner problem"):
            failing_def(rows)
        clean(rows)
    assert list(builder.graph.nodes) == ["load", "failing/clean", "clean"]


# -- builder context ----------------------------------------------------------------------


def test_current_builder_is_set_only_inside_the_context() -> None:
    assert current_builder() is None
    with GraphBuilder("p") as builder:
        assert current_builder() is builder
        with GraphBuilder("inner") as inner:
            assert current_builder() is inner
        assert current_builder() is builder
    assert current_builder() is None


def test_builder_add_step_returns_placeholders() -> None:
    with GraphBuilder("p") as builder:
        single = builder.add_step(load, ("x.csv",), {})
        multi = builder.add_step(train, (single,), {"lr": 0.5})
    assert single == OutputRef("load", 0, "output")
    assert multi == (OutputRef("train", 0, "model"), OutputRef("train", 1, "metrics"))
    assert builder.graph.nodes["train"].inputs == {"rows": single, "lr": 0.5}


# -- sources ------------------------------------------------------------------------------


def test_source_normalizes_path() -> None:
    assert source("data/raw.csv") == SourceRef("data/raw.csv")
    assert source(Path("data") / "raw.csv", by_reference=True) == SourceRef(
        "data/raw.csv", by_reference=True
    )
    assert source("data//raw.csv").path == "data/raw.csv"


def test_source_needs_a_path() -> None:
    with pytest.raises(DefinitionError, match="non-empty path"):
        source("")


def test_sources_are_collected_in_first_use_order_and_deduplicated() -> None:
    def pipe() -> Any:
        b = load(source("b.csv"))
        a = load(source("a.csv"))
        again = load(source("b.csv"))
        nested = combine([clean(a), clean(load(source("c.csv")))])
        extra = report(0, extra={"lookup": source("d.csv"), "same": source("a.csv")})
        return [b, again, nested, extra]

    graph = build(pipe)
    assert graph.sources() == [
        SourceRef("b.csv"),
        SourceRef("a.csv"),
        SourceRef("c.csv"),
        SourceRef("d.csv"),
    ]


def test_by_reference_source_is_distinct_from_copied_source() -> None:
    def pipe() -> Any:
        return [load(source("a.csv")), load(source("a.csv", by_reference=True))]

    assert build(pipe).sources() == [SourceRef("a.csv"), SourceRef("a.csv", by_reference=True)]


# -- dependencies -------------------------------------------------------------------------


def test_upstream_follows_refs_in_lists_and_dicts() -> None:
    def pipe() -> Any:
        a = load(source("a.csv"))
        b = load(source("b.csv"))
        both = combine([b, a, b])
        model = train(both)
        return report(model.model, extra={"m": model.metrics, "rows": [a]})

    graph = build(pipe)
    assert graph.nodes["combine"].upstream() == ["load[1]", "load"]
    assert graph.nodes["report"].upstream() == ["train", "load"]
    assert graph.nodes["load"].upstream() == []


def test_downstream_of() -> None:
    def pipe() -> Any:
        a = load(source("a.csv"))
        b = load(source("b.csv"))
        ca = clean(a)
        cb = clean(b)
        both = combine([ca, cb])
        return report(train(both).model)

    graph = build(pipe)
    assert graph.downstream_of("load") == {"clean", "combine", "train", "report"}
    assert graph.downstream_of("load[1]") == {"clean[1]", "combine", "train", "report"}
    assert graph.downstream_of("combine") == {"train", "report"}
    assert graph.downstream_of("report") == set()
    assert graph.downstream_of("no-such-node") == set()


def test_downstream_of_with_diamond_lists_each_node_once() -> None:
    def pipe() -> Any:
        rows = load(source("a.csv"))
        left, right = split(rows)
        return combine([clean(left), clean(right), rows])

    graph = build(pipe)
    assert graph.downstream_of("load") == {"split", "clean", "clean[1]", "combine"}
    assert graph.downstream_of("split") == {"clean", "clean[1]", "combine"}
