"""The schema of the ``[promotion]`` table (pydantic), used only when it must be validated.

Importing pydantic and building the model costs more than the rest of a ``promote``
process, so :mod:`pipetrail.governance.policy` keeps the result of the last successful
validation in a record (as the configuration's is kept, ADR 0022) and imports this module
only when the file, or the code that validates it, changed since. The result is each
alias's policy as :meth:`pipetrail.governance.policy.AliasPolicy.frozen` gives it: plain
values, the same whether they come from here or from the record.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipetrail.errors import ProjectError
from pipetrail.governance.policy import CHECKS, parse_threshold
from pipetrail.governance.roles import Action, Role, roles_allowing

__all__ = ["validate_policies"]


class _PolicySchema(BaseModel):
    """One alias's table (see :mod:`pipetrail.governance.policy`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approvals: int = Field(1, ge=1, le=20)
    approver_roles: tuple[str, ...] = ("approver", "admin")
    checks: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    parity_reference: str | None = None
    rollback: Literal["approver", "request"] = "approver"

    @field_validator("approver_roles")
    @classmethod
    def _roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {r.value for r in roles_allowing(Action.APPROVE)}
        for name in value:
            if name not in {r.value for r in Role}:
                raise ValueError(
                    f"{name!r} is not a role; the roles are: {', '.join(r.value for r in Role)}"
                )
            if name not in allowed:
                raise ValueError(
                    f"role {name!r} may not approve (the roles table allows "
                    f"{' and '.join(sorted(allowed))})"
                )
        if not value:
            raise ValueError("name at least one role that approves")
        return value

    @field_validator("checks")
    @classmethod
    def _checks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in CHECKS:
                raise ValueError(
                    f"{name!r} is not a check; the checks are: {', '.join(CHECKS)} "
                    "(metric thresholds go under 'metrics')"
                )
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_threshold(text)
        return value


def validate_policies(section: Any, origin: str) -> dict[str, dict[str, Any]]:
    """Validate the ``[promotion]`` table: alias -> its policy in the recorded (frozen) form.

    Args:
        section: the table, as parsed from TOML.
        origin: the file, for messages.

    Raises:
        ProjectError: a policy is malformed; the message names the alias and the key.
    """
    if not isinstance(section, dict):
        raise ProjectError(f"{origin}: [promotion] must be a table of alias policies")
    policies: dict[str, dict[str, Any]] = {}
    for alias, table in section.items():
        if not isinstance(table, dict):
            raise ProjectError(
                f"{origin}: promotion.{alias} must be a table (for example "
                f"[promotion.{alias}] with approvals = 1)"
            )
        try:
            policy = _PolicySchema.model_validate(table)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or alias}: "
                f"{str(err['msg']).removeprefix('Value error, ')}"
                for err in exc.errors()
            )
            raise ProjectError(
                f"{origin}: the promotion policy of alias {alias!r} is invalid: {problems}"
            ) from None
        if "parity" in policy.checks and not policy.parity_reference:
            raise ProjectError(
                f"{origin}: the promotion policy of alias {alias!r} checks 'parity' but "
                'names no parity_reference run; add parity_reference = "RUN_ID"'
            )
        policies[str(alias)] = {
            "approvals": policy.approvals,
            "approver_roles": list(policy.approver_roles),
            "checks": list(policy.checks),
            "metrics": list(policy.metrics),
            "parity_reference": policy.parity_reference,
            "rollback": policy.rollback,
        }
    return policies
