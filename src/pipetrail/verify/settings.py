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
settings from the command line; they override the file. The table is validated with the
rest of the file by :mod:`pipetrail.config_model`, once per load of the configuration.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pipetrail.config import ProjectConfig

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
    def from_config(cls, config: ProjectConfig) -> ReproduceSettings:
        """The settings of ``[reproduce]`` as :func:`~pipetrail.config.load_config` validated it."""
        table = config.reproduce
        return cls(
            Tolerance(**table["tolerance"]),
            {name: Tolerance(**tol) for name, tol in table["tolerances"].items()},
            table["require_identical_artifacts"],
        )

    @classmethod
    def from_project(cls, root: Path) -> ReproduceSettings:
        """Read ``[reproduce]`` from the project's ``pipetrail.toml`` (defaults if absent).

        Prefer :meth:`from_config` with the configuration already loaded.

        Raises:
            ProjectError: the file is malformed; the message names the key and the fix.
        """
        from pipetrail.config import load_config

        return cls.from_config(load_config(root=root))


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
