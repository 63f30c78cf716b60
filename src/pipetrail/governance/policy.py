"""Promotion policies: what must hold before an alias of a model moves.

Policies live in ``pipetrail.toml``, one table per alias under ``[promotion]``::

    [promotion.production]
    approvals = 2                          # distinct people who must approve
    approver_roles = ["approver", "admin"] # who counts as an approver
    checks = ["gate", "contracts"]         # record checks on the source run
    metrics = ["roc_auc >= 0.95"]          # thresholds on its recorded metrics
    parity_reference = "RUN_ID"            # needed by the "parity" check
    rollback = "approver"                  # an approver may roll back alone; "request":
                                           # a rollback is a request approved as above

An alias without a table needs one approver (role approver or admin) other than the
requester, and no check. A table naming an unknown key, check, role or operator is
refused with a message naming it. The checks a policy may name are :data:`CHECKS`; what
each reads from the record is in :mod:`pipetrail.governance.checks`.

This module parses the raw TOML dict (``pydantic``) and is imported only by governance
commands that need a policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipetrail.errors import ProjectError
from pipetrail.governance.roles import Action, Role, roles_allowing

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CHECKS",
    "AliasPolicy",
    "MetricThreshold",
    "load_policies",
    "parse_policies",
    "parse_threshold",
]

CHECKS: dict[str, str] = {
    "gate": "a passing `pipetrail check` gate recorded on the source run",
    "reproduced": "a `pipetrail reproduce` of the source run that matched",
    "contracts": "the source run's contract checks recorded, none failed",
    "no_leakage": "the source run completed: no step refused with a leakage error",
    "parity": "the source run's environment equals that of parity_reference",
}
_OPS = (">=", "<=", "==", ">", "<")
_THRESHOLD = re.compile(r"\s*([A-Za-z0-9_./-]+)\s*(>=|<=|==|>|<)\s*([-+0-9.eE]+)\s*")


@dataclass(frozen=True)
class MetricThreshold:
    """A metric threshold such as ``roc_auc >= 0.95``."""

    metric: str
    op: str
    bound: float

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the threshold."""
        return {
            ">=": value >= self.bound,
            "<=": value <= self.bound,
            "==": value == self.bound,
            ">": value > self.bound,
            "<": value < self.bound,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_threshold(text: str) -> MetricThreshold:
    """Parse ``NAME OP NUMBER`` (OP one of ``>= <= == > <``).

    Raises:
        ValueError: naming what is wrong.
    """
    found = _THRESHOLD.fullmatch(text)
    if found is None:
        raise ValueError(
            f"{text!r} is not a metric threshold: write NAME OP NUMBER with OP one of "
            f"{' '.join(_OPS)}, for example 'roc_auc >= 0.95'"
        )
    try:
        bound = float(found.group(3))
    except ValueError:
        raise ValueError(f"{text!r}: {found.group(3)!r} is not a number") from None
    return MetricThreshold(found.group(1), found.group(2), bound)


class AliasPolicy(BaseModel):
    """What must hold before one alias moves (see the module docstring)."""

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

    @property
    def thresholds(self) -> list[MetricThreshold]:
        """The metric thresholds, parsed."""
        return [parse_threshold(text) for text in self.metrics]

    def frozen(self) -> dict[str, Any]:
        """The policy as recorded (signed) in a promotion request."""
        return {
            "approvals": self.approvals,
            "approver_roles": list(self.approver_roles),
            "checks": list(self.checks),
            "metrics": list(self.metrics),
            "parity_reference": self.parity_reference,
            "rollback": self.rollback,
        }


def parse_policies(
    raw: dict[str, Any], *, origin: str = "pipetrail.toml"
) -> dict[str, AliasPolicy]:
    """Parse the ``[promotion]`` table of a parsed ``pipetrail.toml`` (alias -> policy).

    Raises:
        ProjectError: a policy is malformed; the message names the alias and the key.
    """
    section = raw.get("promotion", {})
    if not isinstance(section, dict):
        raise ProjectError(f"{origin}: [promotion] must be a table of alias policies")
    policies: dict[str, AliasPolicy] = {}
    for alias, table in section.items():
        if not isinstance(table, dict):
            raise ProjectError(
                f"{origin}: promotion.{alias} must be a table (for example "
                f"[promotion.{alias}] with approvals = 1)"
            )
        try:
            policy = AliasPolicy.model_validate(table)
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
        policies[str(alias)] = policy
    return policies


def load_policies(root: Path) -> dict[str, AliasPolicy]:
    """Read the promotion policies from ``root/pipetrail.toml`` (none when it is absent).

    Raises:
        ProjectError: the file cannot be parsed or a policy is malformed.
    """
    from pipetrail.config_tables import CONFIG_FILE, project_table

    table = project_table(root, "promotion")
    if table is None:
        return {}
    return parse_policies({"promotion": table}, origin=str(root / CONFIG_FILE))
