from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from pipetrail.capture.resources import ResourceUsage, measure

_MIB = 1024 * 1024


def busy(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU time, however loaded the machine is."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_wall_and_cpu_time() -> None:
    with measure() as m:
        busy(0.05)
        time.sleep(0.05)

    usage = m.usage
    assert usage.wall_ns >= 100_000_000
    assert 50_000_000 <= usage.thread_cpu_ns <= usage.wall_ns
    assert usage.cpu_ns >= usage.thread_cpu_ns - 1_000_000  # different clocks, same work


def test_thread_cpu_excludes_other_threads() -> None:
    worker = threading.Thread(target=busy, args=(0.3,))
    with measure() as m:
        worker.start()
        worker.join()

    assert m.usage.cpu_ns >= 200_000_000
    assert m.usage.thread_cpu_ns < m.usage.cpu_ns / 2


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_rises_with_an_allocation_above_the_previous_peak() -> None:
    headroom = (vm_kib("VmHWM") - vm_kib("VmRSS")) * 1024
    size = headroom + 64 * _MIB
    if size > 1024 * _MIB:
        pytest.skip("the process's earlier peak is too far above its current size")

    with measure() as m:
        block = b"x" * size  # filled, so every page is resident
        del block

    usage = m.usage
    assert usage.peak_rss_delta_bytes is not None
    assert usage.peak_rss_delta_bytes >= 32 * _MIB
    assert usage.peak_rss_bytes is not None
    # ru_maxrss is converted from KiB on Linux: it matches the kernel's VmHWM.
    assert abs(usage.peak_rss_bytes - vm_kib("VmHWM") * 1024) < 16 * _MIB


_THREAD_ALLOCATES = """
import json, resource, sys, threading
from pipetrail.capture.resources import measure

unit = 1 if sys.platform == "darwin" else 1024
# Above the peak so far, which exec may have carried over from the parent process.
size = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit + 64 * 1024 * 1024

def allocate():
    block = b"x" * size  # filled, so every page is resident
    del block

worker = threading.Thread(target=allocate)
with measure() as m:
    worker.start()
    worker.join()
print(json.dumps({
    "delta": m.usage.peak_rss_delta_bytes,
    "peak": m.usage.peak_rss_bytes,
    "process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit,
}))
"""


def test_the_peak_is_the_processs_also_when_another_thread_allocates() -> None:
    # A process of its own, whose other thread allocates more than its peak so far.
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _THREAD_ALLOCATES], capture_output=True, text=True, check=True
    )
    usage = json.loads(out.stdout)
    assert usage["delta"] >= 32 * _MIB
    assert abs(usage["peak"] - usage["process"]) < 16 * _MIB


def test_the_peak_is_read_without_summing_every_threads_cpu_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import resource

    asked: list[int] = []
    real = resource.getrusage

    def getrusage(who: int) -> resource.struct_rusage:
        asked.append(who)
        return real(who)

    monkeypatch.setattr(resource, "getrusage", getrusage)
    with measure():
        pass
    # Linux reads the thread's usage (the process's peak, without every thread's times).
    who = resource.RUSAGE_THREAD if sys.platform.startswith("linux") else resource.RUSAGE_SELF
    assert asked == [who, who]


@pytest.mark.skipif(sys.platform == "win32", reason="getrusage is POSIX")
def test_no_allocation_means_no_peak_rise() -> None:
    with measure() as m:
        pass
    assert m.usage.peak_rss_delta_bytes == 0
    assert m.usage.peak_rss_bytes is not None
    assert m.usage.peak_rss_bytes > _MIB


def test_usage_is_recorded_when_the_block_raises() -> None:
    m = measure()

    def failing_step() -> None:
        with m:
            busy(0.01)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        failing_step()
    assert m.usage.wall_ns >= 10_000_000


def test_usage_before_the_block_exits_is_an_error() -> None:
    with measure() as m, pytest.raises(RuntimeError, match="only known after"):
        _ = m.usage


def test_record_and_handle_shortcuts() -> None:
    with measure() as m:
        pass

    record = m.to_record()
    assert isinstance(m.usage, ResourceUsage)
    assert record == m.usage.to_record()
    assert json.loads(json.dumps(record)) == record
    assert record["schema_version"] == 1
    assert set(record) == {
        "schema_version",
        "wall_ns",
        "cpu_ns",
        "thread_cpu_ns",
        "peak_rss_bytes",
        "peak_rss_delta_bytes",
    }
    assert (m.wall_ns, m.cpu_ns, m.thread_cpu_ns) == (
        m.usage.wall_ns,
        m.usage.cpu_ns,
        m.usage.thread_cpu_ns,
    )
    assert (m.peak_rss_bytes, m.peak_rss_delta_bytes) == (
        m.usage.peak_rss_bytes,
        m.usage.peak_rss_delta_bytes,
    )


def test_nested_measurements_are_independent() -> None:
    with measure() as outer:
        time.sleep(0.02)
        with measure() as inner:
            time.sleep(0.01)
    assert outer.usage.wall_ns > inner.usage.wall_ns >= 10_000_000
