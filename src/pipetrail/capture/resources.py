"""Resource usage of a block of code: wall time, CPU time and peak memory.

Owns :class:`ResourceUsage` and :func:`measure`, which wraps every step execution, so
it reads only clocks and one ``getrusage`` call on each side (a few microseconds in all).
Imports only the standard library.

The peak is read with ``RUSAGE_THREAD`` where there is one (Linux): its ``ru_maxrss`` is
the process's high-water mark too (the kernel reads it from the address space the threads
share), and asking for one thread spares the kernel summing the CPU times of every thread
of the process, which it does under locks other CPUs may hold. On a loaded machine that sum
measured up to half a millisecond a call, twice a step; the thread's own, under a
microsecond.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from time import perf_counter_ns, process_time_ns, thread_time_ns
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

if sys.platform != "win32":
    import resource

__all__ = ["Measurement", "RESOURCE_RECORD_SCHEMA_VERSION", "ResourceUsage", "measure"]

RESOURCE_RECORD_SCHEMA_VERSION = 1
# getrusage reports ru_maxrss in bytes on macOS and in kibibytes on Linux and the BSDs.
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024
# Whose usage the peak is read from (see the module docstring); None on Windows.
_PEAK_WHO: int | None = None
if sys.platform != "win32":
    _PEAK_WHO = resource.RUSAGE_SELF
    if sys.platform.startswith("linux"):
        _PEAK_WHO = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


@dataclass(frozen=True, init=False)
class ResourceUsage:
    """What one measured block used.

    Attributes:
        wall_ns: elapsed wall-clock time (``perf_counter_ns``).
        cpu_ns: CPU time (user + system) of the whole process during the block, all
            threads included; work done by other threads at the same time counts too.
        thread_cpu_ns: CPU time of the thread that ran the block.
        peak_rss_bytes: the process's resident-memory high-water mark at the end of the
            block, over the process's whole life; ``None`` where ``getrusage`` is
            unavailable (Windows).
        peak_rss_delta_bytes: how much that high-water mark rose during the block. It is
            a lower bound of the block's own peak: a block whose peak stays below an
            earlier peak of the process reports 0. ``None`` on Windows.
    """

    wall_ns: int
    cpu_ns: int
    thread_cpu_ns: int
    peak_rss_bytes: int | None
    peak_rss_delta_bytes: int | None

    def __init__(
        self,
        wall_ns: int,
        cpu_ns: int,
        thread_cpu_ns: int,
        peak_rss_bytes: int | None,
        peak_rss_delta_bytes: int | None,
    ) -> None:
        # What the generated __init__ does (one object.__setattr__ per field, since the
        # class is frozen) in one step: every executed step is measured.
        self.__dict__.update(
            wall_ns=wall_ns,
            cpu_ns=cpu_ns,
            thread_cpu_ns=thread_cpu_ns,
            peak_rss_bytes=peak_rss_bytes,
            peak_rss_delta_bytes=peak_rss_delta_bytes,
        )

    def to_record(self) -> dict[str, Any]:
        """Return a JSON-able record of this usage."""
        return {
            "schema_version": RESOURCE_RECORD_SCHEMA_VERSION,
            "wall_ns": self.wall_ns,
            "cpu_ns": self.cpu_ns,
            "thread_cpu_ns": self.thread_cpu_ns,
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_rss_delta_bytes": self.peak_rss_delta_bytes,
        }


class Measurement:
    """A context manager that measures its block; read the result after it exits.

    The result is :attr:`usage`; for convenience the handle also exposes its fields and
    :meth:`to_record` (``with measure() as usage: ...`` then ``usage.to_record()``).
    Not reentrant: use one ``Measurement`` per block (nesting separate ones is fine).
    The usage is recorded even when the block raises; the exception propagates.
    """

    __slots__ = ("_cpu0", "_peak0", "_thread0", "_usage", "_wall0")

    def __init__(self) -> None:
        self._usage: ResourceUsage | None = None
        self._wall0 = self._cpu0 = self._thread0 = 0
        self._peak0: int | None = None

    def __enter__(self) -> Measurement:
        # The peak is read inline on both sides: every executed step is measured.
        self._peak0 = (
            None if _PEAK_WHO is None else resource.getrusage(_PEAK_WHO).ru_maxrss * _MAXRSS_UNIT
        )
        self._thread0 = thread_time_ns()
        self._cpu0 = process_time_ns()
        self._wall0 = perf_counter_ns()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Read the clocks in the reverse order of __enter__ so the block sits innermost.
        wall = perf_counter_ns() - self._wall0
        cpu = process_time_ns() - self._cpu0
        thread = thread_time_ns() - self._thread0
        peak = None if _PEAK_WHO is None else resource.getrusage(_PEAK_WHO).ru_maxrss * _MAXRSS_UNIT
        delta = None if peak is None or self._peak0 is None else peak - self._peak0
        self._usage = ResourceUsage(wall, cpu, thread, peak, delta)

    @property
    def usage(self) -> ResourceUsage:
        """The measured usage.

        Raises:
            RuntimeError: if read before the ``with`` block has exited.
        """
        if self._usage is None:
            raise RuntimeError(
                "resource usage is only known after the measured block exits; read "
                "`usage` after the `with measure() as m:` block"
            )
        return self._usage

    @property
    def wall_ns(self) -> int:
        """See :attr:`ResourceUsage.wall_ns`."""
        return self.usage.wall_ns

    @property
    def cpu_ns(self) -> int:
        """See :attr:`ResourceUsage.cpu_ns`."""
        return self.usage.cpu_ns

    @property
    def thread_cpu_ns(self) -> int:
        """See :attr:`ResourceUsage.thread_cpu_ns`."""
        return self.usage.thread_cpu_ns

    @property
    def peak_rss_bytes(self) -> int | None:
        """See :attr:`ResourceUsage.peak_rss_bytes`."""
        return self.usage.peak_rss_bytes

    @property
    def peak_rss_delta_bytes(self) -> int | None:
        """See :attr:`ResourceUsage.peak_rss_delta_bytes`."""
        return self.usage.peak_rss_delta_bytes

    def to_record(self) -> dict[str, Any]:
        """Return :meth:`ResourceUsage.to_record` of the measured usage."""
        usage = self._usage
        return (usage if usage is not None else self.usage).to_record()


def measure() -> Measurement:
    """Return a context manager that measures the time and memory its block uses.

    Example:
        >>> with measure() as m:
        ...     total = sum(range(1000))
        >>> m.usage.wall_ns > 0
        True
        >>> m.to_record()["schema_version"]
        1
    """
    return Measurement()
