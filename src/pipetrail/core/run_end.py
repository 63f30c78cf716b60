"""The run-end hook: what runs after every run, installed from above the runner.

The runner calls :func:`run_ended` when a run ends, however it ends. The package root
installs the project's alerts here, so a run started from Python sends them just as
``pipetrail run`` does, while the runner imports nothing of the layers above it (the
same composition as :mod:`pipetrail.core.access`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["install_run_end_hook", "run_ended"]

_hooks: list[Callable[[Any, str, str], None]] = []


def install_run_end_hook(hook: Callable[[Any, str, str], None]) -> None:
    """Call ``hook(project, run_id, status)`` after every run (the last installed wins)."""
    _hooks[:] = [hook]


def run_ended(project: Any, run_id: str, status: str) -> None:
    """Call the installed hook; its failure is logged, never raised (the run stands)."""
    for hook in _hooks:
        try:
            hook(project, run_id, status)
        except Exception as exc:  # noqa: BLE001 - what follows a run never fails it
            import logging  # not at import: `import pipetrail` must not load logging

            logging.getLogger(__name__).warning("after run %s: %s", run_id, exc)
