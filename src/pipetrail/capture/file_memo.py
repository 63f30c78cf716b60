"""What a process read from a small file, remembered while the file stays the same.

A process that runs many pipelines (a sweep, a notebook) reads the same cache files at
every run. :func:`read_remembered` parses a file once and hands the parsed value out
again while the file's ``(device, inode, size, mtime_ns, ctime_ns)`` is unchanged:
any write through the filesystem moves its ctime (which cannot be set back), and a
replacement (``os.replace``) puts another inode under the name. As for verified store
objects (:mod:`pipetrail.store.verified`), a file is remembered only when it was last
changed at least :data:`RACY_NS` before it was read, so that a second write within the
same timestamp tick cannot leave the signature unchanged. The signature is that of the
open file the bytes were read from (``fstat``), not of the name.

The values are shared by every caller: treat them as read-only. Imports only the
standard library.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["RACY_NS", "forget_all", "read_remembered"]

RACY_NS = 2_000_000_000
_MAX_FILES = 64  # a bound on memory: a process reads a handful of such files

_Signature = tuple[int, int, int, int, int]
_remembered: dict[str, tuple[_Signature, Any]] = {}
_lock = threading.Lock()


def read_remembered(path: Path, parse: Callable[[bytes], Any]) -> Any:
    """Return ``parse(bytes of path)``, from memory when the file has not changed.

    ``parse`` should return None for bytes it refuses; None is not remembered.

    Raises:
        OSError: the file cannot be opened or read.
    """
    key = os.fspath(path)
    found = _remembered.get(key)
    if found is not None:
        try:
            st = os.stat(key)
        except OSError:
            st = None
        if st is not None and _signature(st) == found[0]:
            return found[1]
    started = time.time_ns()
    with open(key, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read()
    value = parse(data)
    if value is not None and max(st.st_mtime_ns, st.st_ctime_ns) < started - RACY_NS:
        with _lock:
            if len(_remembered) >= _MAX_FILES:
                _remembered.clear()
            _remembered[key] = (_signature(st), value)
    else:
        _remembered.pop(key, None)
    return value


def forget_all() -> None:
    """Forget every remembered file (the next reads parse them again)."""
    with _lock:
        _remembered.clear()


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
