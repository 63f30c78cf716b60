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
  threads (which take the files of 1 MiB or more), as the runner does.
  ``first.copy.1thread`` calls ``store_files`` from one thread; ``first.copy.cp_floor``
  times ``cp -r`` + ``sync`` of the folder: what the disk allows for writing 1 GiB;
  ``first.copy.process`` is the same copy in a new Python process (start-up, imports,
  observation, ``sync``), whole process like ``dvc add`` (``vs_dvc.add_copy.process``,
  context);
* ``dvc.add``: the peer, measured in the same run (``peers.py``: DVC in its own
  virtualenv, installed on first use): whole-process ``dvc add hashset`` in a new
  repository (``dvc init --no-scm``, empty cache and state, both in the same temporary
  folder as pipetrail's stores), on a copy of the folder made once (``cp -r`` + ``sync``,
  untimed) and moved into each new repository (a hard-linked copy would not do: DVC
  replaces files with more than one link by a copy from its cache). Timed right after
  ``first.by_reference`` and ``first.copy`` in each repetition (which of DVC and pipetrail
  goes first alternates), so ``vs_dvc.add_copy`` (target >= 3x) and
  ``vs_dvc.add_by_reference`` are ratios per repetition. DVC does not fsync its cache;
  ``dvc.add.sync`` adds a ``sync`` right after (for context: the ratios use the plain
  ``dvc add``, which favours DVC);
* ``unchanged``: re-observation, nothing changed. ``unchanged.copy``: the same with the
  store callback (every object already stored, so each call is an existence check).
  ``unchanged.process``: the same in a new Python process (interpreter start-up, imports,
  opening the stat cache), like a command. Every other ``unchanged`` repetition is
  followed by a ``dvc status`` (``dvc.status``) in the last ``dvc add`` repository;
  ``vs_dvc.status`` (target >= 5x) divides each by the ``unchanged`` time next to it, and
  ``vs_dvc.status.process`` compares it with ``unchanged.process`` (whole process both);
* ``one_changed``: one 100 KiB file rewritten before each observation; the ``.hashed``
  row counts the files re-hashed (target: exactly 1);
* ``many.first`` / ``many.first.copy`` / ``many.unchanged``: the 100,000-file folder,
  digests only, then content copied into an empty ``LocalStore`` like ``first.copy``
  (targets 10 s, 10 s and 1.5 s); ``many.first.copy.cp_floor`` times ``cp -r`` + ``sync``
  of that folder.

Every observation is checked: same digest as the first one (or a different one, after a
change), and the expected ``hashed_files``; every copy, that the store holds exactly the
manifest's objects.

DVC itself deletes about one file per file it adds (temporary names in its cache), which
slows down file creation afterwards (see below) for both tools: measured here, before
segment files and direct copies (ADR 0009), a ``first.copy`` of 1.1 s before any ``dvc
add`` took 2 to 4.9 s after one; since, pipetrail creates about 20 files for the folder
and its copies stay at 0.6-0.9 s. The temporary folder is marked ``chattr +T`` (best
effort: ext4 then puts its sub-folders in separate block groups).

Nothing written is deleted before the end of the run: each repetition copies into a new
folder. On ext4, for about 5 minutes after many files were deleted, creating a file costs
up to ~0.6 ms of kernel CPU instead of ~25 us (inode allocation skips the recently freed
inodes; measured here after deleting 100,000 files), which would swamp what is measured.
So the disk needs about 20 GB free, and results are only fair when nothing else deleted
many files on the same filesystem in the previous minutes.

Without DVC (``--no-peers``, or its installation failed, e.g. offline) the ratio rows use
the issue's constant peer figures (``dvc add`` 6 s, ``dvc status`` 0.9 s) and say
"PEER NOT MEASURED".

