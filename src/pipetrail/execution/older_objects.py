"""While a run's nodes run, Python's garbage collector leaves the older objects alone.

The cyclic collector's full collections walk every object the process tracks: the
imported modules (pipetrail's, the pipeline's, SQLAlchemy's when a new ledger was
created) and everything made before, hundreds of thousands of objects, again as a run of
a thousand steps makes objects that live until it ends. :func:`older_objects_set_aside`
moves the objects that exist when the nodes start running (the run's plan, the modules it
loaded, what the program held) to the collector's permanent generation (:func:`gc.freeze`),
where collections do not look, and moves them back when the nodes are done
(:func:`gc.unfreeze`). Objects made meanwhile are collected as ever; garbage the older
objects form meanwhile is collected after.

Runs going on in several threads at once share one freeze: the first to start makes it
and the last to end undoes it. A program that froze objects itself (before forking
workers, for example) keeps its freeze: then nothing is set aside.
"""

from __future__ import annotations

import gc
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["older_objects_set_aside"]

_LOCK = threading.Lock()
_runs = 0  # runs going on that set the older objects aside


class older_objects_set_aside:
    """Set the objects that exist now aside from garbage collection until the exit."""

    __slots__ = ("_froze",)

    def __init__(self) -> None:
        self._froze = False

    def __enter__(self) -> None:
        global _runs
        with _LOCK:
            if _runs == 0 and gc.get_freeze_count() != 0:
                return  # the program's own freeze: left as it is
            gc.freeze()
            _runs += 1
            self._froze = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _runs
        if not self._froze:
            return
        self._froze = False
        with _LOCK:
            _runs -= 1
            if _runs == 0:
                gc.unfreeze()
