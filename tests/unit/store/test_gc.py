"""Removing objects from a local store (store.gc) and the collection locks (store.gc_lock)."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

import pytest

from pipetrail.hashing import digest_bytes
from pipetrail.store import LocalStore, verify_store
from pipetrail.store.gc import find_garbage, remove_garbage
from pipetrail.store.gc_lock import StoreBusyError, collector_lock, writer_lease

if TYPE_CHECKING:
    from pathlib import Path

KIB = 1024


def _files(folder: Path, sizes: list[int], seed: int) -> list[Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"f{seed}-{i:03d}.bin"
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
    return paths


def _age(store: LocalStore, seconds: float) -> None:
    """Make every object of the store look stored ``seconds`` ago."""
    then = time.time() - seconds
    for folder, _, names in os.walk(store.root):
        for name in names:
            if name != "pack.db" and not name.startswith("pack.db-"):
                os.utime(os.path.join(folder, name), (then, then))
    conn = sqlite3.connect(store.root / "pack.db")
    conn.execute("UPDATE objects SET stored_at = ?", (int(then),))
    conn.commit()
    conn.close()


def test_only_objects_outside_keep_and_past_the_grace_period_go(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    small_keep, small_drop = store.put_bytes(b"keep me"), store.put_bytes(b"drop me")
    big_keep = store.put_bytes(b"K" * (40 * KIB))  # loose
    big_drop = store.put_bytes(b"D" * (40 * KIB))
    _age(store, 7200)
    young = store.put_bytes(b"just stored, nobody names me yet")
    keep = {small_keep, big_keep}

    garbage = find_garbage(store.root, keep, grace=3600)
    assert set(garbage.packed) == {small_drop}
    assert set(garbage.loose) == {big_drop}
    assert garbage.young == 1  # `young` stays: a run may be about to name it
    assert garbage.by_kind()["loose"] == {"objects": 1, "bytes": 40 * KIB}

    remove_garbage(store.root, garbage)
    assert not store.exists(small_drop)
    assert not store.exists(big_drop)
    assert store.get_bytes(small_keep) == b"keep me"
    assert store.get_bytes(big_keep) == b"K" * (40 * KIB)
    assert store.exists(young)
    assert verify_store(store, keep).ok

    # With no grace, the young object goes too.
    garbage = find_garbage(store.root, keep, grace=0)
    assert set(garbage.packed) == {young}


def test_segments_with_few_live_bytes_are_rewritten_and_empty_ones_dropped(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "s")
    first = [
        d
        for d, _ in store.put_files([(p, None) for p in _files(tmp_path / "a", [20 * KIB] * 8, 1)])
    ]
    second = [
        d
        for d, _ in store.put_files([(p, None) for p in _files(tmp_path / "b", [20 * KIB] * 8, 2)])
    ]
    segments = sorted(os.listdir(store.root / "segments"))
    assert len(segments) == 2
    _age(store, 7200)
    # One object of the first segment stays (live share 1/8: rewritten), none of the
    # second (dropped).
    keep = {first[3]}
    garbage = find_garbage(store.root, keep, grace=60)
    assert set(garbage.segment) == set(first + second) - keep
    remove_garbage(store.root, garbage)
    assert (garbage.segments_dropped, garbage.segments_rewritten) == (1, 1)
    assert garbage.segment_bytes_freed == 15 * 20 * KIB
    left = os.listdir(store.root / "segments")
    assert len(left) == 1
    assert left[0] not in segments
    assert os.path.getsize(store.root / "segments" / left[0]) == 20 * KIB
    assert digest_bytes(store.get_bytes(first[3])) == first[3]
    assert verify_store(LocalStore(store.root), keep).ok


def test_a_segment_mostly_alive_is_left_as_it_is(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    digests = [
        d
        for d, _ in store.put_files([(p, None) for p in _files(tmp_path / "a", [20 * KIB] * 8, 3)])
    ]
    (segment,) = os.listdir(store.root / "segments")
    _age(store, 7200)
    garbage = find_garbage(store.root, set(digests[:6]), grace=60)
    remove_garbage(store.root, garbage)
    assert garbage.segments_rewritten == garbage.segments_dropped == 0
    assert os.listdir(store.root / "segments") == [segment]
    assert all(store.exists(d) for d in digests[:6])
    assert not any(store.exists(d) for d in digests[6:])


def test_a_corrupt_live_object_keeps_its_segment(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    digests = [
        d
        for d, _ in store.put_files([(p, None) for p in _files(tmp_path / "a", [20 * KIB] * 8, 4)])
    ]
    (segment,) = os.listdir(store.root / "segments")
    path = store.root / "segments" / segment
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:  # flip a byte of the first (live) object
        first = f.read(1)
        f.seek(0)
        f.write(b"\x00" if first != b"\x00" else b"\x01")
    _age(store, 7200)
    garbage = find_garbage(store.root, {digests[0]}, grace=60)
    remove_garbage(store.root, garbage)
    assert garbage.segments_rewritten == 0
    assert os.listdir(store.root / "segments") == [segment]  # left for `store verify`


def test_the_pack_is_vacuumed_once_mostly_free(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    digests = [store.put_bytes(os.urandom(8 * KIB)) for _ in range(200)]
    store.sync()
    _age(store, 7200)
    before = os.path.getsize(store.root / "pack.db")
    garbage = find_garbage(store.root, set(digests[:20]), grace=60)
    remove_garbage(store.root, garbage)
    assert garbage.pack_bytes_freed > 0
    assert os.path.getsize(store.root / "pack.db") < before / 2
    fresh = LocalStore(store.root)
    assert all(fresh.exists(d) for d in digests[:20])
    assert not any(fresh.exists(d) for d in digests[20:])


def test_rows_of_a_pack_made_before_stored_at_count_as_old(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    conn = sqlite3.connect(root / "pack.db")
    conn.execute("CREATE TABLE objects (digest TEXT PRIMARY KEY, data BLOB NOT NULL)")
    conn.execute("INSERT INTO objects VALUES (?, ?)", (digest_bytes(b"old"), b"old"))
    conn.commit()
    conn.close()
    store = LocalStore(root)
    new = store.put_bytes(b"new")  # gains the column on open; stamped
    garbage = find_garbage(root, set(), grace=3600)
    assert set(garbage.packed) == {digest_bytes(b"old")}
    assert garbage.young == 1
    assert store.exists(new)


def test_two_collections_never_run_at_once(tmp_path: Path) -> None:
    with (
        collector_lock(tmp_path, exclude_writers=False),
        pytest.raises(StoreBusyError, match="another garbage collection is running"),
        collector_lock(tmp_path, exclude_writers=False),
    ):
        pass


def test_a_collection_waits_for_writers_or_refuses(tmp_path: Path) -> None:
    lease = writer_lease(tmp_path)
    lease.__enter__()
    try:
        with (
            pytest.raises(StoreBusyError, match="a run is writing to the store"),
            collector_lock(tmp_path, exclude_writers=True, wait=0.2),
        ):
            pass
        # A dry run does not need the writers out.
        with collector_lock(tmp_path, exclude_writers=False) as locked:
            assert locked
        threading.Timer(0.3, lease.__exit__, (None, None, None)).start()
        with collector_lock(tmp_path, exclude_writers=True, wait=10) as locked:
            assert locked  # the writer let go while the collection waited
    finally:
        lease.__exit__(None, None, None)


def test_a_writer_waits_while_a_collection_sweeps(tmp_path: Path) -> None:
    entered = threading.Event()

    def writer() -> None:
        with writer_lease(tmp_path):
            entered.set()

    with collector_lock(tmp_path, exclude_writers=True):
        thread = threading.Thread(target=writer)
        thread.start()
        assert not entered.wait(0.3)
    assert entered.wait(5)
    thread.join()


def test_packed_objects_are_stamped_with_the_time_they_were_stored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    before = int(time.time())
    put = store.put_bytes(b"written at once")
    store.hold_small_writes()
    held = store.put_bytes(b"held, then committed")
    store.commit_small_writes(release=True)
    after = int(time.time())
    conn = sqlite3.connect(store.root / "pack.db")
    stamps = dict(conn.execute("SELECT digest, stored_at FROM objects"))
    conn.close()
    assert set(stamps) == {put, held}
    assert all(type(s) is int and before <= s <= after for s in stamps.values()), stamps
