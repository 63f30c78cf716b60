"""How close a reproduction must come: metric tolerances and the artifact rule.

Read from the ``[reproduce]`` table of ``pipetrail.toml``::

    [reproduce]
    # Every artifact must be bit-identical (default). With false, differing artifacts
    # are reported, and the verdict rests on the metrics and their tolerances.
    require_identical_artifacts = true
    # Default tolerance of every metric: exact.
    tolerance = { abs = 0.0, rel = 0.0 }

    [reproduce.tolerances]
    # Per metric (``NODE.NAME`` as `pipetrail diff` shows it; shell-style patterns allowed,
    # the most specific pattern wins). A number is an absolute tolerance.
    "evaluate.auc" = 1e-9
    "train.*" = { rel = 1e-6 }

``pipetrail reproduce --tolerance NAME=VALUE`` and ``pipetrail check`` accept the same
settings from the command line; they override the file.
"""

from __future__ import annotations

import fnmatch
import math
import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.config import CONFIG_FILE
from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["ReproduceSettings", "Tolerance", "parse_tolerance"]


@dataclass(frozen=True)
class Tolerance:
    """How far a reproduced metric may be from the recorded one.

    A value ``b`` is within tolerance of ``a`` when ``|a - b| <= max(abs, rel * |a|)``;
    NaN matches NaN, and infinities only themselves.
    """

    abs: float = 0.0
    rel: float = 0.0

    def allows(self, a: float, b: float) -> bool:
        """Whether ``b`` is within tolerance of ``a``."""
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        return abs(a - b) <= max(self.abs, self.rel * abs(a))

    def to_dict(self) -> dict[str, float]:
        """Return ``{"abs": ..., "rel": ...}``."""
        return {"abs": self.abs, "rel": self.rel}


@dataclass(frozen=True)
class ReproduceSettings:
    """Metric tolerances (by name or pattern) and whether artifacts must be identical."""

    default: Tolerance = Tolerance()
    metrics: dict[str, Tolerance] = field(default_factory=dict)
    require_identical_artifacts: bool = True

    def for_metric(self, name: str) -> Tolerance:
        """The tolerance of a metric: its own entry, else the longest matching pattern."""
        if name in self.metrics:
            return self.metrics[name]
        matches = [p for p in self.metrics if fnmatch.fnmatchcase(name, p)]
        if not matches:
            return self.default
        return self.metrics[max(matches, key=lambda p: (len(p.replace("*", "")), p))]

    def with_overrides(
        self,
        tolerances: Mapping[str, Tolerance] | None = None,
        *,
        require_identical_artifacts: bool | None = None,
    ) -> ReproduceSettings:
        """Return these settings with command-line values laid over them."""
        metrics = dict(self.metrics)
        default = self.default
        for name, tol in (tolerances or {}).items():
            if name == "*":
                default = tol
            else:
                metrics[name] = tol
        identical = self.require_identical_artifacts
        if require_identical_artifacts is not None:
            identical = require_identical_artifacts
        return ReproduceSettings(default, metrics, identical)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data."""
        return {
            "default": self.default.to_dict(),
            "metrics": {k: v.to_dict() for k, v in sorted(self.metrics.items())},
            "require_identical_artifacts": self.require_identical_artifacts,
        }

    @classmethod
    def from_project(cls, root: Path) -> ReproduceSettings:
        """Read ``[reproduce]`` from the project's ``pipetrail.toml`` (defaults if absent).

        Raises:
            ProjectError: the table is malformed; the message names the key and the fix.
        """
        path = root / CONFIG_FILE
        if not path.is_file():
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ProjectError(f"{path} is not valid TOML: {exc}; fix the file") from None
        table = data.get("reproduce", {})
        where = f"{path} [reproduce]"
        if not isinstance(table, dict):
            raise ProjectError(f"{where} must be a table")
        unknown = sorted(set(table) - {"tolerance", "tolerances", "require_identical_artifacts"})
        if unknown:
            raise ProjectError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known keys are tolerance, "
                "tolerances, require_identical_artifacts"
            )
        identical = table.get("require_identical_artifacts", True)
        if not isinstance(identical, bool):
            raise ProjectError(f"{where}: require_identical_artifacts must be true or false")
        default = _tolerance(table.get("tolerance", 0.0), f"{where} tolerance")
        per_metric = table.get("tolerances", {})
        if not isinstance(per_metric, dict):
            raise ProjectError(f"{where}: tolerances must be a table of NAME = tolerance")
        metrics = {
            str(name): _tolerance(value, f"{where} tolerances.{name}")
            for name, value in per_metric.items()
        }
        return cls(default, metrics, identical)


def _tolerance(value: Any, where: str) -> Tolerance:
    if isinstance(value, bool):
        raise ProjectError(f"{where}: expected a number or {{abs = ..., rel = ...}}, got {value}")
    if isinstance(value, int | float):
        value = {"abs": value}
    if not isinstance(value, dict) or not set(value) <= {"abs", "rel"}:
        raise ProjectError(f"{where}: expected a number or {{abs = ..., rel = ...}}, got {value!r}")
    parts: dict[str, float] = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ProjectError(f"{where}: {key} must be a number, got {item!r}")
        if not math.isfinite(item) or item < 0:
            raise ProjectError(f"{where}: {key} must be a finite number >= 0, got {item!r}")
        parts[key] = float(item)
    return Tolerance(**parts)


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    """Parse ``NAME=ABS``, ``NAME=rel:R`` or ``NAME=abs:A,rel:R`` (``*`` is the default).

    Raises:
        ValueError: the text does not have that form; the message says why.
    """
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name or not spec.strip():
        raise ValueError(f"expected NAME=TOLERANCE (e.g. evaluate.auc=1e-6), got {text!r}")
    parts: dict[str, float] = {}
    for piece in spec.split(","):
        key, colon, number = piece.strip().rpartition(":")
        key = key if colon else "abs"
        if key not in ("abs", "rel"):
            raise ValueError(f"tolerance {text!r}: use abs:A and/or rel:R, not {key!r}")
        if key in parts:
            raise ValueError(f"tolerance {text!r}: {key} is given twice; give it once")
        try:
            parts[key] = float(number)
        except ValueError:
            raise ValueError(f"tolerance {text!r}: {number!r} is not a number") from None
        if not math.isfinite(parts[key]) or parts[key] < 0:
            raise ValueError(f"tolerance {text!r}: {key} must be a finite number >= 0")
    return name, Tolerance(**parts)
