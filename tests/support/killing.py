"""Run a Python script in a child process and SIGKILL it at a chosen moment."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def kill_when(
    script: str, args: list[str], ready: Callable[[], bool], *, delay: float = 0.0
) -> int:
    """Start ``script``, wait for its "started" line, then for ``ready()``; SIGKILL it.

    ``ready`` is polled every half millisecond for at most 30 s; ``delay`` seconds pass
    between it turning true and the kill. Returns the child's return code (``-9`` when
    the kill landed before the script finished).
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ready():
            time.sleep(0.0005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
