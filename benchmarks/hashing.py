"""File hashing throughput of ``pipetrail.hashing.digest_file`` against a raw read.

The file set (about 1 GiB of random bytes): 8 files of 100 MiB and 2,000 files of
100 KiB, in benchmarks/.work/hashset/ (git-ignored). It is created on first use and
reused afterwards (a ``COMPLETE`` marker is written last; a partial set is rebuilt).

Every file is read once (and hashed once) before timing, so all reads come from the page
cache. Each repetition then times, back to back:

* raw read (the target's baseline): ``cat`` of every file to ``/dev/null`` in one process,
  the usual meaning of "raw read", minus what starting ``cat`` costs (the median of
  three ``cat /dev/null`` timed next to it): the hashing runs in this process, so both
  sides are the reading alone;
* memory-speed floor (informational): every file opened unbuffered and read fully with
  ``readinto`` into one reused, page-aligned 1 MiB buffer (the cheapest way to pull the
  bytes through memory in Python; see :func:`aligned_buffer`);
* hashing: ``digest_file(path)`` on every file, one after the other, as pipetrail does.

Throughputs are total bytes / median time. The ratio (hash throughput / raw throughput)
is computed per repetition, from the raw read and the hashing timed next to each other;
the target is on its median. The big-file and small-file rows split the same timings by
the two code paths of ``digest_file`` (files >= 4 MiB read ahead on a helper thread and
hashed with BLAKE3's threads; smaller ones read into a reused page-aligned buffer and
hashed on one thread), each as a ratio to the memory-speed floor of the same files.

``--parallel`` (always on in run_all.py) adds a variant that hashes the small files with
a thread pool (``os.cpu_count()`` threads, big files still one after the other).
``--variants`` times other ways to hash the same files, each as a ratio to the floor
timed next to it, to see whether ``digest_file`` could be faster (informational; nothing
in the library changes).

Repetitions: 5 (``--quick``: 3) after the warm-up.

Run: ``.venv/bin/python benchmarks/hashing.py [--quick] [--parallel] [--variants]``.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from _common import WORK_DIR, Result, log, main, settle, summarize
from blake3 import blake3

from pipetrail.hashing import digest_file

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from pathlib import Path

MiB = 1024 * 1024
KiB = 1024
GiB = 1024 * MiB
BIG_COUNT, BIG_SIZE = 8, 100 * MiB
SMALL_COUNT, SMALL_SIZE = 2000, 100 * KiB
SET_DIR = WORK_DIR / "hashset"
_SPEC = f"big={BIG_COUNT}x{BIG_SIZE} small={SMALL_COUNT}x{SMALL_SIZE} random v1"
TARGET_RATIO = 0.60
_CHUNK = 1 * MiB


# -- the file set ----------------------------------------------------------------------
def _paths() -> tuple[list[Path], list[Path]]:
    big = [SET_DIR / "big" / f"big_{i}.bin" for i in range(BIG_COUNT)]
    small = [SET_DIR / "small" / f"small_{i:04d}.bin" for i in range(SMALL_COUNT)]
    return big, small


def _set_is_complete(big: Sequence[Path], small: Sequence[Path]) -> bool:
    marker = SET_DIR / "COMPLETE"
    if not marker.is_file() or marker.read_text() != _SPEC:
        return False
    try:
        return all(p.stat().st_size == BIG_SIZE for p in big) and all(
            p.stat().st_size == SMALL_SIZE for p in small
        )
    except FileNotFoundError:
        return False


def ensure_file_set() -> tuple[list[Path], list[Path]]:
    """Create the file set unless a complete one is already there; return its paths."""
    big, small = _paths()
    if _set_is_complete(big, small):
        return big, small
    log(f"hashing: creating the file set in {SET_DIR} (about 1 GiB of random bytes)...")
    start = time.perf_counter()
    shutil.rmtree(SET_DIR, ignore_errors=True)
    (SET_DIR / "big").mkdir(parents=True)
    (SET_DIR / "small").mkdir(parents=True)
    for path in big:
        with open(path, "wb") as f:
            for _ in range(BIG_SIZE // (4 * MiB)):
                f.write(os.urandom(4 * MiB))
    for path in small:
        path.write_bytes(os.urandom(SMALL_SIZE))
    os.sync()  # let writeback finish now, not during the timed reads
    (SET_DIR / "COMPLETE").write_text(_SPEC)
    log(f"hashing: file set created in {time.perf_counter() - start:.1f} s")
    return big, small


# -- what is timed ---------------------------------------------------------------------
def aligned_buffer(size: int) -> memoryview:
    """A writable buffer that starts on a page boundary (an anonymous memory map).

    Alignment matters: on the development VM, ``readinto`` a ``bytearray`` (its data starts
    16 bytes into a page) ran about 30% slower than into a page-aligned buffer, and how a
    ``bytearray`` lands depends on the process's allocation history. A page-aligned buffer
    makes the raw read the stable, honest floor.
    """
    return memoryview(mmap.mmap(-1, size))


def raw_read(paths: Sequence[Path], buf: memoryview) -> int:
    """Read every file fully into ``buf`` (reused); return the number of bytes read."""
    view = buf
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return total


def cat_read(paths: Sequence[Path]) -> int:
    """Read every file with ``cat > /dev/null``, the usual meaning of a raw read.

    Returns the bytes cat read (the sizes of the files, as cat succeeded).
    """
    subprocess.run(["cat", *map(str, paths)], stdout=subprocess.DEVNULL, check=True)
    return sum(path.stat().st_size for path in paths)


def cat_start() -> float:
    """Median wall time of three ``cat /dev/null``: what a ``cat`` costs before it reads."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(["cat", "/dev/null"], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hash_all(paths: Sequence[Path]) -> int:
    """Hash every file with pipetrail's digest_file; return the number of bytes hashed."""
    return sum(digest_file(path)[1] for path in paths)


