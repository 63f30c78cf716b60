"""Source observation: first and repeated observation of a folder, with the stat cache.

Two folders, both under ``benchmarks/.work/`` (git-ignored) and reused when present:

* the hashing benchmark's 1 GiB file set (8 x 100 MiB + 2,000 x 100 KiB random files,
  ``hashing.ensure_file_set()``), observed as the source folder ``hashset``;
* 100,000 files of 1 KiB in 100 sub-folders (``manyfiles``; about 20 s to create).

Rows, all in this process (``observe_source`` called directly; the page cache is warm, as
it would be for data a pipeline just wrote or read):

* ``first.by_reference``: first observation (empty stat cache), digests only;
* ``first.copy``: first observation into an empty ``LocalStore`` (fsync on, the default,
  and ``sync()`` at the end), ``store_files=store.put_files`` with the default 4 store
  threads (which take the files of 1 MiB or more), as the runner does; the issue's peer
  figure is ``dvc add`` of the same folder, about 6 s, and asks for at least 3x faster
  (<= 2 s). ``first.copy.1thread`` calls ``store_files`` from one
  thread; ``first.copy.cp_floor`` times ``cp -r`` + ``sync`` of the folder: what the disk
  allows for writing 1 GiB;
* ``unchanged``: re-observation, nothing changed; target well under ``dvc status``'s
  0.9 s / 5 = 0.18 s. ``unchanged.copy``: the same with the store callback (every object
  already stored, so each call is an existence check);
* ``one_changed``: one 100 KiB file rewritten before each observation; the ``.hashed``
  row counts the files re-hashed (target: exactly 1);
* ``many.first`` / ``many.first.copy`` / ``many.unchanged``: the 100,000-file folder,
  digests only, then content copied into an empty ``LocalStore`` like ``first.copy``
  (targets 10 s, 10 s and 1.5 s); ``many.first.copy.cp_floor`` times ``cp -r`` + ``sync``
  of that folder.

Every observation is checked: same digest as the first one (or a different one, after a
change), and the expected ``hashed_files``; every copy, that the store holds exactly the
manifest's objects.

Nothing written is deleted before the end of the run: each repetition copies into a new
folder. On ext4, for about 5 minutes after many files were deleted, creating a file costs
up to ~0.6 ms of kernel CPU instead of ~25 us (inode allocation skips the recently freed
inodes; measured here after deleting 100,000 files), which would swamp what is measured.
So the disk needs about 20 GB free, and results are only fair when nothing else deleted
many files on the same filesystem in the previous minutes.

Run: ``.venv/bin/python benchmarks/sources.py [--quick] [--copy-only]``; ``--copy-only``
keeps just the first-observation rows (by reference, copy, write floors).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _common import WORK_DIR, Result, log, main, settle, summarize
from hashing import SET_DIR, ensure_file_set

from pipetrail.capture.sources import observe_source
from pipetrail.capture.statcache import RACY_WINDOW_NS, StatCache
from pipetrail.store.local import LocalStore

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from pipetrail.capture.sources import SourceObservation

MANY_DIR = WORK_DIR / "manyfiles"
MANY_DIRS, MANY_PER_DIR, MANY_SIZE = 100, 1000, 1024
_MANY_SPEC = f"{MANY_DIRS}x{MANY_PER_DIR}x{MANY_SIZE} random v1"
PEER_DVC_ADD_S, PEER_DVC_STATUS_S = 6.0, 0.9
TARGET_FIRST_S = PEER_DVC_ADD_S / 3
TARGET_UNCHANGED_S = PEER_DVC_STATUS_S / 5
TARGET_MANY_FIRST_S, TARGET_MANY_UNCHANGED_S = 10.0, 1.5


def ensure_many_files() -> Path:
    """Create the 100,000-file folder unless a complete one is there; return it."""
    marker = MANY_DIR / "COMPLETE"
    if marker.is_file() and marker.read_text() == _MANY_SPEC:
        return MANY_DIR
    log(f"sources: creating {MANY_DIRS * MANY_PER_DIR} files of 1 KiB in {MANY_DIR}...")
    start = time.perf_counter()
    shutil.rmtree(MANY_DIR, ignore_errors=True)
    data = os.urandom(MANY_DIRS * MANY_PER_DIR * MANY_SIZE)
    offset = 0
    for d in range(MANY_DIRS):
        sub = MANY_DIR / f"d{d:03d}"
        sub.mkdir(parents=True)
        for f in range(MANY_PER_DIR):
            (sub / f"f{f:04d}.bin").write_bytes(data[offset : offset + MANY_SIZE])
            offset += MANY_SIZE
    os.sync()
    marker.write_text(_MANY_SPEC)
    log(f"sources: created in {time.perf_counter() - start:.1f} s")
    return MANY_DIR


def _wait_until_not_racy(folder: Path) -> None:
    """Files modified less than the racy window ago are never cached; let them age."""
    newest = max(
        os.stat(os.path.join(d, name)).st_ctime_ns
        for d, _, names in os.walk(folder)
        for name in names
    )
    wait = (newest + RACY_WINDOW_NS - time.time_ns()) / 1e9 + 0.1
    if wait > 0:
        time.sleep(wait)


def _observe(
    name: str,
    root: Path,
    cache: StatCache | None,
    store: LocalStore | None = None,
    threads: int = 4,
) -> SourceObservation:
    if store is None:
        return observe_source(name, root=root, cache=cache, by_reference=True)
    return observe_source(
        name, root=root, cache=cache, store_files=store.put_files, store_threads=threads
    )


def _timed(func: Callable[[], SourceObservation]) -> tuple[float, SourceObservation]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def _check(obs: SourceObservation, *, digest: str | None, hashed: int, label: str) -> None:
    if digest is not None and obs.digest != digest:
        raise RuntimeError(f"{label}: digest {obs.digest}, expected {digest}")
    if obs.hashed_files != hashed:
        raise RuntimeError(f"{label}: hashed {obs.hashed_files} files, expected {hashed}")


def _first_observations(
    tmp: Path, root: Path, name: str, count: int, reps: int, *, copy: bool, threads: int = 4
) -> tuple[list[float], str]:
    times: list[float] = []
    digest = ""
    for i in range(reps):
        cache = StatCache(tmp / f"first-{name}-{copy}-{threads}-{i}.db")
        objects = tmp / f"objects-{name}-{threads}-{i}"  # kept until the end: see above
        store = LocalStore(objects) if copy else None
        start = time.perf_counter()
        obs = _observe(name, root, cache, store, threads)
        if store is not None:
            store.sync()  # part of the copy: the runner syncs before its records are final
        seconds = time.perf_counter() - start
        cache.close()
        _check(obs, digest=digest or None, hashed=count, label=f"first {name}")
        digest = obs.digest
        times.append(seconds)
        if copy and store is not None:
            stored = sum(1 for _ in store.iter_digests())
            if stored != len({e["digest"] for e in (obs.manifest or {}).values()}):
                raise RuntimeError(f"first copy: {stored} objects stored")
        how = f"copy, {threads} store threads" if copy else "by reference"
        log(f"  {name} first ({how}) rep {i + 1}: {seconds:.3f} s")
    return times, digest


def _cp_floor(tmp: Path, folder: Path, reps: int) -> list[float]:
    """Time ``cp -r`` of the folder plus ``sync``: the disk's floor for writing it."""
    times: list[float] = []
    for i in range(reps):
        start = time.perf_counter()
        subprocess.run(["cp", "-r", str(folder), str(tmp / f"cp-{folder.name}-{i}")], check=True)
        os.sync()
        times.append(time.perf_counter() - start)
        log(f"  {folder.name} cp -r + sync rep {i + 1}: {times[-1]:.3f} s")
    return times


