"""What checking a contract found: one result per check, grouped per boundary.

A :class:`BoundaryResult` lists every check a contract declares with its status
(``passed``, ``failed`` or ``skipped`` when it could not be evaluated, e.g. on a missing
column), how many values failed and at most :data:`MAX_EXAMPLES` failing examples (row
index and value). Its :meth:`~BoundaryResult.to_record` form is plain JSON data: the step
event's ``contracts`` payload and the stored contract report are made of it.

Values from the data are made JSON-safe here (numpy scalars become Python numbers, NaN
becomes None, long text is cut) so a record never depends on how a library prints.
Imports no third-party library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_EXAMPLES",
    "REPORT_FORMAT",
    "BoundaryResult",
    "CheckResult",
    "describe_violations",
    "plain_value",
]

# At most this many failing examples are kept per check: enough to see the problem,
# small enough for a ledger event.
MAX_EXAMPLES = 5
REPORT_FORMAT = "pt-contract-report1"
_MAX_TEXT = 80


def plain_value(value: Any) -> Any:
    """Return ``value`` as a short JSON-safe value (for failure examples)."""
    if value is None or isinstance(value, bool):
        return value
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else (value if math.isfinite(value) else str(value))
    if isinstance(value, int):
        return value
    text = value if isinstance(value, str) else repr(value)
    if text in ("nan", "NaN", "<NA>", "NaT", "None", "null"):
        return None if not isinstance(value, str) else text
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


@dataclass
class CheckResult:
    """The outcome of one check of a contract.

    Attributes:
        check: the check's name as the schema library spells it
            (``greater_than_or_equal_to(0)``, ``not_nullable``, ``row_count``).
        column: the column (or field) it applies to; None for whole-artifact checks.
        status: ``passed``, ``failed`` or ``skipped`` (not evaluated).
        failures: how many values (rows) failed.
        examples: up to :data:`MAX_EXAMPLES` failing ``{"index", "value"}`` pairs.
        message: a sentence explaining a failure or a skip.
    """

    check: str
    column: str | None = None
    status: str = "passed"
    failures: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None

    def fail(self, failures: int, examples: list[dict[str, Any]], message: str | None) -> None:
        """Mark this check failed (adding to failures found earlier)."""
        self.status = "failed"
        self.failures += failures
        room = MAX_EXAMPLES - len(self.examples)
        self.examples.extend(examples[: max(room, 0)])
        if message and not self.message:
            self.message = message

    def to_record(self) -> dict[str, Any]:
        """Plain JSON data."""
        record: dict[str, Any] = {"check": self.check, "column": self.column, "status": self.status}
        if self.status == "failed":
            record["failures"] = self.failures
            record["examples"] = self.examples
        if self.message:
            record["message"] = self.message
        return record


@dataclass
class BoundaryResult:
    """Every check of one contract on one input or output of a step run.

    Attributes:
        direction: ``input`` or ``output``.
        name: the parameter or output name.
        kind: the contract's kind (``pandera``, ``arrow``...).
        fingerprint: the contract's digest.
        artifact: the digest of the checked artifact, when known.
        rows: the number of rows checked, when the value has rows.
        checks: one result per check, in the contract's order.
        note: something the reader must know about the result (e.g. partial results).
    """

    direction: str
    name: str
    kind: str
    fingerprint: str
    artifact: str | None = None
    rows: int | None = None
    checks: list[CheckResult] = field(default_factory=list)
    note: str | None = None

    @property
    def label(self) -> str:
        """``input:NAME`` or ``output:NAME``."""
        return f"{self.direction}:{self.name}"

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(check.status != "failed" for check in self.checks)

    def failed(self) -> list[CheckResult]:
        """The failed checks."""
        return [check for check in self.checks if check.status == "failed"]

    def to_record(self) -> dict[str, Any]:
        """Plain JSON data."""
        record: dict[str, Any] = {
            "boundary": self.direction,
            "name": self.name,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "artifact": self.artifact,
            "rows": self.rows,
            "ok": self.ok,
            "checks": [check.to_record() for check in self.checks],
        }
        if self.note:
            record["note"] = self.note
        return record


# Failed checks spelled out in an error message; the stored report has them all.
_SHOWN_CHECKS = 5


def _example_text(examples: list[dict[str, Any]]) -> str:
    parts = []
    for example in examples:
        value = example.get("value")
        where = example.get("index")
        parts.append(f"{value!r}" if where is None else f"row {where}: {value!r}")
    return ", ".join(parts)


def describe_violations(step: str, results: list[BoundaryResult]) -> str:
    """Return one message naming each failed check of the failed boundaries.

    Example: ``step 'clean': output 'output' (blake3:1f2e...) breaks its pandera contract:
    column 'age' greater_than_or_equal_to(0) failed for 2 rows (row 3: -4, row 7: -1)``.
    """
    lines = []
    shown = 0
    for result in results:
        if result.ok:
            continue
        artifact = f" ({result.artifact[:19]}...)" if result.artifact else ""
        what = f"{result.direction} {result.name!r}{artifact} breaks its {result.kind} contract"
        details = []
        failed = result.failed()
        if shown >= _SHOWN_CHECKS:
            lines.append(f"{what}: {len(failed)} checks failed")
            continue
        hidden = max(0, len(failed) - (_SHOWN_CHECKS - shown))
        failed = failed[: _SHOWN_CHECKS - shown]
        shown += len(failed)
        for check in failed:
            subject = f"column {check.column!r} " if check.column is not None else ""
            text = f"{subject}{check.check}"
            if check.message:
                text += f": {check.message}"
            elif check.failures:
                plural = "s" if check.failures != 1 else ""
                text += f" failed for {check.failures} value{plural}"
            if check.examples and not check.message:
                text += f" (e.g. {_example_text(check.examples)})"
            details.append(text)
        if hidden:
            details.append(f"and {hidden} more failed checks")
        lines.append(f"{what}: " + "; ".join(details))
    message = f"step {step!r}: " + "; ".join(lines)
    if shown >= _SHOWN_CHECKS:
        message += "; every check and its failing rows: `pipetrail contracts RUN`"
    return message