def hash_all_parallel(paths: Sequence[Path], pool: ThreadPoolExecutor) -> int:
    """Hash the files with digest_file on a thread pool."""
    return sum(size for _, size in pool.map(digest_file, paths))


def _timed(func: Callable[[], int], expect: int) -> float:
    start = time.perf_counter()
    got = func()
    seconds = time.perf_counter() - start
    if got != expect:
        raise RuntimeError(f"processed {got} bytes, expected {expect}")
    return seconds


# -- alternative strategies (--variants) -----------------------------------------------
def _b3_read_whole(path: Path) -> int:
    with open(path, "rb") as f:
        data = f.read()
    blake3(data).hexdigest()
    return len(data)


def _make_b3_readinto(view: memoryview, threads: int) -> Callable[[Path], int]:

    def hash_file(path: Path) -> int:
        h = blake3(max_threads=threads)
        total = 0
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                h.update(view[:n])
                total += n
        h.hexdigest()
        return total

    return hash_file


def _b3_mmap(threads: int) -> Callable[[Path], int]:
    def hash_file(path: Path) -> int:
        h = blake3(max_threads=threads)
        h.update_mmap(os.fspath(path))
        h.hexdigest()
        return os.stat(path).st_size

    return hash_file


def _b3_os_read(path: Path) -> int:
    """Like digest_file's small-file path, without the file object: os.open + os.read."""
    size = os.stat(path).st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = [os.read(fd, size + 1)]
        while parts[-1]:
            parts.append(os.read(fd, _CHUNK))
    finally:
        os.close(fd)
    data = parts[0] if len(parts) <= 2 else b"".join(parts)
    blake3(data).hexdigest()
    return len(data)


def _make_b3_aligned(view: memoryview) -> Callable[[Path], int]:
    """Small files: os.open + readv into a reused page-aligned buffer, hash the slice."""

    def hash_file(path: Path) -> int:
        fd = os.open(path, os.O_RDONLY)
        try:
            h = blake3()
            total = 0
            while n := os.readv(fd, [view]):
                h.update(view[:n])
                total += n
        finally:
            os.close(fd)
        h.hexdigest()
        return total

    return hash_file


def _sha256_file(path: Path) -> int:
    with open(path, "rb") as f:
        hashlib.file_digest(f, "sha256").hexdigest()
        return f.tell()


