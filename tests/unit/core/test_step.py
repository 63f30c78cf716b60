"""``@step``: options, output names, validation, and behaviour outside a pipeline."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from pipetrail.core.graph import GraphBuilder
from pipetrail.core.step import Step, StepOptions, step
from pipetrail.errors import DefinitionError

# -- bare and with options ----------------------------------------------------------------


def test_bare_decorator_defaults() -> None:
    @step
    def clean(rows: list[int]) -> list[int]:
        """Drop negative rows."""
        return [r for r in rows if r >= 0]

    assert isinstance(clean, Step)
    assert clean.name == "clean"
    assert clean.options == StepOptions(
        name="clean", version=None, cache=True, outputs=("output",), allow_pickle=False
    )
    # functools.update_wrapper keeps the function's identity visible.
    assert clean.__name__ == "clean"  # type: ignore[attr-defined]
    assert clean.__doc__ == "Drop negative rows."
    assert clean.__wrapped__ is clean.func  # type: ignore[attr-defined]
    assert clean.__pipetrail_func__ is clean.func
    assert list(clean.signature.parameters) == ["rows"]
    assert repr(clean) == "<Step clean>"


def test_decorator_with_options() -> None:
    @step(name="train-model", version="3", cache=False, outputs=("model", "metrics"))
    def train(x: int) -> tuple[int, int]:
        return x, x

    assert train.name == "train-model"
    assert train.options.version == "3"
    assert train.options.cache is False
    assert train.options.outputs == ("model", "metrics")


def test_empty_parentheses_equal_bare() -> None:
    @step()
    def load() -> int:
        return 1

    assert load.options == StepOptions(name="load")


@pytest.mark.parametrize(("given", "expected"), [(2, "2"), (0, "0"), ("2.1", "2.1")])
def test_version_is_stored_as_text(given: int | str, expected: str) -> None:
    @step(version=given)
    def fit() -> int:
        return 1

    assert fit.options.version == expected


def test_outputs_list_becomes_tuple() -> None:
    @step(outputs=["a", "b"])
    def split() -> tuple[int, int]:
        return 1, 2

    assert split.options.outputs == ("a", "b")


def test_allow_pickle_option() -> None:
    @step(allow_pickle=True)
    def make() -> object:
        return object()

    assert make.options.allow_pickle is True


# -- output names -------------------------------------------------------------------------


def test_tuple_return_annotation_gives_numbered_outputs() -> None:
    @step
    def split(rows: list[int]) -> tuple[list[int], list[int], int]:
        return rows, rows, 0

    assert split.options.outputs == ("output_0", "output_1", "output_2")


@pytest.mark.parametrize(
    "annotation",
    ["int", "tuple[int, ...]", "list[int]", "None", "dict[str, int]"],
)
def test_other_return_annotations_give_one_output(annotation: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def produce() -> {annotation}:\n    return None\n", namespace)  # noqa: S102 - builds annotations
    assert step(namespace["produce"]).options.outputs == ("output",)


def test_no_return_annotation_gives_one_output() -> None:
    @step
    def produce():  # type: ignore[no-untyped-def]
        return 1, 2

    assert produce.options.outputs == ("output",)


def test_unresolvable_annotation_gives_one_output() -> None:
    @step
    def produce() -> tuple[NoSuchType, NoSuchType]:  # type: ignore[name-defined]  # noqa: F821
        raise NotImplementedError

    assert produce.options.outputs == ("output",)


def test_declared_outputs_win_over_annotation() -> None:
    @step(outputs=("train", "test"))
    def split() -> tuple[int, int, int]:
        return 1, 2, 3

    assert split.options.outputs == ("train", "test")


@pytest.mark.parametrize("outputs", [(), ("a", "a"), []])
def test_invalid_outputs_are_refused(outputs: tuple[str, ...] | list[str]) -> None:
    with pytest.raises(DefinitionError, match=r"step 'split': outputs=.* must be distinct"):

        @step(outputs=outputs)
        def split() -> int:
            return 1


# -- invalid declarations -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "1abc", "has space", "a/b", "a[1]", "ünïcode", "a:b", "train\n", "-lead"],
    ids=repr,
)
def test_invalid_names_are_refused(name: str) -> None:
    if not name:
        # An empty name falls back to the function's name, which is valid.
        @step(name=name)
        def ok() -> int:
            return 1

        assert ok.name == "ok"
        return
    with pytest.raises(DefinitionError, match="is invalid: use letters, digits"):

        @step(name=name)
        def bad() -> int:
            return 1


@pytest.mark.parametrize("name", ["a", "_private", "train.v2", "load-data", "A1_b-c.d"])
def test_valid_names_are_accepted(name: str) -> None:
    @step(name=name)
    def anything() -> int:
        return 1

    assert anything.name == name


def test_lambda_name_is_refused() -> None:
    with pytest.raises(DefinitionError, match="'<lambda>' is invalid"):
        step(lambda: 1)


def test_var_positional_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"step 'gather' takes \*parts"):

        @step
        def gather(*parts: int) -> int:
            return sum(parts)


def test_var_keyword_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"step 'configure' takes \*options"):

        @step
        def configure(**options: int) -> int:
            return len(options)


def test_keyword_only_parameters_are_fine() -> None:
    @step
    def scale(x: int, *, factor: int = 2) -> int:
        return x * factor

    assert scale(3, factor=4) == 12


def test_coroutine_is_refused() -> None:
    with pytest.raises(DefinitionError, match="step 'fetch' is a coroutine or generator"):

        @step
        async def fetch() -> int:
            return 1


def test_generator_is_refused() -> None:
    with pytest.raises(DefinitionError, match="step 'stream' is a coroutine or generator"):

        @step
        def stream() -> Any:
            yield 1


def test_async_generator_is_refused() -> None:
    with pytest.raises(DefinitionError, match="step 'astream' is a coroutine or generator"):

        @step
        async def astream() -> Any:
            yield 1


def test_double_decoration_is_refused() -> None:
    @step
    def once() -> int:
        return 1

    with pytest.raises(DefinitionError, match="'once' is already a step; apply @step once"):
        step(once)
    with pytest.raises(DefinitionError, match="already a step"):
        step(version="2")(once)


def test_non_function_is_refused() -> None:
    with pytest.raises(DefinitionError, match="@step needs a function, got int"):
        step(42)  # type: ignore[call-overload]


# -- calling ------------------------------------------------------------------------------


def test_calling_outside_a_pipeline_runs_the_function() -> None:
    calls: list[tuple[int, int]] = []

    @step
    def add(a: int, b: int = 10) -> int:
        calls.append((a, b))
        return a + b

    assert add(1) == 11
    assert add(1, b=2) == 3
    assert calls == [(1, 10), (1, 2)]


def test_calling_outside_a_pipeline_propagates_errors_unchanged() -> None:
    @step
    def boom() -> int:
        raise KeyError("original")

    with pytest.raises(KeyError, match="original"):
        boom()


def test_bind_applies_defaults() -> None:
    @step
    def fit(data: list[int], lr: float = 0.1, *, epochs: int = 3) -> int:
        return 0

    assert fit.bind(([1],), {}) == {"data": [1], "lr": 0.1, "epochs": 3}
    assert fit.bind(([1], 0.5), {"epochs": 9}) == {"data": [1], "lr": 0.5, "epochs": 9}


def _signature_bind(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except TypeError:
        return "unfit"
    bound.apply_defaults()
    return list(bound.arguments.items())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1,), {}),
        ((1, 2), {}),
        ((1,), {"b": 5}),
        ((1, 2), {"c": 7, "d": 8}),
        ((1,), {"d": 8}),
        ((1, 2, 3), {}),
        ((), {"a": 1}),
        ((), {}),
        ((1,), {"b": 2, "zz": 3}),
        ((1, 2), {"b": 3}),
        ((1,), {"c": None}),
    ],
)
def test_bind_matches_the_signature_in_values_and_order(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    def func(a: int, /, b: int = 2, *, c: int | None = 3, d: int = 4) -> int:
        return a

    fit = step(func)
    expected = _signature_bind(func, args, kwargs)
    if expected == "unfit":
        with pytest.raises(DefinitionError):
            fit.bind(args, kwargs)
    else:
        assert list(fit.bind(args, kwargs).items()) == expected


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        ((), {}, "missing a required argument: 'data'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1,), {"nope": 2}, "unexpected keyword argument 'nope'"),
        ((1,), {"data": 1}, "multiple values for argument 'data'"),
    ],
    ids=["missing", "too-many", "unknown-keyword", "duplicate"],
)
def test_bind_errors_name_step_and_signature(
    args: tuple[Any, ...], kwargs: dict[str, Any], reason: str
) -> None:
    @step(name="fit-model")
    def fit(data: int, lr: float = 0.1) -> int:
        return data

    with pytest.raises(DefinitionError) as info:
        fit.bind(args, kwargs)
    message = str(info.value)
    assert message.startswith("step 'fit-model' was called with arguments that do not fit")
    assert "fit-model" + str(inspect.signature(fit.func)) in message
    assert message.endswith(reason)


def test_bad_call_inside_a_build_is_a_definition_error() -> None:
    @step
    def fit(data: int) -> int:
        return data

    with GraphBuilder("p") as builder, pytest.raises(DefinitionError, match="step 'fit'"):
        fit(1, 2)  # type: ignore[call-arg]
    assert builder.graph.nodes == {}
