"""Pipelines configured by a pydantic model; dotted keys and merges of parameter layers."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from pipetrail.core.params import expand_dotted, flatten_params, merge_params, parse_text
from pipetrail.core.pipeline import PipelineDefinition
from pipetrail.core.step import step
from pipetrail.errors import DefinitionError, ParamError


class ModelConfig(pydantic.BaseModel):
    C: float = 1.0
    penalty: str = "l2"


class SplitConfig(pydantic.BaseModel):
    test_size: float
    stratify: bool = True


class TrainConfig(pydantic.BaseModel):
    epochs: int = 3
    tags: list[str] = []
    model: ModelConfig = ModelConfig()
    split: SplitConfig | None = None


class Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    n: int = 1


class Loose(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    n: int = 1


@step
def fit(epochs: int, C: float) -> float:
    return epochs * C


def train(cfg: TrainConfig) -> Any:
    return fit(cfg.epochs, cfg.model.C)


TRAIN = PipelineDefinition(train)


# -- dotted keys and merges ----------------------------------------------------------------
def test_expand_dotted_nests_and_merges_into_plain_tables() -> None:
    assert expand_dotted({"model.C": 1, "epochs": 2}) == {"model": {"C": 1}, "epochs": 2}
    given = {"model": {"C": 1, "penalty": "l1"}, "model.C": 2}
    assert expand_dotted(given) == {"model": {"C": 2, "penalty": "l1"}}
    assert given == {"model": {"C": 1, "penalty": "l1"}, "model.C": 2}  # not mutated


@pytest.mark.parametrize("key", ["model..C", ".C", "model."])
def test_expand_dotted_refuses_empty_parts(key: str) -> None:
    with pytest.raises(ParamError, match="has an empty part"):
        expand_dotted({key: 1})


def test_expand_dotted_refuses_a_field_of_a_scalar() -> None:
    with pytest.raises(ParamError, match=r"'model\.C' sets a field of 'model'") as info:
        expand_dotted({"model": 3, "model.C": 1})
    assert info.value.problems == (("model.C", "'model' is not a table"),)


def test_merge_is_deep_and_later_wins() -> None:
    base = {"epochs": 1, "model": {"C": 1.0, "penalty": "l2"}}
    assert merge_params(base, {"model": {"C": 0.3}}) == {
        "epochs": 1,
        "model": {"C": 0.3, "penalty": "l2"},
    }
    assert merge_params(base, {"model": 5}) == {"epochs": 1, "model": 5}


def test_flatten_params() -> None:
    assert flatten_params({"a": {"b": 1, "c": {}}, "d": 2}) == {"a.b": 1, "a.c": {}, "d": 2}


def test_parse_text() -> None:
    assert parse_text("[1, 2]") == [1, 2]
    assert parse_text("true") is True
    assert parse_text("0.3") == "0.3"  # pydantic converts it for a float field
    assert parse_text("[broken") == "[broken"


# -- a pipeline configured by a model ------------------------------------------------------
def test_a_single_model_argument_makes_its_fields_the_params() -> None:
    assert TRAIN.model_param is not None
    assert TRAIN.model_param.name == "cfg"
    resolved = TRAIN.resolve_params({})
    assert resolved == {"epochs": 3, "tags": [], "model": ModelConfig(), "split": None}


def test_model_params_from_text_nested_and_dotted() -> None:
    resolved = TRAIN.resolve_params(
        {"epochs": "5", "tags": '["a", "b"]', "model.C": "0.3", "split": {"test_size": ".2"}}
    )
    assert resolved["epochs"] == 5
    assert resolved["tags"] == ["a", "b"]
    assert resolved["model"] == ModelConfig(C=0.3)
    assert resolved["split"] == SplitConfig(test_size=0.2)


def test_text_fields_keep_text_that_looks_like_json() -> None:
    assert TRAIN.resolve_params({"model.penalty": "[l1]"})["model"].penalty == "[l1]"


def test_build_passes_the_model_instance() -> None:
    graph = TRAIN.build(TRAIN.resolve_params({"model.C": 0.5, "epochs": 2}))
    (node,) = graph.nodes.values()
    assert node.inputs == {"epochs": 2, "C": 0.5}


def test_unknown_keys_are_refused_at_every_level() -> None:
    with pytest.raises(ParamError) as info:
        TRAIN.resolve_params({"model.D": 1, "lr": 0.1})
    assert dict(info.value.problems) == {
        "model.D": "is unknown: ModelConfig has no such field (its fields: C, penalty)",
        "lr": "is unknown: TrainConfig has no such field (its fields: epochs, tags, model, split)",
    }
    assert "parameter 'model.D' is unknown" in str(info.value)


def test_unknown_keys_and_bad_values_are_reported_together() -> None:
    with pytest.raises(ParamError) as info:
        TRAIN.resolve_params({"model.D": 1, "model.C": "abc", "epochs": "x"})
    keys = [key for key, _ in info.value.problems]
    assert sorted(keys) == ["epochs", "model.C", "model.D"]
    reasons = dict(info.value.problems)
    assert reasons["model.C"].startswith("expects float, got 'abc' (Input should be a valid")
    assert reasons["epochs"].startswith("expects int, got 'x'")


def test_missing_required_field_of_a_nested_model() -> None:
    with pytest.raises(ParamError) as info:
        TRAIN.resolve_params({"split": {"stratify": False}})
    assert info.value.problems == (("split.test_size", "is required"),)


def test_extra_forbid_is_reported_once_and_extra_allow_is_respected() -> None:
    def strict(cfg: Strict) -> Any:
        return fit(cfg.n, 1.0)

    def loose(cfg: Loose) -> Any:
        return fit(cfg.n, 1.0)

    with pytest.raises(ParamError) as info:
        PipelineDefinition(strict).resolve_params({"m": 1})
    assert [key for key, _ in info.value.problems] == ["m"]
    assert PipelineDefinition(loose).resolve_params({"m": 1}) == {"n": 1}


def test_a_model_next_to_other_arguments_is_an_ordinary_parameter() -> None:
    def mixed(cfg: ModelConfig, epochs: int = 1) -> Any:
        return fit(epochs, cfg.C)

    definition = PipelineDefinition(mixed)
    assert definition.model_param is None
    resolved = definition.resolve_params({"cfg.C": "0.4"})
    assert resolved == {"cfg": ModelConfig(C=0.4), "epochs": 1}


def test_ordinary_params_report_problems_by_key() -> None:
    def plain(n: int, ratio: float = 0.5) -> Any:
        return fit(n, ratio)

    with pytest.raises(ParamError) as info:
        PipelineDefinition(plain).resolve_params({"ratio": "x"})
    assert dict(info.value.problems) == {
        "ratio": "expects float, got 'x' (Input should be a valid number, unable to parse "
        "string as a number)",
        "n": "(int) is required",
    }
    with pytest.raises(ParamError) as info:
        PipelineDefinition(plain).resolve_params({"n": 1, "nope": 2})
    assert [key for key, _ in info.value.problems] == ["nope"]


def test_a_model_pipeline_nests_with_a_model_instance() -> None:
    def outer() -> Any:
        return TRAIN(TrainConfig(epochs=4))

    graph = PipelineDefinition(outer).build({})
    (node,) = graph.nodes.values()
    assert node.inputs["epochs"] == 4


def test_param_error_is_a_definition_error() -> None:
    assert issubclass(ParamError, DefinitionError)


def test_the_model_argument_itself_is_accepted() -> None:
    assert TRAIN.resolve_params({"cfg": TrainConfig(epochs=4)})["epochs"] == 4
    resolved = TRAIN.resolve_params({"cfg": {"epochs": 4, "model": {"C": 2.0}}, "epochs": 6})
    assert resolved["epochs"] == 6
    assert resolved["model"] == ModelConfig(C=2.0)
    with pytest.raises(ParamError, match="parameter 'cfg' is unknown"):
        TRAIN.resolve_params({"cfg": 3})