Run: ``.venv/bin/python benchmarks/sources.py [--quick] [--copy-only] [--no-peers]``;
``--copy-only`` keeps just the first-observation rows (by reference, copy, write floors,
``dvc add``).
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
from hashing import SET_DIR, ensure_file_set
from peers import Dvc, DvcAddRuns, PeerUnavailable, ensure_dvc

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
# The peer figures, used only when DVC could not be measured in this run.
PEER_DVC_ADD_S, PEER_DVC_STATUS_S = 6.0, 0.9
TARGET_ADD_RATIO, TARGET_STATUS_RATIO = 3.0, 5.0
TARGET_MANY_FIRST_S, TARGET_MANY_UNCHANGED_S = 10.0, 1.5
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


class _Peer:
    """The DVC side of the comparison, or why it is not measured in this run."""

    def __init__(self, dvc: Dvc | PeerUnavailable, tmp: Path) -> None:
        self.runs = DvcAddRuns(dvc, tmp) if isinstance(dvc, Dvc) else None
        self.reason = dvc.reason if isinstance(dvc, PeerUnavailable) else ""
        self.version = dvc.version if isinstance(dvc, Dvc) else ""
        self.add: list[float] = []
        self.add_sync: list[float] = []
        self.status: list[float] = []

    def prepare(self, folder: Path) -> None:
        if self.runs is None:
            return
        log("sources: DVC warm-up, and a copy of the folder for `dvc add` (untimed)")
        try:
            self.runs.prepare(folder)
        except (RuntimeError, OSError) as exc:
            log(f"sources: DVC does not work here, falling back to constant figures: {exc}")
            self.runs, self.reason = None, f"DVC failed: {str(exc).splitlines()[0]}"

    def time_add(self) -> None:
        if self.runs is not None:
            seconds, synced = self.runs.add()
            self.add.append(seconds)
            self.add_sync.append(seconds + synced)

    def time_status(self, *, warm_up: bool = False) -> float:
        """Time one ``dvc status``; the constant figure when DVC is not measured."""
        if self.runs is None:
            return PEER_DVC_STATUS_S
        seconds = self.runs.status()
        if not warm_up:
            self.status.append(seconds)
        return seconds


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


