"""Code fingerprints taken in several threads at once (CPython 3.11's shared AST state)."""

from __future__ import annotations

import gc
import sys
import threading

from pipetrail.hashing.code_source import normalize_source

# A function long enough that converting its tree to Python objects takes a while.
SOURCE = (
    "def f(x):\n"
    + "".join(
        f"    y{i} = [(a, b) for a in range({i}) for b in (x, {i}) if a and (b or {i})]\n"
        for i in range(40)
    )
    + "    return x\n"
)


class _Finalized:
    """Garbage whose finalizer runs Python code, so a collection can switch threads."""

    def __del__(self) -> None:
        sum(range(20))


def test_threads_normalizing_code_at_once_do_not_break_the_parser() -> None:
    # Without the parse lock this failed on CPython 3.11 with "SystemError: AST
    # constructor recursion depth mismatch": a collection inside one thread's tree
    # conversion let another thread convert its own tree meanwhile.
    errors: list[BaseException] = []
    expected = normalize_source(SOURCE)

    def work() -> None:
        try:
            for _ in range(100):
                junk: list[object] = [_Finalized() for _ in range(5)]
                junk.append(junk)  # a cycle: freed by the collector, not on the spot
                assert normalize_source(SOURCE) == expected
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50, 1, 1)
    try:
        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    assert errors == []