def _repeat(
    func: Callable[[], SourceObservation], reps: int, *, digest: str | None, hashed: int, label: str
) -> list[float]:
    times: list[float] = []
    for _ in range(reps):
        seconds, obs = _timed(func)
        _check(obs, digest=digest, hashed=hashed, label=label)
        times.append(seconds)
    return times


def _rewrite(path: Path) -> None:
    """Replace a file with new random bytes of the same size (atomically)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(os.urandom(path.stat().st_size))
    os.replace(tmp, path)


def run(quick: bool, copy_only: bool = False) -> list[Result]:
    reps = 3 if quick else 5
    many_reps = max(1, reps - 2)
    big, small = ensure_file_set()
    ensure_many_files()
    count = len(big) + len(small) + 1  # + the COMPLETE marker
    root = SET_DIR.parent
    _wait_until_not_racy(SET_DIR)
    _wait_until_not_racy(MANY_DIR)
    settle()
    tmp = Path(tempfile.mkdtemp(prefix="pipetrail-bench-sources-"))
    try:
        log("sources: warm-up (page cache, BLAKE3 threads)")
        _observe("hashset", root, None)
        _observe("manyfiles", root, None)

        # The 100,000 files first: after the 1 GiB copies below (15 GiB written, kept until
        # the end) the kernel reclaims page cache for every new page, which made the same
        # copy about 30% slower (measured).
        many_count = MANY_DIRS * MANY_PER_DIR + 1
        many_first, many_digest = _first_observations(
            tmp, root, "manyfiles", many_count, many_reps, copy=False
        )
        many_copy, _ = _first_observations(tmp, root, "manyfiles", many_count, many_reps, copy=True)
        many_cp_floor = _cp_floor(tmp, MANY_DIR, many_reps)

        settle()  # the copies above leave writeback behind; do not charge it to what follows
        first_ref, digest = _first_observations(tmp, root, "hashset", count, reps, copy=False)
        first_copy, _ = _first_observations(tmp, root, "hashset", count, reps, copy=True)
        first_copy_1, _ = _first_observations(
            tmp, root, "hashset", count, reps, copy=True, threads=1
        )
        cp_floor = _cp_floor(tmp, SET_DIR, reps)
        if copy_only:
            return _first_rows(
                first_ref, first_copy, first_copy_1, cp_floor, many_first, many_copy, many_cp_floor
            )

        cache = StatCache(tmp / "stat.db")
        _observe("hashset", root, cache)  # fill the cache
        unchanged = _repeat(
            lambda: _observe("hashset", root, cache),
            reps * 4,
            digest=digest,
            hashed=0,
            label="unchanged",
        )
        store = LocalStore(tmp / "objects")
        _observe("hashset", root, cache, store)  # fill the store
        unchanged_copy = _repeat(
            lambda: _observe("hashset", root, cache, store),
            reps * 4,
            digest=digest,
            hashed=0,
            label="unchanged copy",
        )
        log(f"  unchanged: {min(unchanged):.4f} s, with store callback {min(unchanged_copy):.4f} s")

        victim = SET_DIR / "small" / "small_0000.bin"
        changed: list[float] = []
        hashed: list[float] = []
        for _ in range(reps * 2):
            _rewrite(victim)
            seconds, obs = _timed(lambda: _observe("hashset", root, cache))
            if obs.digest == digest:
                raise RuntimeError("one_changed: the folder digest did not change")
            _check(obs, digest=None, hashed=1, label="one changed")
            changed.append(seconds)
            hashed.append(obs.hashed_files)
        cache.close()

        settle()
        many_cache = StatCache(tmp / "many.db")
        _observe("manyfiles", root, many_cache)
        many_unchanged = _repeat(
            lambda: _observe("manyfiles", root, many_cache),
            reps,
            digest=many_digest,
            hashed=0,
            label="many unchanged",
        )
        many_cache.close()
    finally:
        log(f"sources: removing {tmp}")
        shutil.rmtree(tmp, ignore_errors=True)

    results = _first_rows(
        first_ref, first_copy, first_copy_1, cp_floor, many_first, many_copy, many_cp_floor
    )
    results += [
        summarize(
            "sources.unchanged",
            "re-observation, nothing changed (peer: dvc status ~0.9 s)",
            unchanged,
            "s",
            at_most=TARGET_UNCHANGED_S,
        ),
        summarize(
            "sources.unchanged.copy",
            "same, with the store callback (objects already stored)",
            unchanged_copy,
            "s",
        ),
        summarize(
            "sources.one_changed",
            "re-observation after rewriting one 100 KiB file",
            changed,
            "s",
        ),
        summarize(
            "sources.one_changed.hashed",
            "files hashed by that re-observation",
            hashed,
            "files",
            at_most=1,
        ),
        summarize(
            "sources.many.unchanged",
            "re-observation of the 100,000 files, nothing changed",
            many_unchanged,
            "s",
            at_most=TARGET_MANY_UNCHANGED_S,
        ),
    ]
    return results


def _first_rows(
    first_ref: list[float],
    first_copy: list[float],
    first_copy_1: list[float],
    cp_floor: list[float],
    many_first: list[float],
    many_copy: list[float],
    many_cp_floor: list[float],
) -> list[Result]:
    set_text = "1 GiB folder (8x100 MiB + 2000x100 KiB)"
    return [
        summarize(
            "sources.first.by_reference",
            f"first observation, {set_text}, digests only",
            first_ref,
            "s",
            at_most=TARGET_FIRST_S,
        ),
        summarize(
            "sources.first.copy",
            "same, content copied into an empty LocalStore (peer: dvc add ~6 s)",
            first_copy,
            "s",
            at_most=TARGET_FIRST_S,
        ),
        summarize(
            "sources.first.copy.1thread",
            "same, store_files called from one thread (store_threads=1)",
            first_copy_1,
            "s",
        ),
        summarize(
            "sources.first.copy.cp_floor",
            "write floor: `cp -r` of the folder, then sync (no hashing)",
            cp_floor,
            "s",
        ),
        summarize(
            "sources.many.first",
            "first observation, 100,000 files of 1 KiB, digests only",
            many_first,
            "s",
            at_most=TARGET_MANY_FIRST_S,
        ),
        summarize(
            "sources.many.first.copy",
            "same, content copied into an empty LocalStore (store.put_files, as the runner)",
            many_copy,
            "s",
            at_most=TARGET_MANY_FIRST_S,
        ),
        summarize(
            "sources.many.first.copy.cp_floor",
            "write floor: `cp -r` of the 100,000 files, then sync (no hashing)",
            many_cp_floor,
            "s",
        ),
    ]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--copy-only",
        action="store_true",
        help="only the first-observation rows (by reference, copy, write floors)",
    )


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0], _options))
