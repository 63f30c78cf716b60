"""Verified reads of a LocalStore against plain reads of the same files, in the same run.

Every read of a store hashes what it hands out (ADR 0011). This measures what that costs
on 1 GiB of objects: 8 loose objects of 128 MiB of random bytes, stored in a temporary
store (``LocalStore(..., fsync=False)``) under benchmarks/.work/. Every file is read once
before timing, so all reads come from the page cache (the case where hashing weighs
most: from disk, the read itself is slower).

Each repetition times, back to back and alternating which goes first:

* plain read (the baseline): ``open(path, "rb").read()`` of each object file, the whole
  file into a new ``bytes``, as an unverified store would;
* verified read: ``LocalStore.get_bytes(digest)`` of each object (reads the file whole,
  hashes those bytes, compares). A new store object per repetition, so nothing is
  trusted from an earlier repetition by the stat-signature shortcut;
* streaming, plain: each file read in 8 MiB chunks into one reused buffer; verified:
  ``LocalStore.open(digest)`` read the same way (the file is hashed once before the
  handle is returned, then read). Informational: ``open`` pays a second pass over the
  file on its first use in a process.

Rates are GiB per second (1 GiB / time); the ratios (verified rate / plain rate) are
computed per repetition from the two timings made next to each other, and the target
(>= 80%) is checked on the median ratio of the whole-object reads.

Run: ``.venv/bin/python benchmarks/verified_reads.py [--quick]``.
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _common import WORK_DIR, Result, log, main, summarize, time_call

from pipetrail.store import LocalStore

OBJECTS = 8
OBJECT_SIZE = 128 * 1024 * 1024
TOTAL_GIB = OBJECTS * OBJECT_SIZE / 2**30
TARGET_PERCENT = 80.0
_CHUNK = 8 * 1024 * 1024


def _make_store(folder: Path) -> tuple[LocalStore, list[str], list[Path]]:
    store = LocalStore(folder, fsync=False)
    rng = random.Random(11)
    digests = [store.put_bytes(rng.randbytes(OBJECT_SIZE)) for _ in range(OBJECTS)]
    return store, digests, [store.local_path(d) for d in digests]


def _plain_whole(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            if len(f.read()) != OBJECT_SIZE:
                raise RuntimeError(f"short read of {path}")


def _verified_whole(root: Path, digests: list[str]) -> None:
    store = LocalStore(root, fsync=False)  # nothing verified yet in this store object
    for digest in digests:
        if len(store.get_bytes(digest)) != OBJECT_SIZE:
            raise RuntimeError(f"short read of {digest}")


def _drain(f: object, buffer: bytearray) -> int:
    total = 0
    while n := f.readinto(buffer):  # type: ignore[attr-defined]
        total += n
    return total


def _plain_stream(paths: list[Path], buffer: bytearray) -> None:
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            if _drain(f, buffer) != OBJECT_SIZE:
                raise RuntimeError(f"short read of {path}")


def _verified_stream(root: Path, digests: list[str], buffer: bytearray) -> None:
    store = LocalStore(root, fsync=False)
    for digest in digests:
        with store.open(digest) as f:
            if _drain(f, buffer) != OBJECT_SIZE:
                raise RuntimeError(f"short read of {digest}")


def run(quick: bool) -> list[Result]:
    reps = 3 if quick else 9
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="verified-reads-", dir=WORK_DIR))
    log(f"verified_reads: {OBJECTS} objects of {OBJECT_SIZE >> 20} MiB, {reps} repetitions")
    try:
        root = folder / "store"
        _, digests, paths = _make_store(root)
        buffer = bytearray(_CHUNK)
        _plain_whole(paths)  # warm the page cache and the code paths
        _verified_whole(root, digests)
        rates: dict[str, list[float]] = {
            "plain": [],
            "verified": [],
            "plain_stream": [],
            "verified_stream": [],
        }
        ratios: list[float] = []
        stream_ratios: list[float] = []
        for rep in range(reps):
            timed = {
                "plain": lambda: _plain_whole(paths),
                "verified": lambda: _verified_whole(root, digests),
                "plain_stream": lambda: _plain_stream(paths, buffer),
                "verified_stream": lambda: _verified_stream(root, digests, buffer),
            }
            order = list(timed) if rep % 2 == 0 else list(reversed(timed))
            seconds = {name: time_call(timed[name]) for name in order}
            for name, value in seconds.items():
                rates[name].append(TOTAL_GIB / value)
            ratios.append(100.0 * seconds["plain"] / seconds["verified"])
            stream_ratios.append(100.0 * seconds["plain_stream"] / seconds["verified_stream"])
            log(
                f"  rep {rep + 1}: plain {TOTAL_GIB / seconds['plain']:.2f} GiB/s, verified "
                f"{TOTAL_GIB / seconds['verified']:.2f} GiB/s ({ratios[-1]:.0f}%); streaming "
                f"{TOTAL_GIB / seconds['plain_stream']:.2f} vs "
                f"{TOTAL_GIB / seconds['verified_stream']:.2f} GiB/s ({stream_ratios[-1]:.0f}%)"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log(
        f"verified_reads: median whole-object ratio {statistics.median(ratios):.0f}%, "
        f"streaming {statistics.median(stream_ratios):.0f}%"
    )
    return [
        summarize("verified_reads.plain", "1 GiB, open().read() per file", rates["plain"], "GiB/s"),
        summarize(
            "verified_reads.get_bytes",
            "1 GiB, LocalStore.get_bytes (hashed)",
            rates["verified"],
            "GiB/s",
        ),
        summarize(
            "verified_reads.ratio",
            "verified / plain rate, whole objects",
            ratios,
            "%",
            at_least=TARGET_PERCENT,
        ),
        summarize(
            "verified_reads.stream_ratio",
            "LocalStore.open vs open, 8 MiB chunks",
            stream_ratios,
            "%",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