def variant_cases(
    big: list[Path], small: list[Path], pool: ThreadPoolExecutor, workers: int
) -> list[tuple[str, str, Sequence[Path], int, Callable[[Sequence[Path]], int]]]:
    """The ``--variants`` strategies: (row, label, files, bytes, hash-them-all function).

    None of them is ``digest_file`` itself (its rows are the benchmark's own); the labels
    say how each differs from it: large files are read ahead in 4 MiB chunks, never
    mapped, and small ones read into a reused page-aligned buffer, never copied whole.
    """
    big_bytes, small_bytes = BIG_COUNT * BIG_SIZE, SMALL_COUNT * SMALL_SIZE
    return [
        ("big.mmap_1thread", "mmap, max_threads=1", big, big_bytes, _seq(_b3_mmap(1))),
        (
            "big.mmap_auto",
            "mmap, max_threads=AUTO (BLAKE3's mapped mode; digest_file reads ahead)",
            big,
            big_bytes,
            _seq(_b3_mmap(blake3.AUTO)),
        ),
        (
            "big.readinto16M_auto",
            "readinto 16 MiB chunks, max_threads=AUTO",
            big,
            big_bytes,
            _seq(_make_b3_readinto(aligned_buffer(16 * MiB), blake3.AUTO)),
        ),
        (
            "small.read_whole",
            "open().read() + blake3 (a new bytes per file; digest_file reuses a buffer)",
            small,
            small_bytes,
            _seq(_b3_read_whole),
        ),
        ("small.os_read", "os.open + os.read + blake3", small, small_bytes, _seq(_b3_os_read)),
        (
            "small.aligned_readv",
            "os.open + readv into aligned 1 MiB buffer + blake3 (like digest_file's small files)",
            small,
            small_bytes,
            _seq(_make_b3_aligned(aligned_buffer(_CHUNK))),
        ),
        ("small.mmap_1thread", "mmap, max_threads=1", small, small_bytes, _seq(_b3_mmap(1))),
        (
            "small.pool_os_read",
            f"{workers} threads, os.open + os.read + blake3",
            small,
            small_bytes,
            lambda paths: sum(pool.map(_b3_os_read, paths)),
        ),
        (
            "all.sha256",
            "hashlib.file_digest sha256 (peer)",
            [*big, *small],
            big_bytes + small_bytes,
            _seq(_sha256_file),
        ),
    ]


def _variants(big: list[Path], small: list[Path], reps: int) -> list[Result]:
    workers = os.cpu_count() or 1
    pool = ThreadPoolExecutor(max_workers=workers)
    cases = variant_cases(big, small, pool, workers)
    raw = aligned_buffer(_CHUNK)
    results: list[Result] = []
    try:
        for name, what, paths, total, func in cases:
            func(paths)  # warm-up
            ratios: list[float] = []
            for _ in range(reps):
                raw_s = _timed(lambda paths=paths: raw_read(paths, raw), total)
                var_s = _timed(lambda paths=paths, func=func: func(paths), total)
                ratios.append(raw_s / var_s)
            results.append(summarize(f"variant.{name}", f"{what}; hash/raw", ratios, "x"))
    finally:
        pool.shutdown()
    return results


def _seq(func: Callable[[Path], int]) -> Callable[[Sequence[Path]], int]:
    return lambda paths: sum(map(func, paths))


