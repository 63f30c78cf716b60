"""The distributions listing a process found last, reused while nothing it rests on moved.

A process that runs many pipelines (a sweep, a notebook, a service) captures the
environment at every run. The on-disk cache (:mod:`pipetrail.capture.distributions`)
spares it listing the distributions, but checking that cache still means building its
key from every metadata entry of every search-path folder and comparing it with the
file's. This module remembers, per cache file, the last listing a process used and what
it rested on, and hands it out again after a cheaper check of the same facts:

* the interpreter (``sys.executable``) and every ``sys.path`` entry, as written and as
  an absolute path (an empty or relative entry follows the working directory);
* for each entry, ``stat`` of what is there: its type, device, inode, mtime and ctime.
  Installing, removing, upgrading or reinstalling a distribution adds, removes or
  replaces a ``*.dist-info`` or ``*.egg-info`` entry of a search-path folder, which
  moves the folder's mtime and ctime (the ctime cannot be set back); a zip file on the
  path is replaced or rewritten, which moves its own;
* the ``PKG-INFO`` of each legacy ``*.egg-info`` (``setup.py develop`` rewrites it in
  place without touching any folder), stat-ed again;
* the cache file's signature (device, inode, size, mtime, ctime) as it was once the
  listing was used, so that a cache file edited, truncated or removed since is read
  (and, when damaged, rebuilt) by the full check as before.

These are the facts the full check trusts too (it reuses a folder's remembered metadata
entries while the folder's inode, mtime and ctime are unchanged). A listing is
remembered only when every stamp it rests on is older than the racy window before the
check began, so that a second change within the same timestamp tick cannot leave them
unchanged; otherwise the next run checks in full again. The values are shared: callers
copy the list they hand out. Imports only the standard library.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

__all__ = ["Stamps", "forget", "path_stamps", "recall", "remember"]

_MAX_FILES = 16  # a bound on memory: a process writes to a handful of projects

# (sys.executable, then one tuple per sys.path entry)
Stamps = tuple[Any, ...]
# [directory, name, inode, mtime_ns] of a legacy *.egg-info entry
_Egg = tuple[str, str, Any, Any]


class _Listing:
    __slots__ = ("distributions", "eggs", "file_sig", "stamps")

    def __init__(
        self,
        stamps: Stamps,
        eggs: tuple[_Egg, ...],
        file_sig: tuple[int, ...],
        distributions: list[dict[str, Any]],
    ) -> None:
        self.stamps = stamps
        self.eggs = eggs
        self.file_sig = file_sig
        self.distributions = distributions


_listings: dict[str, _Listing] = {}
# Absolute sys.path entries, normalized (relative ones follow the working directory).
_absolute: dict[str, str] = {}
_MAX_ENTRIES = 1024
_lock = threading.Lock()


def path_stamps() -> Stamps:
    """The interpreter and, per ``sys.path`` entry, ``stat`` of what is there now."""
    stamps: list[Any] = [sys.executable]
    for entry in sys.path:
        try:
            where = _absolute.get(entry)
            if where is None:
                where = os.path.abspath(entry or os.curdir)
                if entry and os.path.isabs(entry) and len(_absolute) < _MAX_ENTRIES:
                    _absolute[entry] = where  # follows from the text alone
            st = os.stat(where)
        except (OSError, ValueError):
            stamps.append((entry, None))
            continue
        stamps.append(
            (entry, where, st.st_mode, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        )
    return tuple(stamps)


def newest_stamp(stamps: Stamps) -> int:
    """The latest mtime or ctime among ``stamps`` (0 when nothing on the path exists)."""
    return max((max(s[5], s[6]) for s in stamps[1:] if len(s) == 7), default=0)


def recall(cache_file: str) -> list[dict[str, Any]] | None:
    """The listing remembered for ``cache_file`` if nothing it rests on moved, else None."""
    found = _listings.get(cache_file)
    if found is None:
        return None
    if _file_sig(cache_file) != found.file_sig or path_stamps() != found.stamps:
        return None
    for directory, name, inode, mtime in found.eggs:
        if _egg_stamp(directory, name) != (inode, mtime):
            return None
    return found.distributions


def remember(
    cache_file: str,
    stamps: Stamps,
    folders: dict[str, list[Any]],
    distributions: list[dict[str, Any]],
    *,
    newest: int,
    limit: int,
) -> None:
    """Remember ``distributions`` as the listing for ``cache_file`` (or forget it).

    Args:
        cache_file: the cache file the listing was checked against or written to.
        stamps: :func:`path_stamps` taken before the listing was checked or made.
        folders: the search-path folders' metadata entries, as the full check found
            them (``[inode, mtime, ctime, [[name, inode, mtime], ...]]`` per folder).
        distributions: the listing.
        newest: the latest mtime among the metadata entries the listing rests on.
        limit: stamps at or after this instant are too recent to rest on.
    """
    eggs = tuple(
        (directory, row[0], row[1], row[2])
        for directory, folder in folders.items()
        for row in folder[3]
        if row[0].lower().endswith(".egg-info")
    )
    newest = max([newest, newest_stamp(stamps), *(egg[3] or 0 for egg in eggs)])
    file_sig = _file_sig(cache_file)
    with _lock:
        if newest >= limit or file_sig is None:
            _listings.pop(cache_file, None)
            return
        if len(_listings) >= _MAX_FILES:
            _listings.clear()
        _listings[cache_file] = _Listing(stamps, eggs, file_sig, distributions)


def forget() -> None:
    """Forget every remembered listing (the next capture checks in full)."""
    with _lock:
        _listings.clear()


def _file_sig(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _egg_stamp(directory: str, name: str) -> tuple[Any, Any]:
    """Inode and mtime of a legacy ``*.egg-info`` (its ``PKG-INFO`` for a folder)."""
    path = os.path.join(directory, name)
    try:
        if os.path.isdir(path):
            path = os.path.join(path, "PKG-INFO")
        st = os.stat(path)
    except OSError:
        return (None, None)
    return (st.st_ino, st.st_mtime_ns)
