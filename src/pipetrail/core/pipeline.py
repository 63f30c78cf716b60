"""Pipeline definitions: a ``@pipeline`` function, its typed parameters, and graph building.

Parameters are validated (by type hints, through pydantic) before a graph is built, so a
wrong type or an unknown name fails before anything is recorded. A pipeline whose only
argument is annotated with a pydantic model takes that model's fields as its parameters
(see :mod:`pipetrail.core.params`). Pure: running a pipeline lives in
:mod:`pipetrail.execution`.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.core.graph import (
    GraphBuilder,
    OutputRef,
    PipelineGraph,
    SourceRef,
    current_builder,
)
from pipetrail.core.params import (
    config_model,
    expand_dotted,
    merge_params,
    parse_text,
    validate_model,
)
from pipetrail.errors import DefinitionError, ParamError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["ParamInfo", "PipelineDefinition"]

_NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class ParamInfo:
    """One pipeline parameter: its name, type and default."""

    name: str
    annotation: Any
    default: Any

    @property
    def required(self) -> bool:
        """Whether the parameter has no default."""
        return self.default is _NO_DEFAULT

    def type_name(self) -> str:
        """Return the annotation as readable text."""
        ann = self.annotation
        return ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")


class PipelineDefinition:
    """A function declared with ``@pipeline``: builds a :class:`PipelineGraph` from params."""

    def __init__(self, func: Callable[..., Any], name: str | None = None) -> None:
        self.func = func
        self.name = name or func.__name__
        self.__pipetrail_func__ = func
        self.signature = inspect.signature(func)
        self.params = self._param_infos()
        self.model_param = self._model_param()

    def __repr__(self) -> str:
        return f"<Pipeline {self.name}>"

    def _param_infos(self) -> dict[str, ParamInfo]:
        try:
            hints = typing.get_type_hints(self.func)
        except Exception as exc:  # noqa: BLE001 - any failure means unresolvable hints
            raise DefinitionError(
                f"pipeline {self.name!r}: its type hints cannot be resolved ({exc}); import the "
                "types it names at module level"
            ) from None
        infos: dict[str, ParamInfo] = {}
        for param in self.signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise DefinitionError(
                    f"pipeline {self.name!r} takes *{param.name}; declare each parameter by "
                    "name so runs can record and validate it"
                )
            annotation = hints.get(param.name, _NO_DEFAULT)
            if annotation is _NO_DEFAULT:
                if param.default is _NO_DEFAULT or param.default is None:
                    raise DefinitionError(
                        f"pipeline {self.name!r} parameter {param.name!r} has no type hint; "
                        "add one so its value can be validated and fingerprinted"
                    )
                annotation = type(param.default)
            infos[param.name] = ParamInfo(param.name, annotation, param.default)
        return infos

    def _model_param(self) -> ParamInfo | None:
        """The single argument annotated with a pydantic model, if that is the signature."""
        if len(self.params) != 1:
            return None
        info = next(iter(self.params.values()))
        return info if config_model(info.annotation) is not None else None

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and convert parameter values; text values (from the CLI) are parsed.

        Dotted keys (``model.C``) set fields of nested models or mappings. When the
        pipeline is configured by a pydantic model, the parameters are the model's fields
        and the result maps each field to its validated value (nested models stay model
        instances); :meth:`build` makes the model from them.

        Args:
            given: parameter name -> value (a Python value, or text to parse).

        Returns:
            Every parameter with its validated value (defaults filled in).

        Raises:
            ParamError: naming each unknown, missing or invalid parameter (its
                ``problems`` lists them as ``(key, reason)``).
        """
        expanded = expand_dotted(given)
        if self.model_param is not None:
            model = self.model_param.annotation
            whole = self.model_param.name
            if whole in expanded and whole not in model.model_fields:
                # The argument itself (``run(cfg=TrainConfig(...))`` or ``{"cfg": {...}}``);
                # other keys still apply on top of it.
                value = expanded.pop(whole)
                if isinstance(value, model):
                    value = value.model_dump(exclude_unset=True)
                if isinstance(value, dict):
                    expanded = merge_params(value, expanded)
                else:
                    expanded[whole] = value
            instance = validate_model(model, expanded, pipeline=self.name)
            return {name: getattr(instance, name) for name in model.model_fields}
        return self._resolve(expanded, placeholders=False)

    def _resolve(self, given: Mapping[str, Any], *, placeholders: bool) -> dict[str, Any]:
        # placeholders=True (nesting): step outputs and sources have no value to validate
        # yet, so they pass through as they are.
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            known = ", ".join(self.params) or "none"
            raise ParamError(
                f"pipeline {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are: {known}",
                problems=tuple((name, f"is not a parameter (known: {known})") for name in unknown),
            )
        resolved: dict[str, Any] = {}
        problems: list[str] = []
        keyed: list[tuple[str, str]] = []
        for name, info in self.params.items():
            if name in given and placeholders and _holds_ref(given[name]):
                resolved[name] = given[name]
            elif name in given:
                try:
                    resolved[name] = _validate(info, given[name])
                except ParamError as exc:
                    problems.append(str(exc))
                    keyed.extend(exc.problems)
            elif info.required:
                problems.append(f"parameter {name!r} ({info.type_name()}) is required")
                keyed.append((name, f"({info.type_name()}) is required"))
            else:
                resolved[name] = info.default
        if problems:
            raise ParamError(
                f"pipeline {self.name!r}: " + "; ".join(problems), problems=tuple(keyed)
            )
        return resolved

    def build(self, params: Mapping[str, Any]) -> PipelineGraph:
        """Run the pipeline function with validated ``params`` and return its graph.

        Raises:
            DefinitionError: if the function wires steps wrongly or builds no step.
        """
        outer = current_builder()
        if outer is not None:
            raise DefinitionError(f"pipeline {self.name!r} is being built already")
        if self.model_param is not None:
            # resolve_params validated the fields already: assemble, do not re-validate.
            model = self.model_param.annotation
            params = {self.model_param.name: model.model_construct(**params)}
        with GraphBuilder(self.name) as builder:
            result = self.func(**params)
        graph = builder.graph
        if not graph.nodes:
            raise DefinitionError(
                f"pipeline {self.name!r} called no step; decorate the functions it calls with @step"
            )
        _check_result(self.name, result)
        graph.result = result
        return graph

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inside another pipeline: inline this one's steps under a ``name/`` prefix."""
        builder = current_builder()
        if builder is None:
            raise DefinitionError(
                f"pipeline {self.name!r} was called directly; use {self.name}.run(...) to "
                "run it, or call it inside another @pipeline to nest it"
            )
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise DefinitionError(f"nested pipeline {self.name!r}: {exc}") from None
        params = self._resolve(bound.arguments, placeholders=True)
        with builder.nested(self.name):
            return self.func(**params)


