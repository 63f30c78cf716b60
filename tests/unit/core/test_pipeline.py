"""Pipeline definitions: typed parameters, validation of text values, build errors, nesting."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest

from pipetrail.core.graph import OutputRef, SourceRef, source
from pipetrail.core.pipeline import ParamInfo, PipelineDefinition
from pipetrail.core.step import step
from pipetrail.errors import DefinitionError, ParamError


@step
def load(path: Any) -> list[int]:
    # "Any": inside a build it receives a source() placeholder, when run a Path.
    return [1, 2, 3]


@step
def clean(rows: list[int], threshold: float = 0.0) -> list[int]:
    return rows


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Optim(pydantic.BaseModel):
    lr: float = 0.1
    momentum: float = 0.9


def typed(
    n: int,
    ratio: float = 0.5,
    verbose: bool = False,
    label: str = "run",
    data: Path = Path("data.csv"),
    sizes: list[int] | None = None,
    kind: Literal["a", "b"] = "a",
    mode: Mode = Mode.FAST,
    optim: Optim | None = None,
) -> Any:
    return clean(load(source(data)))


TYPED = PipelineDefinition(typed)


def resolve(**given: Any) -> dict[str, Any]:
    return TYPED.resolve_params({"n": 1, **given})


# -- parameter declarations ---------------------------------------------------------------


def test_param_infos() -> None:
    assert list(TYPED.params) == [
        "n",
        "ratio",
        "verbose",
        "label",
        "data",
        "sizes",
        "kind",
        "mode",
        "optim",
    ]
    n = TYPED.params["n"]
    assert n == ParamInfo("n", int, n.default)
    assert n.required
    assert not TYPED.params["ratio"].required
    assert TYPED.params["ratio"].type_name() == "float"
    assert TYPED.params["kind"].type_name() == "Literal['a', 'b']"
    assert TYPED.params["sizes"].type_name() == "list[int] | None"
    assert repr(TYPED) == "<Pipeline typed>"


def test_name_defaults_to_function_name_and_can_be_given() -> None:
    assert TYPED.name == "typed"
    assert PipelineDefinition(typed, name="custom").name == "custom"


def test_untyped_param_with_default_infers_type() -> None:
    def pipe(epochs=3, lr=0.1, tag="x"):  # type: ignore[no-untyped-def]
        return clean(load(source("a.csv")))

    definition = PipelineDefinition(pipe)
    assert definition.params["epochs"].annotation is int
    assert definition.params["lr"].annotation is float
    assert definition.params["tag"].annotation is str
    assert definition.resolve_params({"epochs": "5", "lr": "1"}) == {
        "epochs": 5,
        "lr": 1.0,
        "tag": "x",
    }
    with pytest.raises(ParamError, match="parameter 'epochs' expects int"):
        definition.resolve_params({"epochs": "many"})


def test_untyped_param_without_default_is_a_definition_error() -> None:
    def pipe(epochs):  # type: ignore[no-untyped-def]
        return clean(load(source("a.csv")))

    with pytest.raises(DefinitionError, match="pipeline 'pipe' parameter 'epochs' has no type"):
        PipelineDefinition(pipe)


def test_untyped_param_with_none_default_is_a_definition_error() -> None:
    def pipe(limit=None):  # type: ignore[no-untyped-def]
        return clean(load(source("a.csv")))

    with pytest.raises(DefinitionError, match="parameter 'limit' has no type hint; add one"):
        PipelineDefinition(pipe)


def test_var_args_are_a_definition_error() -> None:
    def pipe(*values: int) -> Any:
        return None

    with pytest.raises(DefinitionError, match=r"pipeline 'pipe' takes \*values"):
        PipelineDefinition(pipe)


def test_unresolvable_hints_are_a_definition_error() -> None:
    def pipe(value: NoSuchType) -> Any:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(DefinitionError, match="type hints cannot be resolved"):
        PipelineDefinition(pipe)


# -- resolve_params: values and text ------------------------------------------------------


def test_defaults_are_filled_in() -> None:
    assert resolve() == {
        "n": 1,
        "ratio": 0.5,
        "verbose": False,
        "label": "run",
        "data": Path("data.csv"),
        "sizes": None,
        "kind": "a",
        "mode": Mode.FAST,
        "optim": None,
    }


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("n", 3, 3),
        ("n", "3", 3),
        ("n", 3.0, 3),
        ("ratio", "0.5", 0.5),
        ("ratio", 2, 2.0),
        ("ratio", "1e-3", 0.001),
        ("verbose", "true", True),
        ("verbose", "false", False),
        ("verbose", True, True),
        ("label", "hello world", "hello world"),
        ("label", "[not json]", "[not json]"),
        ("label", "true", "true"),
        ("data", "in/x.csv", Path("in/x.csv")),
        ("data", Path("y.csv"), Path("y.csv")),
        ("sizes", "[1,2]", [1, 2]),
        ("sizes", "[1, 2, 3]", [1, 2, 3]),
        ("sizes", [4], [4]),
        ("sizes", "null", None),
        ("kind", "b", "b"),
        ("mode", "slow", Mode.SLOW),
        ("mode", Mode.SLOW, Mode.SLOW),
        ("optim", '{"lr": 0.01}', Optim(lr=0.01)),
        ("optim", {"momentum": 0.5}, Optim(momentum=0.5)),
    ],
)
def test_values_are_validated_and_text_is_parsed(name: str, given: Any, expected: Any) -> None:
    value = resolve(**{name: given})[name]
    assert value == expected
    assert type(value) is type(expected)


def test_int_refuses_fractional_text() -> None:
    with pytest.raises(ParamError, match=r"parameter 'n' expects int, got '1\.5'"):
        TYPED.resolve_params({"n": "1.5"})


def test_int_refuses_fractional_float() -> None:
    with pytest.raises(ParamError, match="parameter 'n' expects int"):
        TYPED.resolve_params({"n": 1.5})


@pytest.mark.parametrize(
    ("name", "given"),
    [
        ("ratio", "fast"),
        ("verbose", "maybe"),
        ("sizes", "[1, 'a']"),
        ("sizes", '["x"]'),
        ("kind", "c"),
        ("mode", "medium"),
        ("optim", '{"lr": "high"}'),
        ("label", 5),
    ],
)
def test_invalid_values_are_refused(name: str, given: Any) -> None:
    with pytest.raises(ParamError, match=f"pipeline 'typed': parameter '{name}' expects"):
        resolve(**{name: given})


def test_unknown_names_are_refused_listing_known_ones() -> None:
    with pytest.raises(ParamError) as info:
        TYPED.resolve_params({"n": 1, "epochs": 3, "batch": 2})
    message = str(info.value)
    assert "pipeline 'typed' has no parameter 'batch', 'epochs'" in message
    assert "its parameters are: n, ratio, verbose, label, data, sizes, kind, mode, optim" in (
        message
    )


def test_unknown_name_on_pipeline_without_params() -> None:
    def bare() -> Any:
        return clean(load(source("a.csv")))

    with pytest.raises(ParamError, match="its parameters are: none"):
        PipelineDefinition(bare).resolve_params({"x": 1})


def test_missing_required_is_refused() -> None:
    with pytest.raises(ParamError, match=r"parameter 'n' \(int\) is required"):
        TYPED.resolve_params({})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ParamError) as info:
        TYPED.resolve_params({"ratio": "x", "kind": "z"})
    message = str(info.value)
    assert "parameter 'ratio' expects float" in message
    assert "parameter 'kind' expects" in message
    assert "parameter 'n' (int) is required" in message


def test_param_error_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError):
        TYPED.resolve_params({})


def test_any_annotation_passes_values_through() -> None:
    marker = object()

    def pipe(anything: Any) -> Any:
        return clean(load(source("a.csv")))

    assert PipelineDefinition(pipe).resolve_params({"anything": marker}) == {"anything": marker}


# -- build --------------------------------------------------------------------------------


def test_build_uses_the_params() -> None:
    graph = TYPED.build(resolve(data="in/x.csv"))
    assert list(graph.nodes) == ["load", "clean"]
    assert graph.sources() == [SourceRef("in/x.csv")]


def test_pipeline_calling_no_step_is_a_definition_error() -> None:
    def empty() -> Any:
        return None

    with pytest.raises(DefinitionError, match="pipeline 'empty' called no step; decorate"):
        PipelineDefinition(empty).build({})


def test_pipeline_calling_plain_functions_is_a_definition_error() -> None:
    def helper(x: int) -> int:
        return x

    def plain() -> Any:
        helper(1)

    with pytest.raises(DefinitionError, match="called no step"):
        PipelineDefinition(plain).build({})


@pytest.mark.parametrize(
    "result",
    [1, "text", {"a": 1}, [None, 2.5], Path("x")],
    ids=["int", "str", "dict-of-int", "list-with-float", "path"],
)
def test_pipeline_returning_a_non_placeholder_is_a_definition_error(result: Any) -> None:
    def pipe() -> Any:
        clean(load(source("a.csv")))
        return result

    with pytest.raises(DefinitionError, match="pipeline 'pipe' returned a") as info:
        PipelineDefinition(pipe).build({})
    assert "return step outputs" in str(info.value)


@pytest.mark.parametrize(
    "shape",
    ["none", "ref", "list", "tuple", "dict", "nested"],
)
def test_pipeline_may_return_placeholders_in_containers(shape: str) -> None:
    def pipe() -> Any:
        rows = load(source("a.csv"))
        cleaned = clean(rows)
        return {
            "none": None,
            "ref": cleaned,
            "list": [rows, cleaned],
            "tuple": (rows, None),
            "dict": {"rows": rows},
            "nested": {"all": [rows, {"c": cleaned}]},
        }[shape]

    graph = PipelineDefinition(pipe).build({})
    assert list(graph.nodes) == ["load", "clean"]
    if shape == "ref":
        assert graph.result == OutputRef("clean", 0, "output")


def test_calling_a_pipeline_directly_outside_a_build_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match=r"use typed\.run\(\.\.\.\) to run it") as info:
        TYPED(n=1)
    assert "pipeline 'typed' was called directly" in str(info.value)


def test_building_inside_a_build_is_refused() -> None:
    def inner() -> Any:
        return clean(load(source("a.csv")))

    inner_def = PipelineDefinition(inner)

    def outer() -> Any:
        return inner_def.build({})

    with pytest.raises(DefinitionError, match="pipeline 'inner' is being built already"):
        PipelineDefinition(outer).build({})


def test_build_error_leaves_no_active_builder() -> None:
    from pipetrail.core.graph import current_builder

    def pipe() -> Any:
        load(source("a.csv"))
        raise ValueError("user bug")

    with pytest.raises(ValueError, match="user bug"):
        PipelineDefinition(pipe).build({})
    assert current_builder() is None


# -- nested pipelines: parameters ---------------------------------------------------------


def prep(rows: list[int], threshold: float = 0.0) -> Any:
    return clean(rows, threshold=threshold)


PREP = PipelineDefinition(prep)


def test_nested_pipeline_takes_a_step_output_for_a_required_param() -> None:
    def outer() -> Any:
        return PREP(load(source("a.csv")), threshold="0.25")

    graph = PipelineDefinition(outer).build({})
    assert list(graph.nodes) == ["load", "prep/clean"]
    assert graph.nodes["prep/clean"].inputs == {
        "rows": OutputRef("load", 0, "output"),
        "threshold": 0.25,
    }


def test_nested_pipeline_takes_outputs_in_containers() -> None:
    def combine_outer() -> Any:
        a = load(source("a.csv"))
        b = load(source("b.csv"))
        return PREP([a, b])

    graph = PipelineDefinition(combine_outer).build({})
    assert graph.nodes["prep/clean"].upstream() == ["load", "load[1]"]


def test_nested_pipeline_takes_a_source() -> None:
    def load_and_clean(data: Path) -> Any:
        return clean(load(data))

    nested = PipelineDefinition(load_and_clean)

    def outer() -> Any:
        return nested(source("in/raw.csv"))

    graph = PipelineDefinition(outer).build({})
    assert list(graph.nodes) == ["load_and_clean/load", "load_and_clean/clean"]
    assert graph.sources() == [SourceRef("in/raw.csv")]


def test_nested_pipeline_validates_literal_params() -> None:
    def outer() -> Any:
        return PREP(load(source("a.csv")), threshold="high")

    with pytest.raises(ParamError, match="parameter 'threshold' expects float"):
        PipelineDefinition(outer).build({})


def test_nested_pipeline_bad_arguments_are_a_definition_error() -> None:
    def outer() -> Any:
        return PREP(load(source("a.csv")), nope=1)

    with pytest.raises(DefinitionError, match=r"nested pipeline 'prep': .*'nope'"):
        PipelineDefinition(outer).build({})


def test_top_level_params_do_not_accept_placeholders() -> None:
    # Placeholders only pass through when nesting; a run's own parameters are values.
    with pytest.raises(ParamError, match="parameter 'rows' expects"):
        PREP.resolve_params({"rows": OutputRef("load", 0, "output")})
