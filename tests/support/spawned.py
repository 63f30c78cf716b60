"""Running a test's function in several fresh interpreters at once (``spawn``)."""

from __future__ import annotations

import multiprocessing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


def run_spawned(
    target: Callable[..., Any], args: Iterable[tuple[Any, ...]], *, timeout: float = 120
) -> None:
    """Start one spawned process per ``args`` entry, all at once; each must exit 0.

    The processes run together (every one is started before any is waited for), so
    what they share (a ledger, a pack) sees them concurrently.
    """
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=a) for a in args]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout)
        assert proc.exitcode == 0