def _holds_ref(value: Any) -> bool:
    """Whether a value is (or contains) a placeholder, which has no value to validate yet."""
    if isinstance(value, OutputRef | SourceRef):
        return True
    if isinstance(value, list | tuple):
        return any(_holds_ref(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_ref(v) for v in value.values())
    return False


def _check_result(name: str, result: Any) -> None:
    if result is None or isinstance(result, OutputRef):
        return
    if isinstance(result, list | tuple):
        for item in result:
            _check_result(name, item)
        return
    if isinstance(result, dict):
        for item in result.values():
            _check_result(name, item)
        return
    raise DefinitionError(
        f"pipeline {name!r} returned a {type(result).__name__}; return step outputs (or a "
        "list, tuple or dict of them), or nothing"
    )


_SIMPLE = {int, float, str, bool}


def _validate(info: ParamInfo, value: Any) -> Any:
    ann = info.annotation
    if ann is Any:
        return value
    # Fast path for the common scalar types; pydantic handles everything else.
    if (
        ann in _SIMPLE
        and not isinstance(value, str | bytes)
        and (type(value) is ann or (ann is float and type(value) is int))
    ):
        return float(value) if ann is float else value
    if ann is str and isinstance(value, str):
        return value
    from pydantic import TypeAdapter, ValidationError

    if isinstance(value, str) and ann is not str:
        value = parse_text(value)
    try:
        return TypeAdapter(ann).validate_python(value)
    except ValidationError as exc:
        reason = "; ".join(err["msg"] for err in exc.errors())
        expects = f"expects {info.type_name()}, got {value!r}"
        raise ParamError(
            f"parameter {info.name!r} {expects} ({reason})",
            problems=tuple(
                (
                    ".".join([info.name, *(str(part) for part in err["loc"])]),
                    f"{expects} ({err['msg']})",
                )
                for err in exc.errors()
            ),
        ) from None
    except Exception as exc:  # noqa: BLE001 - pydantic schema errors for exotic hints
        reason = f"its type {info.type_name()} cannot be validated ({exc})"
        raise ParamError(
            f"parameter {info.name!r}: {reason}", problems=((info.name, reason),)
        ) from None
