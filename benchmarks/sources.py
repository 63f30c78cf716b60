"""Source observation: first and repeated observation of a folder, against DVC in the same run.

Two folders, both under ``benchmarks/.work/`` (git-ignored) and reused when present: the
hashing benchmark's 1 GiB file set (8 x 100 MiB + 2,000 x 100 KiB random files,
``hashing.ensure_file_set()``), observed as the source folder ``hashset``, and 100,000
files of 1 KiB in 100 sub-folders (``manyfiles``; about 20 s to create).

In this process (``observe_source`` called directly; page cache warm): first observations
by reference and copied into an empty ``LocalStore`` (``first.*``, ``many.first*``),
re-observation with nothing changed through the stat cache (``unchanged``,
``unchanged.copy``), and after rewriting one file (``one_changed``, exactly one file
hashed). Whole process: the first copy in a new Python process (``first.copy.process``),
the unchanged re-observation in a new Python process (``unchanged.process``), and
``pipetrail run`` of a one-step pipeline whose only source is the folder, its content
copied into the store, with nothing changed (``run.cached``, ``_source_run.py``).

The peer, DVC, is measured in the same run (``peers.py``: DVC in its own virtualenv,
installed on first use): ``dvc add`` of the same folder in a new repository, next to
each first observation (which goes first alternates), and ``dvc status`` in the last of
those repositories, once per round of the unchanged rows. Targets are checked only on
whole process against whole process (``_source_rows.py``): ``dvc add`` / first copy in a
new process >= 3x, ``dvc status`` / cached ``pipetrail run`` >= 3x; the other ratios are
context. Without DVC
(``--no-peers``, or its installation failed) those rows say "not measured" and carry no
verdict. Every observation is checked (same digest, expected ``hashed_files``), every
copy too (the store holds exactly the manifest's objects).

Nothing written is deleted before the end of the run: each repetition copies into a new
folder. On ext4, for minutes after many files were deleted, creating a file costs up to
~0.6 ms of kernel CPU instead of ~25 us (inode allocation skips recently freed inodes),
which would swamp what is measured; DVC itself deletes about one file per file it adds.
So the disk needs about 20 GB free, and results are only fair when nothing else deleted
many files on the same filesystem in the previous minutes. The temporary folder is
marked ``chattr +T`` (best effort: ext4 then puts its sub-folders in separate block
groups).

Run: ``.venv/bin/python benchmarks/sources.py [--quick] [--copy-only] [--status-only]
[--no-peers]``; ``--copy-only`` keeps just the first-observation rows (by reference, copy,
write floors, ``dvc add``), ``--status-only`` just the unchanged rows (re-observation,
cached ``pipetrail run``, ``dvc status``; one untimed ``dvc add`` makes the repository).
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

from _common import PYTHON, WORK_DIR, Result, bench_env, log, main, run_timed, settle, summarize
from _source_rows import (
    TARGET_MANY_UNCHANGED_S,
    Peer,
    add_rows,
    first_rows,
    status_rows,
)
from _source_run import CachedRun
from hashing import SET_DIR, ensure_file_set
from peers import Dvc, PeerUnavailable, ensure_dvc

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
_OBSERVE_IN_NEW_PROCESS = """
import sys
from pathlib import Path
from pipetrail.capture.sources import observe_source
from pipetrail.capture.statcache import StatCache
with StatCache(Path(sys.argv[1])) as cache:
    obs = observe_source(sys.argv[2], root=Path(sys.argv[3]), cache=cache, by_reference=True)
