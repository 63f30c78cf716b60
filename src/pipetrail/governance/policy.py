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

Validating a table takes pydantic (:mod:`pipetrail.governance.policy_model`), whose
import costs more than the rest of a ``promote``. So the result of the last successful
validation is kept in ``.pipetrail/cache/promotion.json``, keyed as the configuration's
record is (ADR 0022): the BLAKE3 digest of ``pipetrail.toml``'s bytes, the project folder,
pipetrail's version and the digest of the validating code's source (this module, the
schema's and the roles table's), sealed by a BLAKE3 checksum. When all of it matches and
the recorded policies have the shape validation gives, they are used as they are and
pydantic is not imported; otherwise the table is validated again and the record
rewritten. An invalid table is never recorded, so it is refused every time. Only the
commands that act (request, roll back) read policies, so they may create the record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipetrail.config import STATE_DIR
from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CHECKS",
    "RECORD_PATH",
    "AliasPolicy",
    "MetricThreshold",
    "load_policies",
    "parse_policies",
    "parse_threshold",
]

#: Where the record of the last validation lives, under the project folder.
RECORD_PATH = Path(STATE_DIR) / "cache" / "promotion.json"
_FORMAT = 1
#: The sources whose digest keys the record: what decides whether a table is valid.
_SOURCES = tuple(
    Path(__file__).with_name(name) for name in ("policy.py", "policy_model.py", "roles.py")
)
_KEYS = ("approvals", "approver_roles", "checks", "metrics", "parity_reference", "rollback")
_MEMO: dict[str, dict[str, Any]] = {}

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


@dataclass(frozen=True)
class AliasPolicy:
    """What must hold before one alias moves (see the module docstring).

    The defaults are the policy of an alias without a table.
    """

    approvals: int = 1
    approver_roles: tuple[str, ...] = ("approver", "admin")
    checks: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    parity_reference: str | None = None
    rollback: Literal["approver", "request"] = "approver"

    @classmethod
    def from_frozen(cls, frozen: Mapping[str, Any]) -> AliasPolicy:
        """The policy from its validated, recorded form (what :meth:`frozen` gives)."""
        return cls(
            approvals=frozen["approvals"],
            approver_roles=tuple(frozen["approver_roles"]),
            checks=tuple(frozen["checks"]),
            metrics=tuple(frozen["metrics"]),
            parity_reference=frozen["parity_reference"],
            rollback=frozen["rollback"],
        )

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
    """Validate the ``[promotion]`` table of a parsed ``pipetrail.toml`` (alias -> policy).

    Always validates (pydantic); :func:`load_policies` spares that on an unchanged file.

    Raises:
        ProjectError: a policy is malformed; the message names the alias and the key.
    """
    from pipetrail.governance.policy_model import validate_policies

    validated = validate_policies(raw.get("promotion", {}), origin)
    return {alias: AliasPolicy.from_frozen(frozen) for alias, frozen in validated.items()}


def load_policies(root: Path) -> dict[str, AliasPolicy]:
    """Read the promotion policies from ``root/pipetrail.toml`` (none when it is absent).

    Validated only when the file or the validating code changed since the last
    successful validation; otherwise the record of that validation serves.

    Raises:
        ProjectError: the file cannot be read or parsed, or a policy is malformed.
    """
    from pipetrail.config_tables import CONFIG_FILE, may_name

    path = root / CONFIG_FILE
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return {}
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not may_name(data, "promotion"):  # the usual case: no parse, no record
        return {}
    validated = _validated(root, path, data)
    return {alias: AliasPolicy.from_frozen(frozen) for alias, frozen in validated.items()}


def _validated(root: Path, path: Path, data: bytes) -> dict[str, dict[str, Any]]:
    """The validated policies of ``data`` (their frozen form), from the record when it may."""
    from blake3 import blake3

    from pipetrail.config_record import read_record, source_digest, write_record
    from pipetrail.core.version import VERSION

    schema = source_digest(*_SOURCES)
    key = {
        "format": _FORMAT,
        "pipetrail": VERSION,
        "schema": schema,
        "root": str(root),
        "file": blake3(data).hexdigest(),
    }
    memo_key = json.dumps(key, sort_keys=True)
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    record = root / RECORD_PATH
    values = read_record(record, key, _well_formed) if schema is not None else None
    if values is None:
        from pipetrail.config_tables import table_in
        from pipetrail.governance.policy_model import validate_policies

        table = table_in(path, data, "promotion")
        values = {} if table is None else validate_policies(table, str(path))
        if schema is not None:
            write_record(root, record, key, values)
    _MEMO[memo_key] = values
    return values


def _well_formed(values: Any) -> bool:
    """Whether recorded policies have the shape validation gives (a last line of defence).

    A record edited with its checksum recomputed can then hold nothing the file could not.
    """
    if not isinstance(values, dict):
        return False
    return all(isinstance(alias, str) and _is_policy(p) for alias, p in values.items())


def _is_policy(policy: Any) -> bool:
    from pipetrail.governance.roles import Action, roles_allowing

    if not isinstance(policy, dict) or tuple(sorted(policy)) != _KEYS:
        return False
    approvals = policy["approvals"]
    roles = policy["approver_roles"]
    checks = policy["checks"]
    metrics = policy["metrics"]
    reference = policy["parity_reference"]
    allowed = {r.value for r in roles_allowing(Action.APPROVE)}
    return (
        type(approvals) is int
        and 1 <= approvals <= 20
        and isinstance(roles, list)
        and bool(roles)
        and all(isinstance(r, str) and r in allowed for r in roles)
        and isinstance(checks, list)
        and all(isinstance(c, str) and c in CHECKS for c in checks)
        and isinstance(metrics, list)
        and all(isinstance(m, str) and _is_threshold(m) for m in metrics)
        and (reference is None or isinstance(reference, str))
        and ("parity" not in checks or bool(reference))
        and policy["rollback"] in ("approver", "request")
    )


def _is_threshold(text: str) -> bool:
    try:
        parse_threshold(text)
    except ValueError:
        return False
    return True
