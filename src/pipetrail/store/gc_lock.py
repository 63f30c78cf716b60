"""The locks that keep garbage collection away from writers and from another collection.

Age alone cannot protect a writer: a run that stores a value some deleted run stored
long ago finds the object there already (a put of a stored object writes nothing), and
will name it in its record only later. So a local store has two lock files beside its
objects (``flock``, released by the kernel when a process dies):

* ``writers.lock``: every run holds it *shared* from before it stores its first object
  until its record is final (:func:`writer_lease`); a collection that removes anything
  holds it *exclusively* for the whole sweep, so it never runs beside a run, and a run
  that starts meanwhile waits for the sweep to end;
* ``gc.lock``: a collection holds it exclusively, so two never run at once (a dry run
  too: its figures would be wrong while another one removes objects).

A filesystem without ``flock`` (some network filesystems) or a platform without it
(Windows) gets no lease: the grace period is then the only guard, as docs/gc.md says.
Imports only the standard library and ``pipetrail.errors``.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

from pipetrail.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from pipetrail.store.base import ContentStore

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "GC_LOCK",
    "WRITERS_LOCK",
    "StoreBusyError",
    "collector_lock",
    "run_lease",
    "writer_lease",
]

WRITERS_LOCK = "writers.lock"
GC_LOCK = "gc.lock"
_POLL = 0.05


class StoreBusyError(StoreError):
    """A collection could not take a store lock: a run writes, or another collection runs."""


def _open_lock(folder: Path, name: str) -> int | None:
    """Open (creating) a lock file in ``folder``; None where locks cannot be had."""
    if fcntl is None:
        return None
    try:
        os.makedirs(folder, exist_ok=True)
        return os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(
            f"could not open the lock file {folder / name} ({exc.strerror or exc}); check "
            "that the store folder is writable"
        ) from exc


def _try(fd: int, mode: int) -> bool | None:
    """Take a lock without waiting: True taken, False held elsewhere, None no locks here."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


@contextlib.contextmanager
def writer_lease(folder: Path) -> Iterator[None]:
    """Hold the store's writers lock shared while a run stores and records objects.

    Waits while a collection sweeps the store (seconds, usually). Nesting is fine: each
    lease is its own open file.
    """
    fd = _open_lock(folder, WRITERS_LOCK)
    try:
        if fd is not None:
            with contextlib.suppress(OSError):  # a filesystem without locks: go without
                fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def run_lease(store: ContentStore) -> contextlib.AbstractContextManager[None]:
    """The lease a run holds on ``store`` while it writes.

    :func:`writer_lease` for a local store, a marker object for an S3 store
    (:func:`pipetrail.store.s3_gc.s3_writer_lease`), none for another store.
    """
    from pipetrail.store.local import LocalStore

    if isinstance(store, LocalStore):
        return writer_lease(store.root)
    from pipetrail.store.s3 import S3Store  # here: a local run never imports the S3 store

    if isinstance(store, S3Store):
        from pipetrail.store.s3_gc import s3_writer_lease

        return s3_writer_lease(store)
    return contextlib.nullcontext()


@contextlib.contextmanager
def collector_lock(folder: Path, *, exclude_writers: bool, wait: float = 0.0) -> Iterator[bool]:
    """Hold ``gc.lock`` (and, with ``exclude_writers``, ``writers.lock``) exclusively.

    Args:
        folder: the store's folder.
        exclude_writers: also keep every run out (a collection that removes objects).
        wait: seconds to wait for runs in progress to end before giving up.

    Yields:
        Whether the locks could be had at all (False on a filesystem without locks).

    Raises:
        StoreBusyError: another collection runs, or runs were still writing after
            ``wait`` seconds; the message says which and what to do.
    """
    gc_fd = _open_lock(folder, GC_LOCK)
    writers_fd: int | None = None
    try:
        locked = gc_fd is not None and _try(gc_fd, fcntl.LOCK_EX)
        if locked is False:
            raise StoreBusyError(
                f"another garbage collection is running on the store {folder}; wait for it "
                "to finish, then run `pipetrail gc` again"
            )
        if exclude_writers and locked:
            writers_fd = _open_lock(folder, WRITERS_LOCK)
            deadline = time.monotonic() + wait
            while writers_fd is not None and _try(writers_fd, fcntl.LOCK_EX) is False:
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"a run is writing to the store {folder}; garbage collection removes "
                        "nothing while a run writes (it could reuse an object that only "
                        "deleted runs name). Run `pipetrail gc` again when it ends, or pass "
                        "--wait DURATION to wait for it"
                    )
                time.sleep(_POLL)
        yield bool(locked)
    finally:
        for fd in (writers_fd, gc_fd):
            if fd is not None:
                os.close(fd)