print(obs.digest, obs.hashed_files)
"""
_COPY_IN_NEW_PROCESS = """
import sys
from pathlib import Path
from pipetrail.capture.sources import observe_source
from pipetrail.store.local import LocalStore
store = LocalStore(Path(sys.argv[1]))
obs = observe_source(sys.argv[2], root=Path(sys.argv[3]), store_files=store.put_files)
store.sync()
print(obs.digest, obs.hashed_files)
"""


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
        name,
        root=root,
        cache=cache,
        store_files=store.put_files,
        store_threads=threads,
        # As the runner: files seen in the store at its current generation need no
        # lookup (ADR 0032); others, one lookup for all.
        stored_sizes=store.stored_sizes,
        store_generation=store.generation(),
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


def _first_once(
    tmp: Path,
    root: Path,
    name: str,
    count: int,
    i: int,
    *,
    copy: bool,
    threads: int = 4,
    digest: str | None = None,
) -> tuple[float, str]:
    """One first observation (empty stat cache, empty store); return (seconds, digest)."""
    cache = StatCache(tmp / f"first-{name}-{copy}-{threads}-{i}.db")
    objects = tmp / f"objects-{name}-{threads}-{i}"  # kept until the end: see above
    store = LocalStore(objects) if copy else None
    start = time.perf_counter()
    obs = _observe(name, root, cache, store, threads)
    if store is not None:
        store.sync()  # part of the copy: the runner syncs before its records are final
    seconds = time.perf_counter() - start
    cache.close()
    _check(obs, digest=digest, hashed=count, label=f"first {name}")
    if store is not None:
        stored = sum(1 for _ in store.iter_digests())
        if stored != len({e["digest"] for e in (obs.manifest or {}).values()}):
            raise RuntimeError(f"first copy: {stored} objects stored")
    how = f"copy, {threads} store threads" if copy else "by reference"
    log(f"  {name} first ({how}) rep {i + 1}: {seconds:.3f} s")
    return seconds, obs.digest


def _first_observations(
    tmp: Path, root: Path, name: str, count: int, reps: int, *, copy: bool, threads: int = 4
) -> tuple[list[float], str]:
    times: list[float] = []
    digest: str | None = None
    for i in range(reps):
        seconds, digest = _first_once(
            tmp, root, name, count, i, copy=copy, threads=threads, digest=digest
        )
        times.append(seconds)
    return times, digest or ""


def _observe_in_new_process(db: Path, root: Path, name: str) -> tuple[float, str, int]:
    """Observe by reference in a new Python process; return (seconds, digest, hashed)."""
    seconds, out = run_timed(
        [PYTHON, "-c", _OBSERVE_IN_NEW_PROCESS, str(db), name, str(root)], env=bench_env()
    )
    digest, hashed = out.split()
    return seconds, digest, int(hashed)


def _copy_in_new_process(tmp: Path, root: Path, name: str, i: int, digest: str | None) -> float:
    """First observation with copy in a new Python process, like a command; return seconds."""
    objects = tmp / f"objects-process-{name}-{i}"  # kept until the end, like the others
    seconds, out = run_timed(
        [PYTHON, "-c", _COPY_IN_NEW_PROCESS, str(objects), name, str(root)], env=bench_env()
    )
    got, hashed = out.split()
    if digest is not None and got != digest:
        raise RuntimeError(f"first copy in a new process: digest {got}, expected {digest}")
    log(f"  {name} first (copy, new process) rep {i + 1}: {seconds:.3f} s ({hashed} hashed)")
    return seconds


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


def _unchanged_rounds(
    tmp: Path, root: Path, cache: StatCache, peer: Peer, rounds: int, *, digest: str, count: int
) -> tuple[list[float], list[float], list[float], float]:
    """Re-observations with nothing changed, cached ``pipetrail run``s and ``dvc status``.

    Per round: two in-process re-observations, one in a new process, one cached
    ``pipetrail run`` and one ``dvc status``, so a slow phase of the machine hits all.
    Returns (in-process times, new-process times, run times, the run's first time).
    """
    _observe("hashset", root, cache)  # fill the cache
    process_db = tmp / "stat-process.db"
    _, _, filled = _observe_in_new_process(process_db, root, "hashset")  # fill it
    _check_count(filled, count, "unchanged process (filling the cache)")
    cached_run = CachedRun(tmp / "run-project", SET_DIR)
    log("sources: `pipetrail run` of a pipeline reading the folder (first run, warm-ups)")
    run_first = cached_run.prepare()
    peer.time_status(warm_up=True)
    unchanged: list[float] = []
    unchanged_process: list[float] = []
    run_cached: list[float] = []
    for i in range(rounds):
        unchanged += _repeat(
            lambda: _observe("hashset", root, cache), 2, digest=digest, hashed=0, label="unchanged"
        )
        seconds, process_digest, hashed_now = _observe_in_new_process(process_db, root, "hashset")
        if process_digest != digest or hashed_now != 0:
            raise RuntimeError(f"unchanged process: {process_digest}, hashed {hashed_now}")
        unchanged_process.append(seconds)
        run_cached.append(cached_run.time())
        peer.time_status()
        log(
            f"  round {i + 1}: unchanged {unchanged[-1]:.4f} s, in a new process "
            f"{seconds:.3f} s, pipetrail run {run_cached[-1]:.3f} s"
            + (f", dvc status {peer.figures.status[-1]:.3f} s" if peer.figures.status else "")
        )
    return unchanged, unchanged_process, run_cached, run_first


def _status_only(quick: bool, dvc: Dvc | PeerUnavailable) -> list[Result]:
    """Only the unchanged rows and ``dvc status`` (one untimed ``dvc add`` to have a repo)."""
    big, small = ensure_file_set()
    count = len(big) + len(small) + 1  # + the COMPLETE marker
    root = SET_DIR.parent
    _wait_until_not_racy(SET_DIR)
    settle()
    tmp = Path(tempfile.mkdtemp(prefix="pipetrail-bench-sources-"))
    peer = Peer(dvc, tmp)
    try:
        digest = _observe("hashset", root, None).digest  # and warms the page cache up
        peer.prepare(SET_DIR)
        peer.time_add()
        peer.figures.add, peer.figures.add_sync = [], []  # a repository to run status in
        settle()
        rounds = 6 if quick else 10
        with StatCache(tmp / "stat.db") as cache:
            unchanged, unchanged_process, run_cached, run_first = _unchanged_rounds(
                tmp, root, cache, peer, rounds, digest=digest, count=count
            )
    finally:
        log(f"sources: removing {tmp}")
        shutil.rmtree(tmp, ignore_errors=True)
    in_process = summarize(
        "sources.unchanged", "re-observation, nothing changed, in process", unchanged, "s"
    )
    return [
        in_process,
        *status_rows(peer.figures, unchanged, unchanged_process, run_cached, run_first),
    ]


def run(
    quick: bool, copy_only: bool = False, no_peers: bool = False, status_only: bool = False
) -> list[Result]:
    reps = 3 if quick else 5
    many_reps = max(1, reps - 2)
    dvc = PeerUnavailable("--no-peers") if no_peers else ensure_dvc()
    if status_only:
        return _status_only(quick, dvc)
    big, small = ensure_file_set()
    ensure_many_files()
    count = len(big) + len(small) + 1  # + the COMPLETE marker
    root = SET_DIR.parent
    _wait_until_not_racy(SET_DIR)
    _wait_until_not_racy(MANY_DIR)
    settle()
    tmp = Path(tempfile.mkdtemp(prefix="pipetrail-bench-sources-"))
    # ext4's Orlov allocator spreads the sub-folders of a "top" folder over block groups:
    # an attempt to keep the ~2,000 inodes each `dvc add` frees (its temporary names) away
    # from pipetrail's stores, whose file creation they slow down (see the docstring).
    # It reduced the effect in one trial, and did not remove it.
    subprocess.run(["chattr", "+T", str(tmp)], capture_output=True, check=False)
    peer = Peer(dvc, tmp)
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

        peer.prepare(SET_DIR)
        settle()  # the copies above leave writeback behind; do not charge it to what follows
        # Each repetition: by reference, copy, and `dvc add` next to each other (DVC first
        # in every other one), so that a slow phase of the machine hits both sides.
        first_ref: list[float] = []
        first_copy: list[float] = []
        first_process: list[float] = []
        digest = None
        for i in range(reps):
            if i % 2:
                peer.time_add()
            seconds, digest = _first_once(tmp, root, "hashset", count, i, copy=False, digest=digest)
            first_ref.append(seconds)
            first_copy.append(
                _first_once(tmp, root, "hashset", count, i, copy=True, digest=digest)[0]
            )
            first_process.append(_copy_in_new_process(tmp, root, "hashset", i, digest))
            if not i % 2:
                peer.time_add()
        first_copy_1, _ = _first_observations(
            tmp, root, "hashset", count, reps, copy=True, threads=1
        )
        cp_floor = _cp_floor(tmp, SET_DIR, reps)
        if copy_only:
            return first_rows(
                first_ref, first_copy, first_copy_1, cp_floor, many_first, many_copy, many_cp_floor
            ) + add_rows(peer.figures, first_ref, first_copy, first_process)

        cache = StatCache(tmp / "stat.db")
        unchanged, unchanged_process, run_cached, run_first = _unchanged_rounds(
            tmp, root, cache, peer, reps * 2, digest=digest, count=count
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

    results = first_rows(
        first_ref, first_copy, first_copy_1, cp_floor, many_first, many_copy, many_cp_floor
    )
    results += add_rows(peer.figures, first_ref, first_copy, first_process)
    results += [
        summarize(
            "sources.unchanged",
            "re-observation, nothing changed (stat cache), in process",
            unchanged,
            "s",
        ),
        summarize(
            "sources.unchanged.copy",
            "same, with the store's bulk lookup (objects already stored), in process",
            unchanged_copy,
            "s",
        ),
        *status_rows(peer.figures, unchanged, unchanged_process, run_cached, run_first),
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


def _check_count(hashed: int, expected: int, label: str) -> None:
    if hashed != expected:
        raise RuntimeError(f"{label}: hashed {hashed} files, expected {expected}")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--copy-only",
        action="store_true",
        help="only the first-observation rows (by reference, copy, write floors, dvc add)",
    )
    parser.add_argument(
        "--status-only",
        action="store_true",
        help="only the unchanged rows: re-observation, cached `pipetrail run`, `dvc status`",
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="do not install or run DVC; its rows and the comparisons say 'not measured'",
    )


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0], _options))
