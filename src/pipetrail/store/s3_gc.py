"""Garbage collection on an S3 store: listing, batched removal, and the store's markers.

Owns :func:`find_s3_garbage` and :func:`remove_s3_garbage` (the S3 counterparts of
:mod:`pipetrail.store.gc`), and the two leases that keep a collection away from runs,
as ``writers.lock`` and ``gc.lock`` do for a local store (:mod:`pipetrail.store.gc_lock`).
A bucket has no ``flock``, so the leases are *control objects* under
``PREFIX/control/`` (:class:`S3Control`), written create-only:

* a run writes ``control/writers/TOKEN`` before it stores its first object and removes
  it when its record is final (:func:`s3_writer_lease`); if ``control/collector`` exists,
  it removes its own marker and waits for the collection to end;
* a collection writes ``control/collector`` (only one can: the put is conditional),
  then lists ``control/writers/``: a marker there means a run writes, and the collection
  refuses (or waits, with ``--wait``). Either the run sees the collector's marker or the
  collector sees the run's (S3 reads are strongly consistent), so a run never reuses an
  object a collection is removing.

A marker left by a process that died on this machine is recognised (its host and pid)
and removed; one from another machine is reported with the key to remove by hand.
Listing is paginated (1,000 keys a page, streamed); removals go 1,000 keys a request.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING

from pipetrail.errors import StoreError
from pipetrail.store.gc import Garbage
from pipetrail.store.gc_lock import StoreBusyError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.store.s3 import S3Store
    from pipetrail.store.s3_objects import S3Objects

__all__ = [
    "COLLECTOR",
    "S3Control",
    "find_s3_garbage",
    "remove_s3_garbage",
    "s3_collector_lock",
    "s3_writer_lease",
]

COLLECTOR = "collector"
WRITERS = "writers"
_POLL = 0.2
# How long a run waits for a collection before it gives up with a message.
_RUN_WAIT = 600.0


class S3Control:
    """The control objects of an S3 store (``PREFIX/control/``): markers, never content.

    Args:
        objects: the store's requests (failures become one-line StoreErrors).
        base: the key prefix of the control objects (``PREFIX/control/``).
    """

    def __init__(self, objects: S3Objects, base: str) -> None:
        self._objects = objects
        self._base = base

    def put(self, name: str, body: bytes) -> bool:
        """Create ``NAME`` unless it exists; return whether it did."""
        created, _ = self._objects.put_new(
            self._base + name, body, action="write a control object", size=len(body)
        )
        return created

    def read(self, name: str) -> bytes | None:
        """The body of ``NAME``, or None when there is none."""
        found = self._objects.read_key(self._base + name, action="read a control object")
        return None if found is None else found[0]

    def names(self, folder: str) -> list[str]:
        """The names of the control objects under ``FOLDER/``."""
        listed = self._objects.list_keys(f"{self._base}{folder}/", action="list control objects")
        return [str(meta["path"])[len(self._base) :] for meta in listed]

    def delete(self, name: str) -> None:
        """Remove ``NAME`` (absent: nothing to do)."""
        self._objects.delete_key(self._base + name, action="remove a control object")

    def where(self, name: str) -> str:
        """The key of ``NAME`` in the bucket, for messages."""
        return self._base + name


def _holder() -> bytes:
    return json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    ).encode()


def _dead_here(body: bytes | None) -> bool:
    """Whether a marker was written by a process of this machine that is gone."""
    if body is None:
        return True
    try:
        holder = json.loads(body)
        if holder.get("host") != socket.gethostname():
            return False
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, KeyError, TypeError, OSError):
        return False
    return False


def _describe(body: bytes | None) -> str:
    try:
        holder = json.loads(body or b"{}")
        return f"process {holder['pid']} on {holder['host']}"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


@contextlib.contextmanager
def s3_writer_lease(store: S3Store, *, wait: float = _RUN_WAIT) -> Iterator[None]:
    """A run's marker on ``store`` while it stores and records objects.

    Waits while a collection holds the store (up to ``wait`` seconds). A store that
    cannot be written at all gives no marker: the run goes on to fail on its first write,
    recorded as failed with the store's message.

    Raises:
        StoreBusyError: a collection still held the store after ``wait`` seconds.
    """
    control = store.control()
    name = f"{WRITERS}/{secrets.token_hex(8)}"
    deadline = time.monotonic() + wait
    while True:
        try:
            control.put(name, _holder())
            body = control.read(COLLECTOR)
        except StoreError:
            # The store cannot be written at all (wrong endpoint, credentials, bucket):
            # the run's first write fails the same way, and is recorded with the run.
            # Without the marker, the grace period alone guards what it stores.
            name = ""
            break
        if body is None:
            break
        control.delete(name)
        if _dead_here(body):
            control.delete(COLLECTOR)
            continue
        if time.monotonic() >= deadline:
            raise StoreBusyError(
                f"a garbage collection ({_describe(body)}) holds the S3 store {store.url}; "
                "the run waited for it and stored nothing. Run again when it ends; if no "
                f"collection runs, remove the object {control.where(COLLECTOR)}"
            )
        time.sleep(_POLL)
    try:
        yield
    finally:
        if name:
            with contextlib.suppress(StoreError):  # a failed run's message comes first
                control.delete(name)


@contextlib.contextmanager
def s3_collector_lock(
    store: S3Store, *, exclude_writers: bool, wait: float = 0.0
) -> Iterator[None]:
    """Hold ``store`` for a collection: no other collection, and (``exclude_writers``) no run.

    Raises:
        StoreBusyError: another collection runs, or runs were still writing after
            ``wait`` seconds; the message says which and what to do.
    """
    control = store.control()
    if not control.put(COLLECTOR, _holder()):
        body = control.read(COLLECTOR)
        taken = False
        if _dead_here(body):  # gone meanwhile, or left by a process that died here
            control.delete(COLLECTOR)
            taken = control.put(COLLECTOR, _holder())
        if not taken:
            raise StoreBusyError(
                f"another garbage collection ({_describe(body)}) is running on the S3 store "
                f"{store.url}; wait for it to finish, then run `pipetrail gc` again (if none "
                f"runs, remove the object {control.where(COLLECTOR)})"
            )
    try:
        deadline = time.monotonic() + wait
        while exclude_writers:
            busy = []
            for name in control.names(WRITERS):
                body = control.read(name)
                if body is not None and _dead_here(body):
                    control.delete(name)
                elif body is not None:
                    busy.append((name, body))
            if not busy:
                break
            if time.monotonic() >= deadline:
                name, body = busy[0]
                raise StoreBusyError(
                    f"a run is writing to the S3 store {store.url} ({_describe(body)}, "
                    f"{len(busy)} in all); garbage collection removes nothing while a run "
                    "writes (it could reuse an object that only deleted runs name). Run "
                    "`pipetrail gc` again when it ends, or pass --wait DURATION to wait for "
                    f"it; if that process is gone, remove the object {control.where(name)}"
                )
            time.sleep(_POLL)
        yield
    finally:
        control.delete(COLLECTOR)


def find_s3_garbage(store: S3Store, keep: set[str], *, grace: float) -> Garbage:
    """The objects of ``store`` not in ``keep`` and older than ``grace`` seconds.

    The listing is streamed a page at a time; only the garbage's digests and sizes are
    held.

    Raises:
        StoreError: the bucket cannot be listed.
    """
    cutoff = time.time() - grace
    found = Garbage(kinds=("s3",))
    for digest, size, modified in store.iter_objects():
        if digest in keep:
            continue
        if modified >= cutoff:
            found.young += 1
        else:
            found.s3[digest] = size
    return found


def remove_s3_garbage(store: S3Store, garbage: Garbage) -> None:
    """Remove what :func:`find_s3_garbage` found, 1,000 keys a request.

    Call it holding :func:`s3_collector_lock` with writers excluded.

    Raises:
        StoreError: the server refused a request; what was removed before stays removed.
    """
    store.delete_objects(sorted(garbage.s3))