# -- the benchmark ---------------------------------------------------------------------
def run(quick: bool, parallel: bool = False, variants: bool = False) -> list[Result]:
    reps = 3 if quick else 5
    big, small = ensure_file_set()
    big_bytes, small_bytes = BIG_COUNT * BIG_SIZE, SMALL_COUNT * SMALL_SIZE
    total = big_bytes + small_bytes
    buf = aligned_buffer(_CHUNK)
    settle()
    log(f"hashing: warm-up, then {reps} x (raw read + digest_file) of {total / GiB:.2f} GiB")
    raw_read([*big, *small], buf)  # warm the page cache
    hash_all([*big, *small])  # and BLAKE3's thread pool

    raw_big, raw_small, hash_big, hash_small = [], [], [], []
    raw_cat: list[float] = []
    starts: list[float] = []
    everything = [*big, *small]
    for i in range(reps):
        starts.append(cat_start())
        raw_cat.append(_timed(lambda: cat_read(everything), total) - starts[-1])
        raw_big.append(_timed(lambda: raw_read(big, buf), big_bytes))
        raw_small.append(_timed(lambda: raw_read(small, buf), small_bytes))
        hash_big.append(_timed(lambda: hash_all(big), big_bytes))
        hash_small.append(_timed(lambda: hash_all(small), small_bytes))
        log(
            f"  rep {i + 1}: raw {total / GiB / (raw_big[-1] + raw_small[-1]):.2f} GiB/s, "
            f"digest_file {total / GiB / (hash_big[-1] + hash_small[-1]):.2f} GiB/s "
            f"(big files {big_bytes / GiB / hash_big[-1]:.2f}, "
            f"small files {small_bytes / GiB / hash_small[-1]:.2f})"
        )
    raw_all = [b + s for b, s in zip(raw_big, raw_small, strict=True)]
    hash_all_s = [b + s for b, s in zip(hash_big, hash_small, strict=True)]

    def gibps(seconds: list[float], size: int) -> list[float]:
        return [size / GiB / s for s in seconds]

    def ratios(raw_s: list[float], hash_s: list[float]) -> list[float]:
        return [r / h for r, h in zip(raw_s, hash_s, strict=True)]

    size_text = f"{BIG_COUNT}x100 MiB + {SMALL_COUNT}x100 KiB"
    results = [
        summarize(
            "hashing.raw_read",
            f"raw read from page cache with `cat` (its start-up subtracted), {size_text}",
            gibps(raw_cat, total),
            "GiB/s",
        ),
        summarize(
            "hashing.raw_read.cat_start",
            "`cat /dev/null`: the start-up subtracted from each `cat` read",
            [s * 1e3 for s in starts],
            "ms",
        ),
        summarize(
            "hashing.raw_read.floor",
            "memory-speed floor: readinto a page-aligned buffer, in-process",
            gibps(raw_all, total),
            "GiB/s",
        ),
        summarize(
            "hashing.digest_file",
            f"digest_file on every file, {size_text}",
            gibps(hash_all_s, total),
            "GiB/s",
        ),
        summarize(
            "hashing.ratio",
            "hash throughput / raw read (`cat`, start-up subtracted) throughput",
            ratios(raw_cat, hash_all_s),
            "x",
            at_least=TARGET_RATIO,
        ),
        summarize(
            "hashing.ratio.floor",
            "hash throughput / memory-speed floor",
            ratios(raw_all, hash_all_s),
            "x",
        ),
        summarize(
            "hashing.ratio.big",
            f"same, {BIG_COUNT} x 100 MiB only (read-ahead+threads)",
            ratios(raw_big, hash_big),
            "x",
        ),
        summarize(
            "hashing.ratio.small",
            f"same, {SMALL_COUNT} x 100 KiB only (read+1 thread)",
            ratios(raw_small, hash_small),
            "x",
        ),
    ]
    if parallel:
        workers = os.cpu_count() or 1
        log(f"hashing: parallel variant, small files on {workers} threads")
        par_small: list[float] = []
        raw_small_p: list[float] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            hash_all_parallel(small, pool)  # start the threads
            for _ in range(reps):
                raw_small_p.append(_timed(lambda: raw_read(small, buf), small_bytes))
                par_small.append(_timed(lambda: hash_all_parallel(small, pool), small_bytes))
        # Overall: big files as before (their own timings), small files on the pool.
        med_big_raw, med_big_hash = statistics.median(raw_big), statistics.median(hash_big)
        overall = [
            (med_big_raw + r) / (med_big_hash + p)
            for r, p in zip(raw_small_p, par_small, strict=True)
        ]
        results += [
            summarize(
                "hashing.parallel.small",
                f"{SMALL_COUNT} x 100 KiB, digest_file on {workers} threads; hash/raw",
                ratios(raw_small_p, par_small),
                "x",
            ),
            summarize(
                "hashing.parallel.ratio",
                "whole set, small files on the pool; hash/raw",
                overall,
                "x",
            ),
        ]
    if variants:
        log("hashing: timing alternative strategies (--variants)")
        results += _variants(big, small, reps)
    return results


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parallel", action="store_true", help="also hash the small files on a thread pool"
    )
    parser.add_argument(
        "--variants", action="store_true", help="also time alternative hashing strategies"
    )


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0], _options))
