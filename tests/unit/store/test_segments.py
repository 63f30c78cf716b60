"""Segment files (ADR 0009) and copies past the page cache (store.direct_io)."""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError, StoreError
from pipetrail.hashing import digest_bytes
from pipetrail.store import LocalStore, direct_io, verify_store

if TYPE_CHECKING:
    from pathlib import Path

KIB = 1024


def _write(folder: Path, sizes: list[int], seed: int = 0) -> list[Path]:
    """Files of these sizes with random (seeded) bytes; returns their paths."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"f{i:03d}.bin"
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
    return paths


def _segments(root: Path) -> list[Path]:
    folder = root / "segments"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_medium_files_of_a_batch_share_one_segment_and_read_back(tmp_path: Path) -> None:
    sizes = [17 * KIB, 20_001, 65 * KIB + 3, 300_000, 1024 * KIB, 999_999, 40_000, 16 * KIB + 1]
    paths = _write(tmp_path / "src", sizes)
    store = LocalStore(tmp_path / "s")
    results = store.put_files([(p, None) for p in paths])
    assert results == [(digest_bytes(p.read_bytes()), p.stat().st_size) for p in paths]
    (segment,) = _segments(tmp_path / "s")
    assert segment.stat().st_size == sum(sizes)  # objects back to back, no padding
    assert segment.stat().st_mode & 0o777 == 0o444
    assert list((tmp_path / "s" / "tmp").iterdir()) == []  # no loose temp files at all
    store.sync()
    again = LocalStore(tmp_path / "s")  # a new process would see the same
    for path, (digest, size) in zip(paths, results, strict=True):
        data = path.read_bytes()
        assert again.exists(digest)
        assert again.size(digest) == size
        assert again.get_bytes(digest) == data
        with again.open(digest) as f:
            assert f.read() == data
        assert again.local_path(digest).read_bytes() == data  # a loose copy on demand
    assert sorted(again.iter_digests()) == sorted(d for d, _ in results)
    assert verify_store(again).ok


def test_objects_larger_than_the_buffer_span_flushes(tmp_path: Path) -> None:
    # 12 x 1 MiB: more than the 8 MiB copy buffer, so objects straddle its flushes.
    paths = _write(tmp_path / "src", [1024 * KIB - i for i in range(12)], seed=1)
    store = LocalStore(tmp_path / "s")
    results = store.put_files([(p, None) for p in paths])
    assert len(_segments(tmp_path / "s")) == 1
    for path, (digest, _) in zip(paths, results, strict=True):
        assert store.get_bytes(digest) == path.read_bytes()


def test_files_above_the_limit_and_short_batches_stay_loose(tmp_path: Path) -> None:
    big = _write(tmp_path / "big", [1024 * KIB + 1] * 8, seed=2)
    store = LocalStore(tmp_path / "s")
    digests = [d for d, _ in store.put_files([(p, None) for p in big])]
    assert _segments(tmp_path / "s") == []
    assert all(os.path.exists(store._path(d)) for d in digests)
    few = _write(tmp_path / "few", [100 * KIB] * 3, seed=3)  # fewer than 8 items
    digests = [d for d, _ in store.put_files([(p, None) for p in few])]
    assert _segments(tmp_path / "s") == []
    assert all(os.path.exists(store._path(d)) for d in digests)


def test_duplicates_are_appended_once(tmp_path: Path) -> None:
    paths = _write(tmp_path / "src", [50 * KIB] * 8, seed=4)
    store = LocalStore(tmp_path / "s")
    store.put_files([(p, None) for p in paths[:4]] * 2)  # first batch: 4 distinct, twice
    (first,) = _segments(tmp_path / "s")
    assert first.stat().st_size == 4 * 50 * KIB
    # Next batch: the 4 already stored (hashed while copied, then dropped) + 4 new ones.
    results = store.put_files([(p, None) for p in paths])
    new = [s for s in _segments(tmp_path / "s") if s != first]
    assert [s.stat().st_size for s in new] == [4 * 50 * KIB]
    assert [d for d, _ in results] == [digest_bytes(p.read_bytes()) for p in paths]


def test_a_changed_file_leaves_no_segment_and_no_row(tmp_path: Path) -> None:
    paths = _write(tmp_path / "src", [30 * KIB] * 10, seed=5)
    items: list[tuple[Path, str | None]] = [(p, None) for p in paths]
    items[6] = (paths[6], digest_bytes(b"what the caller thought"))
    store = LocalStore(tmp_path / "s")
    with pytest.raises(IntegrityError, match=r"f006\.bin changed while being read"):
        store.put_files(items)
    assert _segments(tmp_path / "s") == []
    assert list(store.iter_digests()) == []


def test_a_corrupt_object_in_a_segment_is_quarantined_alone(tmp_path: Path) -> None:
    paths = _write(tmp_path / "src", [20 * KIB] * 8, seed=6)
    store = LocalStore(tmp_path / "s")
    digests = [d for d, _ in store.put_files([(p, None) for p in paths])]
    (segment,) = _segments(tmp_path / "s")
    segment.chmod(0o644)
    with open(segment, "r+b") as f:  # flip one byte of the third object
        f.seek(2 * 20 * KIB + 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    report = verify_store(store)
    assert report.corrupt == [digests[2]]
    assert not store.exists(digests[2])
    assert [p.name.split(".")[0] for p in (tmp_path / "s" / "quarantine").iterdir()] == [
        digests[2].removeprefix("blake3:")
    ]
    for path, digest in zip(paths, digests, strict=True):
        if digest != digests[2]:
            assert store.get_bytes(digest) == path.read_bytes()


def test_a_truncated_segment_is_a_clear_error(tmp_path: Path) -> None:
    paths = _write(tmp_path / "src", [20 * KIB] * 8, seed=7)
    store = LocalStore(tmp_path / "s")
    digests = [d for d, _ in store.put_files([(p, None) for p in paths])]
    (segment,) = _segments(tmp_path / "s")
    segment.chmod(0o644)
    os.truncate(segment, 5 * 20 * KIB)
    assert store.get_bytes(digests[0]) == paths[0].read_bytes()
    with pytest.raises(StoreError, match=r"segment was truncated.*pipetrail store verify"):
        store.get_bytes(digests[7])
    assert store.verify(digests[7]) is False
    assert not store.exists(digests[7])
    segment.unlink()
    with pytest.raises(StoreError, match=r"could not be read"):
        store.get_bytes(digests[0])


def test_clean_tmp_removes_only_old_unreferenced_segments(tmp_path: Path) -> None:
    paths = _write(tmp_path / "src", [20 * KIB] * 8, seed=8)
    store = LocalStore(tmp_path / "s")
    store.put_files([(p, None) for p in paths])
    (used,) = _segments(tmp_path / "s")
    orphan = tmp_path / "s" / "segments" / "0123.seg"  # a killed writer's
    young = tmp_path / "s" / "segments" / "4567.seg"  # a writer still running
    orphan.write_bytes(b"x" * 100)
    young.write_bytes(b"y")
    old = time.time() - 7200
    for path in (used, orphan):
        os.utime(path, (old, old))
    assert store.clean_tmp() == 1
    assert _segments(tmp_path / "s") == sorted([used, young])
    assert verify_store(store).ok


def test_old_packs_gain_the_segment_index(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    conn = sqlite3.connect(root / "pack.db")  # a pack written before segments existed
    conn.execute("CREATE TABLE objects (digest TEXT PRIMARY KEY, data BLOB NOT NULL)")
    conn.execute("INSERT INTO objects VALUES (?, ?)", (digest_bytes(b"old"), b"old"))
    conn.commit()
    conn.close()
    store = LocalStore(root)
    assert store.get_bytes(digest_bytes(b"old")) == b"old"
    paths = _write(tmp_path / "src", [20 * KIB] * 8, seed=9)
    digests = [d for d, _ in store.put_files([(p, None) for p in paths])]
    assert store.get_bytes(digests[3]) == paths[3].read_bytes()


def test_scratch_stores_use_segments_without_direct_io(tmp_path: Path) -> None:
    paths = _write(tmp_path / "src", [20 * KIB + 7] * 9, seed=10)
    store = LocalStore(tmp_path / "s", fsync=False)
    digests = [d for d, _ in store.put_files([(p, None) for p in paths])]
    assert len(_segments(tmp_path / "s")) == 1
    assert [store.get_bytes(d) for d in digests] == [p.read_bytes() for p in paths]


# -- copying past the page cache -------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 64 * KIB, 8 * 1024 * KIB + 5])
def test_copy_hashing_writes_and_hashes_exactly_what_it_read(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    (tmp_path / "src").write_bytes(data)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        digest, copied = direct_io.copy_hashing(src, size, dst, direct=True)
        os.fsync(dst)
    finally:
        os.close(src)
        os.close(dst)
    assert (digest, copied) == (digest_bytes(data), size)
    assert (tmp_path / "dst").read_bytes() == data


@pytest.mark.skipif(not direct_io.direct_io_available(), reason="O_DIRECT is Linux-only")
def test_direct_writer_uses_o_direct_where_the_filesystem_allows(tmp_path: Path) -> None:
    import fcntl

    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        try:
            writer = direct_io.DirectWriter(fd, direct=True)
        except OSError:
            pytest.skip("this filesystem refuses O_DIRECT")
        assert writer.direct == bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        buffer = direct_io.aligned_buffer("test")
        buffer[:10] = b"0123456789"
        with memoryview(buffer) as view:
            writer.write(view[: 4096 + 10])  # one aligned block, then a buffered tail
        assert not writer.direct
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes()[:10] == b"0123456789"
    assert (tmp_path / "f").stat().st_size == 4106


@pytest.mark.skipif(not direct_io.direct_io_available(), reason="O_DIRECT is Linux-only")
def test_filesystems_refusing_direct_io_get_buffered_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    real_fcntl = fcntl.fcntl

    def refuse(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    paths = _write(tmp_path / "src", [200 * KIB + 1] * 8 + [3 * 1024 * KIB + 3], seed=11)
    store = LocalStore(tmp_path / "s")
    results = store.put_files([(p, None) for p in paths])
    assert [store.get_bytes(d) for d, _ in results] == [p.read_bytes() for p in paths]


@pytest.mark.skipif(not direct_io.direct_io_available(), reason="O_DIRECT is Linux-only")
def test_a_refused_direct_write_is_retried_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    refused: list[int] = []

    def write(fd: int, data: memoryview) -> int:
        if not refused:  # the first (direct) write: refused as misaligned
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    data = random.Random(12).randbytes(3 * 1024 * KIB + 1)
    (tmp_path / "src").write_bytes(data)
    monkeypatch.setattr(os, "write", write)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        assert direct_io.copy_hashing(src, len(data), dst, direct=True)[0] == digest_bytes(data)
    finally:
        os.close(src)
        os.close(dst)
    assert refused
    assert (tmp_path / "dst").read_bytes() == data


_BATCH_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipetrail.store import LocalStore

    store = LocalStore(Path(sys.argv[1]))
    files = sorted(Path(sys.argv[2]).iterdir())
    print("started", flush=True)
    store.put_files([(path, None) for path in files])
    print("done", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_sigkill_while_a_segment_is_written_leaves_only_whole_objects(
    tmp_path: Path, delay: float
) -> None:
    root, source = tmp_path / "store", tmp_path / "src"
    _write(source, [512 * KIB + 5] * 160 + [3 * 1024 * KIB], seed=13)
    expected = {digest_bytes(p.read_bytes()): p.stat().st_size for p in source.iterdir()}
    proc = subprocess.Popen(
        [sys.executable, "-c", _BATCH_WRITER, str(root), str(source)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _segments(root):
            time.sleep(0.0005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    store = LocalStore(root)
    for digest in store.iter_digests():  # none, or all of them if the kill came late
        assert store.size(digest) == expected[digest]
        assert store.get_bytes(digest) is not None
    assert verify_store(store).ok
    store.clean_tmp(older_than=-1)
    used = {
        store._pack._query("SELECT segment FROM segment_objects WHERE digest = ?", d)
        for d in store.iter_digests()
    }
    assert {p.name for p in _segments(root)} == {row[0] for row in used if row is not None}


def test_single_puts_find_objects_already_in_a_segment(tmp_path: Path) -> None:
    paths = _write(tmp_path / "src", [20 * KIB] * 8, seed=14)
    store = LocalStore(tmp_path / "s")
    digests = [d for d, _ in store.put_files([(p, None) for p in paths])]
    assert store.put_file(paths[1]) == (digests[1], 20 * KIB)
    assert store.put_bytes(paths[2].read_bytes()) == digests[2]
    assert list((tmp_path / "s" / "tmp").iterdir()) == []
    assert not any(os.path.exists(store._path(d)) for d in digests)  # no loose duplicates
