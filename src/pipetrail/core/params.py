"""Parameter mappings: dotted keys, deep merges, and pipelines configured by one model.

A pipeline's parameters are either its own typed arguments, or the fields of a pydantic
model when the pipeline takes exactly one argument annotated with a ``BaseModel``
subclass (``def train(cfg: TrainConfig)``). In both cases a value for a nested field can
be given with a dotted key (``model.C=0.3``), which :func:`expand_dotted` turns into
nested mappings, and layers of values (params files, then ``-p`` overrides) combine with
:func:`merge_params`, later layers winning key by key.

Values have limits, checked by :mod:`pipetrail.core.param_limits`.

Pure: no I/O. Imports only ``pipetrail.errors``, ``core.param_limits`` and, lazily,
pydantic (a model-typed pipeline has imported it already).
"""

from __future__ import annotations

import sys
import types
import typing
from typing import TYPE_CHECKING, Any, Union

from pipetrail.core.param_limits import text_problem
from pipetrail.errors import ParamError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "config_model",
    "expand_dotted",
    "flatten_params",
    "merge_params",
    "parse_text",
    "validate_model",
]


def parse_text(text: str) -> Any:
    """Parse command-line text as JSON when it looks like JSON, else keep the text.

    ``[1, 2]``, ``{"a": 1}``, ``"quoted"``, ``true``, ``false`` and ``null`` are parsed;
    anything else (``0.3``, ``abc``) stays text for pydantic's lax conversion.

    Raises:
        ParamError: the JSON text is past the limits (see
            :mod:`pipetrail.core.param_limits`).
    """
    import json

    stripped = text.strip()
    if stripped[:1] in '[{"' or stripped in ("true", "false", "null"):
        reason = text_problem(stripped)
        if reason is not None:
            raise ParamError(f"a parameter value starting {stripped[:20]!r} {reason}")
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    return text


def expand_dotted(given: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted keys into nested mappings: ``{"model.C": 1}`` -> ``{"model": {"C": 1}}``.

    Plain keys are taken first, then dotted ones in order, merged into what is there.

    Raises:
        ParamError: a key has an empty segment (``model..C``), or a dotted key reaches
            into a value that is not a mapping (``model=3`` and ``model.C=1``).
    """
    plain = {k: v for k, v in given.items() if "." not in k}
    result: dict[str, Any] = {}
    for key, value in plain.items():
        result[key] = value
    for key, value in given.items():
        if "." not in key:
            continue
        parts = key.split(".")
        if any(not part.strip() for part in parts):
            raise ParamError(
                f"parameter key {key!r} has an empty part; write dotted keys as 'section.field'",
                problems=((key, "has an empty part"),),
            )
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ParamError(
                    f"parameter {key!r} sets a field of {prefix!r}, which is also given a "
                    f"value that is not a table ({child!r}); give one or the other",
                    problems=((key, f"{prefix!r} is not a table"),),
                )
            else:
                child = node[part] = dict(child)
            node = child
        node[parts[-1]] = value
    return result


def merge_params(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` on top; nested mappings merge key by key."""
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = merge_params(current, value)
        else:
            merged[key] = value
    return merged


def flatten_params(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return the leaves of a nested mapping under dotted keys (an empty table is a leaf)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_model(annotation: Any) -> type | None:
    """Return ``annotation`` if it is a pydantic model class, else None.

    pydantic is not imported for this: a class deriving from ``BaseModel`` means the
    module is loaded already.
    """
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(annotation, type):
        return None
    return annotation if issubclass(annotation, pydantic.BaseModel) else None


def _nested_model(annotation: Any) -> type | None:
    """The model class of a field typed ``Model`` or ``Model | None``, else None."""
    found = config_model(annotation)
    if found is not None:
        return found
    if typing.get_origin(annotation) in (Union, types.UnionType):
        models = [m for m in map(config_model, typing.get_args(annotation)) if m is not None]
        others = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(models) == 1 and len(others) == 1:
            return models[0]
    return None


def _accepts_text(annotation: Any) -> bool:
    if annotation is str or annotation is Any:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return str in typing.get_args(annotation)
    return False


def _fields(model: Any) -> dict[str, Any]:
    """Field name (and string alias) -> annotation."""
    found: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        found[name] = info.annotation
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                found[alias] = info.annotation
    return found


def _check_keys(
    model: Any, given: Mapping[str, Any], prefix: str, problems: list[tuple[str, str]]
) -> None:
    if model.model_config.get("extra") == "allow":
        return
    fields = _fields(model)
    for key, value in given.items():
        path = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(model.model_fields) or "none"
            problems.append(
                (path, f"is unknown: {model.__name__} has no such field (its fields: {known})")
            )
            continue
        nested = _nested_model(fields[key])
        if nested is not None and isinstance(value, dict):
            _check_keys(nested, value, f"{path}.", problems)


def _parse_leaves(model: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    fields = _fields(model)
    parsed: dict[str, Any] = {}
    for key, value in given.items():
        annotation = fields.get(key, Any)
        nested = _nested_model(annotation)
        if nested is not None and isinstance(value, dict):
            parsed[key] = _parse_leaves(nested, value)
        elif isinstance(value, str) and not _accepts_text(annotation):
            parsed[key] = parse_text(value)
        else:
            parsed[key] = value
    return parsed


def validate_model(model: Any, given: Mapping[str, Any], *, pipeline: str) -> Any:
    """Validate nested params against a pydantic model and return the model instance.

    Unknown keys are refused at every level (unless the model allows extra fields);
    text values are parsed as in :func:`parse_text` unless the field takes text.

    Args:
        model: the pydantic model class.
        given: the params, nested (see :func:`expand_dotted`).
        pipeline: the pipeline's name, for messages.

    Raises:
        ParamError: naming each unknown key and each invalid or missing field (dotted).
    """
    from pydantic import ValidationError

    problems: list[tuple[str, str]] = []
    _check_keys(model, given, "", problems)
    unknown = {key for key, _ in problems}
    data = _parse_leaves(model, given)
    try:
        instance = model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"]) or model.__name__
            if path in unknown:
                continue  # reported above, with the model's fields
            if error["type"] == "missing":
                problems.append((path, "is required"))
            else:
                shown = error.get("input")
                problems.append(
                    (
                        path,
                        f"expects {_expected(model, error['loc'])}, got {shown!r} ({error['msg']})",
                    )
                )
    except Exception as exc:  # noqa: BLE001 - pydantic schema errors for exotic models
        raise ParamError(
            f"pipeline {pipeline!r}: its model {model.__name__} cannot validate params ({exc})"
        ) from None
    else:
        if not problems:
            return instance
    raise ParamError(
        f"pipeline {pipeline!r}: " + "; ".join(f"parameter {k!r} {r}" for k, r in problems),
        problems=tuple(problems),
    )


def _expected(model: Any, loc: tuple[Any, ...]) -> str:
    """The readable type of the field at ``loc``, or "a valid value" when unknown."""
    annotation: Any = None
    current: Any = model
    for part in loc:
        if current is None or not isinstance(part, str):
            return "a valid value"
        annotation = _fields(current).get(part)
        current = _nested_model(annotation)
    if annotation is None:
        return "a valid value"
    return (
        annotation.__name__
        if isinstance(annotation, type)
        else str(annotation).replace("typing.", "")
    )
