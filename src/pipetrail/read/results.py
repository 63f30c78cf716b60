"""Typed results of the read API: metric series and cache-decision explanations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MetricSeries", "WhyComponent", "WhyResult"]


@dataclass(frozen=True)
class MetricSeries:
    """One metric a step logged, in logging order.

    Attributes:
        name: the metric's name.
        node_id: the node that logged it (or whose cached result carried it).
        steps: the step index of each value.
        values: the values.
    """

    name: str
    node_id: str
    steps: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def last(self) -> float:
        """The last value logged."""
        return self.values[-1]

    @property
    def min(self) -> float:
        """The smallest value logged."""
        return min(self.values)

    @property
    def max(self) -> float:
        """The largest value logged."""
        return max(self.values)

    def points(self) -> list[tuple[int, float]]:
        """``[(step, value), ...]``."""
        return list(zip(self.steps, self.values, strict=True))


@dataclass(frozen=True)
class WhyComponent:
    """One component of a step's cache key, now and in the previous run of the step."""

    component: str
    changed: bool
    value: Any
    previous: Any
    detail: Any


@dataclass(frozen=True)
class WhyResult:
    """Why a step run was a cache hit or miss: its key's components and what changed.

    Attributes:
        run_id: the run.
        node_id: the node.
        step: the step's name.
        status: the step run's status.
        cache_key: its key.
        cache_decision: ``hit``, ``miss`` or ``off``.
        cache_reason: why, in words.
        reused_step_run_id: the step run a hit reused.
        previous_run_id: the run of the previous run of the same node, if any.
        components: each key component.
        changed: the components that changed since the previous run.
    """

    run_id: str
    node_id: str
    step: str
    status: str
    cache_key: str | None
    cache_decision: str | None
    cache_reason: str | None
    reused_step_run_id: str | None
    previous_run_id: str | None
    components: tuple[WhyComponent, ...]
    changed: tuple[str, ...]

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> WhyResult:
        """Build from :func:`pipetrail.execution.explain.explain_step`'s report."""
        previous = report.get("previous") or {}
        return cls(
            run_id=report["run_id"],
            node_id=report["node_id"],
            step=report["step"],
            status=report["status"],
            cache_key=report["cache_key"],
            cache_decision=report["cache_decision"],
            cache_reason=report["cache_reason"],
            reused_step_run_id=report["reused_step_run_id"],
            previous_run_id=previous.get("run_id"),
            components=tuple(
                WhyComponent(c["component"], c["changed"], c["value"], c["previous"], c["detail"])
                for c in report["components"]
            ),
            changed=tuple(report["changed"]),
        )
