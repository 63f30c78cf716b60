"""Run observers: how a live display (or anything else) follows a run as it happens.

Hooks take keyword-only arguments so new ones can be added without breaking observers.
Observers must not raise; an observer that fails is reported once and ignored.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullObserver", "RunObserver"]


class RunObserver(Protocol):
    """Receives progress notifications from the runner."""

    def run_started(self, *, run_id: str, pipeline: str, steps_total: int) -> None:
        """A run began; ``steps_total`` nodes will be considered."""
        ...

    def step_started(self, *, node_id: str) -> None:
        """A node is about to execute (not called for cache hits)."""
        ...

    def step_finished(self, *, node_id: str, status: str, seconds: float) -> None:
        """A node finished: ``completed``, ``cached`` or ``failed``."""
        ...

    def run_finished(self, *, run_id: str, status: str) -> None:
        """The run ended with ``completed`` or ``failed``."""
        ...


class NullObserver:
    """An observer that ignores everything."""

    def run_started(self, *, run_id: str, pipeline: str, steps_total: int) -> None:
        """Ignore."""

    def step_started(self, *, node_id: str) -> None:
        """Ignore."""

    def step_finished(self, *, node_id: str, status: str, seconds: float) -> None:
        """Ignore."""

    def run_finished(self, *, run_id: str, status: str) -> None:
        """Ignore."""
