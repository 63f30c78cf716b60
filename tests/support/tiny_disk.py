"""Run a command with a tiny real filesystem mounted on a folder: a real ENOSPC.

Each command runs in its own mount namespace (``unshare``) where a 1 MiB tmpfs is
mounted over the folder, optionally filled up first; the mount ends with the command,
so nothing stays mounted and the host's folder stays empty. As root only a mount
namespace is needed; other users get one inside a user namespace when the kernel
allows it. :func:`tiny_disk_problem` says why this cannot work here (then tests skip).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

SIZE = "1m"
# $0 is the folder; FILL=1 fills the new filesystem before the command runs.
_MOUNT_THEN_RUN = (
    f'mount -t tmpfs -o size={SIZE} tmpfs "$0" && '
    '{ [ -z "$FILL" ] || cat /dev/zero > "$0/.filler" 2>/dev/null; true; } && exec "$@"'
)


def _unshare() -> list[str]:
    if os.geteuid() == 0:
        return ["unshare", "--mount", "--propagation", "private"]
    return ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]


@functools.cache
def tiny_disk_problem() -> str | None:
    """Why a tiny filesystem cannot be mounted here, or None when it can."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "the unshare and mount commands are not installed"
    with tempfile.TemporaryDirectory() as folder:
        probe = [*_unshare(), "sh", "-c", _MOUNT_THEN_RUN, folder, "true"]
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            return f"cannot mount a tmpfs in a new mount namespace: {done.stderr.strip()}"
    return None


def on_tiny_disk(
    folder: Path,
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    fill: bool = False,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with a fresh 1 MiB filesystem on ``folder`` (full when ``fill``)."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapped = [*_unshare(), "sh", "-c", _MOUNT_THEN_RUN, str(folder), *command]
    return subprocess.run(
        wrapped,
        cwd=cwd,
        env={**env, "FILL": "1" if fill else ""},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
