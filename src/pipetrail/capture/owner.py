"""Who runs a pipeline and whether a recorded process is still alive.

Owns the owner string a run records (:func:`current_owner`), the host name
(:func:`current_host`) and process liveness checks used to tell a live run or lock
holder from a crashed one (:func:`process_is_alive`, :func:`process_identity`,
:func:`identity_is_alive`). A process identity pairs the pid with the process's start
time, so a pid reused by an unrelated process after a crash is not mistaken for the
original. Imports only the standard library.
"""

from __future__ import annotations

import getpass
import os
import re
import sys

__all__ = [
    "ACTOR_ENV_VAR",
    "current_host",
    "current_owner",
    "identity_is_alive",
    "process_identity",
    "process_is_alive",
    "process_start_time",
]

#: Set this environment variable to record a service account or CI job as the owner.
ACTOR_ENV_VAR = "PIPETRAIL_ACTOR"
_UNKNOWN_START = "?"
_IDENTITY_RE = re.compile(r"^([0-9]+):([0-9]+|\?)$")
# Field 3 (state) and field 22 (starttime) of /proc/<pid>/stat, counted after the
# parenthesized command name, which may itself contain spaces and parentheses.
_STATE_FIELD = 3
_STARTTIME_FIELD = 22
_FIRST_FIELD_AFTER_COMM = 3


def current_host() -> str:
    """Return this machine's host name (``"unknown-host"`` if it cannot be read)."""
    try:
        if hasattr(os, "uname"):
            name = os.uname().nodename
        else:  # Windows
            import socket

            name = socket.gethostname()
    except OSError:
        name = ""
    return name or "unknown-host"


def current_owner() -> str:
    """Return who is running: ``$PIPETRAIL_ACTOR`` if set, else ``user@host``.

    Never raises: a user name that cannot be found (a container running under an
    arbitrary uid) becomes ``uid<N>``. The value is informational; it is whatever the
    environment claims, not an authenticated identity.
    """
    actor = os.environ.get(ACTOR_ENV_VAR, "").strip()
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError, ImportError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{current_host()}"


def process_is_alive(host: str, pid: int) -> bool | None:
    """Return whether process ``pid`` on ``host`` is running.

    A zombie (exited, not yet reaped) counts as dead. A process owned by another user
    counts as alive.

    Returns:
        ``True`` or ``False``; ``None`` when ``host`` is not this machine, or on Windows,
        where the check is not implemented.
    """
    if host != current_host():
        return None
    return _pid_is_alive(pid)


def process_start_time(pid: int) -> int | None:
    """Return the start time of process ``pid`` in clock ticks since boot.

    Read from field 22 of ``/proc/<pid>/stat``; ``None`` when the process does not
    exist or the platform has no ``/proc`` (macOS, Windows).
    """
    fields = _proc_stat_fields(pid)
    if fields is None:
        return None
    try:
        return int(fields[_STARTTIME_FIELD - _FIRST_FIELD_AFTER_COMM])
    except (IndexError, ValueError):
        return None


def process_identity(pid: int) -> str:
    """Return ``"<pid>:<starttime>"``, an id that a recycled pid does not share.

    ``starttime`` is :func:`process_start_time`; where it is unknown the identity is
    ``"<pid>:?"`` and only the pid can be checked later.
    """
    start = process_start_time(pid)
    return f"{pid}:{_UNKNOWN_START if start is None else start}"


def identity_is_alive(identity: str) -> bool:
    """Return whether the process named by a :func:`process_identity` on this host runs.

    ``False`` when the pid is gone, a zombie, or now belongs to a process that started
    at another time. When liveness cannot be determined (Windows, or ``/proc`` hiding
    other users' processes) the answer is ``True``: a caller deciding whether a lock is
    stale must not break the lock of a process that may be running.

    Raises:
        ValueError: if ``identity`` is not of the form ``"<pid>:<starttime>"``.
    """
    match = _IDENTITY_RE.match(identity)
    if match is None:
        raise ValueError(
            f"not a process identity: {identity!r}; expected '<pid>:<starttime>' "
            "as returned by process_identity()"
        )
    pid = int(match.group(1))
    alive = _pid_is_alive(pid)
    if alive is None:
        return True
    if not alive:
        return False
    if match.group(2) == _UNKNOWN_START:
        return True
    start = process_start_time(pid)
    return start is None or start == int(match.group(2))


def _pid_is_alive(pid: int) -> bool | None:
    if pid <= 0:
        return False  # 0 and negative pids address process groups, never one process
    if sys.platform == "win32":
        return None  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to another user
    except OverflowError:
        return False  # larger than any pid
    fields = _proc_stat_fields(pid)
    zombie = fields is not None and fields[_STATE_FIELD - _FIRST_FIELD_AFTER_COMM] in ("Z", "X")
    return not zombie


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Return the fields of ``/proc/<pid>/stat`` from field 3 on, or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return _split_stat(data)


def _split_stat(data: bytes) -> list[str] | None:
    """Split a ``/proc/<pid>/stat`` line after the command name (fields 3 onward)."""
    _, sep, rest = data.rpartition(b")")
    fields = rest.decode("ascii", "replace").split()
    if not sep or not fields:
        return None
    return fields