def run(quick: bool, copy_only: bool = False, no_peers: bool = False) -> list[Result]:
    reps = 3 if quick else 5
    many_reps = max(1, reps - 2)
    dvc = PeerUnavailable("--no-peers") if no_peers else ensure_dvc()
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
    peer = _Peer(dvc, tmp)
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
            return _first_rows(
                first_ref, first_copy, first_copy_1, cp_floor, many_first, many_copy, many_cp_floor
            ) + _add_rows(peer, first_ref, first_copy, first_process)

        cache = StatCache(tmp / "stat.db")
        _observe("hashset", root, cache)  # fill the cache
        process_db = tmp / "stat-process.db"
        _, _, filled = _observe_in_new_process(process_db, root, "hashset")  # fill it
        _check_count(filled, count, "unchanged process (filling the cache)")
        peer.time_status(warm_up=True)
        # Two in-process re-observations, one in a new process and one `dvc status` per
        # round; each ratio divides a `dvc status` by the pipetrail time just before it.
        unchanged: list[float] = []
        unchanged_process: list[float] = []
        status_ratio: list[float] = []
        status_process_ratio: list[float] = []
        for _ in range(reps * 2):
            unchanged += _repeat(
                lambda: _observe("hashset", root, cache),
                2,
                digest=digest,
                hashed=0,
                label="unchanged",
            )
            seconds, process_digest, hashed_now = _observe_in_new_process(
                process_db, root, "hashset"
            )
            if process_digest != digest or hashed_now != 0:
                raise RuntimeError(f"unchanged process: {process_digest}, hashed {hashed_now}")
            unchanged_process.append(seconds)
            status = peer.time_status()
            status_ratio.append(status / unchanged[-1])
            status_process_ratio.append(status / seconds)
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
    results += _add_rows(peer, first_ref, first_copy, first_process)
    results += [
        summarize(
            "sources.unchanged",
            "re-observation, nothing changed (stat cache)",
            unchanged,
            "s",
        ),
        summarize(
            "sources.unchanged.copy",
            "same, with the store callback (objects already stored)",
            unchanged_copy,
            "s",
        ),
        summarize(
            "sources.unchanged.process",
            "same, by reference, in a new python process (start-up + imports + observation)",
            unchanged_process,
            "s",
        ),
        *_status_rows(peer, status_ratio, status_process_ratio),
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
        ),
        summarize(
            "sources.first.copy",
            "same, content copied into an empty LocalStore (fsync, as the runner)",
            first_copy,
            "s",
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


def _check_count(hashed: int, expected: int, label: str) -> None:
    if hashed != expected:
        raise RuntimeError(f"{label}: hashed {hashed} files, expected {expected}")


def _not_measured(name: str, what: str, seconds: float, reason: str) -> Result:
    return Result(
        name, f"PEER NOT MEASURED ({reason}); {what}", seconds, seconds, seconds, "s", n=0
    )


def _add_rows(
    peer: _Peer, first_ref: list[float], first_copy: list[float], first_process: list[float]
) -> list[Result]:
    """``dvc add`` and the ratios to pipetrail's first observations, per repetition."""
    if peer.add:
        add, note = peer.add, "per repetition"
        rows = [
            summarize(
                "sources.dvc.add",
                f"`dvc add` of the same folder: DVC {peer.version}, new repo, empty cache, "
                f"cache link: {peer.runs.link if peer.runs else '?'}; whole process",
                add,
                "s",
            ),
            summarize(
                "sources.dvc.add.sync",
                "same + `sync` right after it (DVC does not fsync its cache)",
                peer.add_sync,
                "s",
            ),
        ]
    else:
        add = [PEER_DVC_ADD_S] * len(first_copy)
        note = f"vs the constant {PEER_DVC_ADD_S:g} s, PEER NOT MEASURED"
        what = f"the issue's constant figure for `dvc add` of this folder, {PEER_DVC_ADD_S:g} s"
        rows = [_not_measured("sources.dvc.add", what, PEER_DVC_ADD_S, peer.reason)]
    return [
        *rows,
        summarize(
            "sources.vs_dvc.add_copy",
            f"dvc add / first.copy ({note})",
            [a / c for a, c in zip(add, first_copy, strict=True)],
            "x",
            at_least=TARGET_ADD_RATIO,
        ),
        summarize(
            "sources.vs_dvc.add_by_reference",
            f"dvc add / first.by_reference ({note})",
            [a / r for a, r in zip(add, first_ref, strict=True)],
            "x",
        ),
        summarize(
            "sources.first.copy.process",
            "first.copy in a new python process (start-up + imports + observation + sync)",
            first_process,
            "s",
        ),
        summarize(
            "sources.vs_dvc.add_copy.process",
            f"dvc add / first.copy.process, both whole process ({note})",
            [a / c for a, c in zip(add, first_process, strict=True)],
            "x",
        ),
    ]


def _status_rows(
    peer: _Peer, status_ratio: list[float], status_process_ratio: list[float]
) -> list[Result]:
    """``dvc status`` and the ratios to pipetrail's unchanged re-observations."""
    if peer.status:
        note = "per round"
        rows = [
            summarize(
                "sources.dvc.status",
                "`dvc status` after that `dvc add`, nothing changed; whole process",
                peer.status,
                "s",
            )
        ]
    else:
        note = f"vs the constant {PEER_DVC_STATUS_S:g} s, PEER NOT MEASURED"
        what = f"the issue's constant figure for `dvc status`, {PEER_DVC_STATUS_S:g} s"
        rows = [_not_measured("sources.dvc.status", what, PEER_DVC_STATUS_S, peer.reason)]
    return [
        *rows,
        summarize(
            "sources.vs_dvc.status",
            f"dvc status / unchanged ({note})",
            status_ratio,
            "x",
            at_least=TARGET_STATUS_RATIO,
        ),
        summarize(
            "sources.vs_dvc.status.process",
            f"dvc status / unchanged.process, both whole process ({note})",
            status_process_ratio,
            "x",
        ),
    ]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--copy-only",
        action="store_true",
        help="only the first-observation rows (by reference, copy, write floors, dvc add)",
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="do not install or run DVC; compare with the issue's constant figures",
    )


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0], _options))
