"""Live progress while a run runs: steps done, cached and failed.

On a terminal, a rich live line redraws in place; otherwise one plain line per finished
step goes to stderr so logs of CI jobs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["make_observer"]


class _PlainObserver:
    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def run_started(self, *, run_id: str, pipeline: str, steps_total: int) -> None:
        # One observer follows every run of `pipetrail check`: count each run afresh.
        self.total, self.done = steps_total, 0
        print(f"run {run_id} of {pipeline}: {steps_total} steps", file=sys.stderr)

    def step_started(self, *, node_id: str) -> None:
        return

    def step_finished(self, *, node_id: str, status: str, seconds: float) -> None:
        self.done += 1
        timing = f" {seconds:.2f}s" if status == "completed" else ""
        print(f"  [{self.done}/{self.total}] {node_id}: {status}{timing}", file=sys.stderr)

    def run_finished(self, *, run_id: str, status: str) -> None:
        return


class _LiveObserver:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=8, transient=True)
        self.total = 0
        self.counts = {"completed": 0, "cached": 0, "failed": 0}
        self.current = ""
        self.started = time.monotonic()

    def _render(self) -> Any:
        from rich.text import Text

        done = sum(self.counts.values())
        line = Text()
        line.append(f"{done}/{self.total} steps  ", style="bold")
        line.append(f"{self.counts['completed']} executed  ", style="green")
        line.append(f"{self.counts['cached']} cached  ", style="cyan")
        if self.counts["failed"]:
            line.append(f"{self.counts['failed']} failed  ", style="red")
        if self.current:
            line.append(f"running {self.current}", style="yellow")
        line.append(f"  {time.monotonic() - self.started:.1f}s", style="dim")
        return line

    def run_started(self, *, run_id: str, pipeline: str, steps_total: int) -> None:
        self.total = steps_total
        self.counts = {"completed": 0, "cached": 0, "failed": 0}
        self.started = time.monotonic()
        self.console.print(f"run [bold]{run_id}[/] of [bold]{pipeline}[/]: {steps_total} steps")
        self.live.start()
        self.live.update(self._render())

    def step_started(self, *, node_id: str) -> None:
        self.current = node_id
        self.live.update(self._render())

    def step_finished(self, *, node_id: str, status: str, seconds: float) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        self.current = ""
        if status == "failed":
            self.console.print(f"[red]✗[/] {node_id} failed")
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
