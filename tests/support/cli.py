"""Run the pipetrail command line as a person of a test team, in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]


def cli_as(root: Path, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``pipetrail ARGS`` in ``root`` as ``who``, whose keys live beside ``root``."""
    env = {
        **os.environ,
        "PIPETRAIL_USER": who,
        "PIPETRAIL_HOME": str(root.parent / f"home-{who}"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [*PIPETRAIL, *args], cwd=root, capture_output=True, text=True, env=env, timeout=300
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The standard output of a command that must have succeeded."""
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout
