"""Live progress while a run runs: steps done, cached and failed.

On a terminal, a rich live line redraws in place; otherwise one plain line per finished
step goes to stderr so logs of CI jobs stay readable.

A step can finish twice in one run: when a later step finds its stored output corrupt,
the producer executes again (see :mod:`pipetrail.execution.recompute`). That is not one
more step of the run: the count of steps done stays, and the step shows as
``re-executed``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["make_observer"]


def _again(status: str) -> str:
    """How a step that finished before in the run is shown when it finishes again."""
    return "re-executed" if status == "completed" else f"{status} when re-executed"


class _PlainObserver:
    def __init__(self) -> None:
        self.total = 0
        self.finished: set[str] = set()

    def run_started(self, *, run_id: str, pipeline: str, steps_total: int) -> None:
        # One observer follows every run of `pipetrail check`: count each run afresh.
        self.total, self.finished = steps_total, set()
        print(f"run {run_id} of {pipeline}: {steps_total} steps", file=sys.stderr)

    def step_started(self, *, node_id: str) -> None:
        return

    def step_finished(self, *, node_id: str, status: str, seconds: float) -> None:
        shown = _again(status) if node_id in self.finished else status
        self.finished.add(node_id)
        timing = f" {seconds:.2f}s" if status == "completed" else ""
        print(f"  [{len(self.finished)}/{self.total}] {node_id}: {shown}{timing}", file=sys.stderr)

    def run_finished(self, *, run_id: str, status: str) -> None:
        return


class _LiveObserver:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=8, transient=True)
        self.total = 0
        self.finished: dict[str, str] = {}  # node -> status (a failed re-execution: failed)
        self.again = 0
        # Steps executing now, in the order they started (several on a parallel executor).
        self.running: dict[str, None] = {}
        self.started = time.monotonic()

    def _render(self) -> Any:
        from rich.text import Text

        counts = {"completed": 0, "cached": 0, "failed": 0}
        for status in self.finished.values():
            counts[status] = counts.get(status, 0) + 1
        line = Text()
        line.append(f"{len(self.finished)}/{self.total} steps  ", style="bold")
        line.append(f"{counts['completed']} executed  ", style="green")
        line.append(f"{counts['cached']} cached  ", style="cyan")
        if self.again:
            line.append(f"{self.again} re-executed  ", style="magenta")
        if counts["failed"]:
            line.append(f"{counts['failed']} failed  ", style="red")
        if self.running:
            line.append(f"running {', '.join(self.running)}", style="yellow")
        line.append(f"  {time.monotonic() - self.started:.1f}s", style="dim")
        return line

    def run_started(self, *, run_id: str, pipeline: str, steps_total: int) -> None:
        self.total = steps_total
        self.finished, self.again = {}, 0
        self.started = time.monotonic()
        self.console.print(f"run [bold]{run_id}[/] of [bold]{pipeline}[/]: {steps_total} steps")
        self.live.start()
        self.live.update(self._render())

    def step_started(self, *, node_id: str) -> None:
        self.running[node_id] = None
        self.live.update(self._render())

    def step_finished(self, *, node_id: str, status: str, seconds: float) -> None:
        again = node_id in self.finished
        if not again or status == "failed":
            self.finished[node_id] = status
        if again and status == "completed":
            self.again += 1
        self.running.pop(node_id, None)
        if status == "failed":
            self.console.print(f"[red]✗[/] {node_id} {_again(status) if again else status}")
        self.live.update(self._render())

    def run_finished(self, *, run_id: str, status: str) -> None:
        self.live.stop()


class _QuietObserver:
    def run_started(self, *, run_id: str, pipeline: str, steps_total: int) -> None:
        return

    def step_started(self, *, node_id: str) -> None:
        return

    def step_finished(self, *, node_id: str, status: str, seconds: float) -> None:
        return

    def run_finished(self, *, run_id: str, status: str) -> None:
        return


def make_observer(*, enabled: bool) -> Any:
    """Return the progress display fitting the terminal (or a silent one)."""
    if not enabled:
        return _QuietObserver()
    if sys.stderr.isatty():
        return _LiveObserver()
    return _PlainObserver()
