"""Checking pydantic contracts on dicts and configs.

The value (a mapping, or an instance of any pydantic model) is validated with the
contract's model (``model_validate``); the value passed on to the step is not replaced by
the validated model. There is one check per model field (``valid``), plus one per key
the model refuses (an extra key under ``extra="forbid"``) and one for model-level
validators (column None). Each failure keeps pydantic's error type and message and the
offending input, cut short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.contracts.results import CheckResult, plain_value

if TYPE_CHECKING:
    from pipetrail.contracts.results import BoundaryResult
    from pipetrail.core.contract import Contract

__all__ = ["check_model"]


def check_model(contract: Contract, value: Any, result: BoundaryResult) -> None:
    """Validate ``value`` against a pydantic contract; fill ``result.checks``."""
    from pydantic import BaseModel, ValidationError

    model: type[BaseModel] = contract.schema
    checks = {name: CheckResult("valid", name) for name in model.model_fields}
    # The caller has checked that the value is a mapping or a model instance.
    data = value.model_dump() if isinstance(value, BaseModel) else dict(value)
    try:
        model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error.get("loc") or ()
            column = str(loc[0]) if loc else None
            found = checks.get(column) if column is not None else None
            if found is None:
                found = CheckResult(error.get("type", "model") if column else "model", column)
                checks[column or "$model"] = found
            missing = error.get("type") == "missing"
            example = {
                "index": ".".join(str(part) for part in loc) or None,
                "value": None if missing else plain_value(error.get("input")),
                "error": error.get("type"),
            }
            found.fail(1, [example], str(error.get("msg")))
    result.checks = list(checks.values())
