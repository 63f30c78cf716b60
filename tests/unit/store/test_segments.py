"""Segment files (ADR 0009) and copies past the page cache (store.direct_io)."""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError, StoreError
from pipetrail.hashing import digest_bytes, digest_file
from pipetrail.store import LocalStore, direct_io, verify_store
from pipetrail.store import pack as pack_module
from pipetrail.store import segments as segments_module
from tests.support.killing import kill_when

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


def _direct_io_works(folder: Path) -> bool:
    fd = os.open(folder / ".direct-probe", os.O_WRONLY | os.O_CREAT)
    try:
        return direct_io.DirectWriter(fd, direct=True).direct
    finally:
        os.close(fd)
        os.unlink(folder / ".direct-probe")


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
    tmp_files = [p for p in (tmp_path / "s" / "tmp").rglob("*") if p.is_file()]
    assert tmp_files == []  # no loose temp files at all
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
    with pytest.raises(IntegrityError, match=rf"{digests[7]}.*truncated to {5 * 20 * KIB} bytes"):
        store.get_bytes(digests[7])
    assert not store.exists(digests[7])  # quarantined by the read
    assert store.verify(digests[6]) is False  # verify judges the same way
    segment.unlink()
    with pytest.raises(IntegrityError, match=r"which is missing.*restore the store"):
        store.get_bytes(digests[0])
    assert not store.exists(digests[0])  # its bytes are gone: quarantined (empty)
    assert store.put_files([(paths[0], None)]) == [digest_file(paths[0])]  # stored again
    assert store.get_bytes(digests[0]) == paths[0].read_bytes()


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
        writer = direct_io.DirectWriter(fd, direct=True)
        if not writer.direct:
            pytest.skip("the filesystem of tmp_path refuses O_DIRECT")
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
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
    import fcntl

    if not _direct_io_works(tmp_path):
        pytest.skip("the filesystem of tmp_path refuses O_DIRECT")
    real_write = os.write
    refused: list[int] = []

    def write(fd: int, data: memoryview) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:  # refused as misaligned
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
    assert refused == [3 * 1024 * KIB]  # its whole blocks, then all through the cache
    assert (tmp_path / "dst").read_bytes() == data


_BATCH_WRITER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path
    from pipetrail.store import LocalStore

    store = LocalStore(Path(sys.argv[1]))
    files = sorted(Path(sys.argv[2]).iterdir())
    print("started", flush=True)
    store.put_files([(path, None) for path in files])
    print("done", flush=True)
    time.sleep(120)  # the kill lands even when the write ended before it
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
    returncode = kill_when(
        _BATCH_WRITER, [str(root), str(source)], lambda: bool(_segments(root)), delay=delay
    )
    assert returncode == -signal.SIGKILL
    store = LocalStore(root)
    for digest in store.iter_digests():  # whatever was committed is whole
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
    assert not [p for p in (tmp_path / "s" / "tmp").rglob("*") if p.is_file()]
    assert not any(os.path.exists(store._path(d)) for d in digests)  # no loose duplicates


def test_a_rerun_of_stored_files_leaves_no_segment_behind(tmp_path: Path) -> None:
    paths = _write(tmp_path / "src", [30 * KIB] * 8, seed=15)
    store = LocalStore(tmp_path / "s")
    first = store.put_files([(p, None) for p in paths])
    segments = _segments(tmp_path / "s")
    for _ in range(3):
        assert store.put_files([(p, None) for p in paths]) == first
    assert _segments(tmp_path / "s") == segments


def test_a_duplicate_straddling_a_flush_then_new_objects(tmp_path: Path) -> None:
    # 7 new files of ~1 MiB fill most of the 8 MiB buffer; the 8th (a duplicate of the
    # first) crosses the flush and cannot be taken back; the next ones follow it.
    sizes = [1024 * KIB - 1] * 7
    paths = _write(tmp_path / "src", sizes, seed=16)
    dup = tmp_path / "src" / "dup.bin"
    dup.write_bytes(paths[0].read_bytes())
    more = _write(tmp_path / "more", [1000 * KIB + 1] * 3, seed=17)
    store = LocalStore(tmp_path / "s")
    items: list[tuple[Path, str | None]] = [(p, None) for p in [*paths, dup, *more]]
    results = store.put_files(items)
    assert results[7] == results[0]
    for path, (digest, _) in zip([*paths, dup, *more], results, strict=True):
        assert store.get_bytes(digest) == path.read_bytes()
    assert verify_store(store).ok


def test_a_file_growing_past_the_limit_while_read_is_stored_loose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _write(tmp_path / "src", [40 * KIB] * 8, seed=18)
    grown = paths[3]
    real_fstat = os.fstat

    def fstat(fd: int) -> os.stat_result:  # the size as first measured, before it grew
        result = real_fstat(fd)
        if result.st_size == 2 * 1024 * KIB:
            values = list(result)
            values[6] = 40 * KIB
            return os.stat_result(values)
        return result

    grown.write_bytes(random.Random(19).randbytes(2 * 1024 * KIB))
    monkeypatch.setattr(os, "fstat", fstat)
    store = LocalStore(tmp_path / "s")
    results = store.put_files([(p, None) for p in paths])
    monkeypatch.undo()
    assert results[3] == (digest_bytes(grown.read_bytes()), 2 * 1024 * KIB)
    assert os.path.exists(store._path(results[3][0]))  # its own file
    assert all(
        store.get_bytes(d) == p.read_bytes() for p, (d, _) in zip(paths, results, strict=True)
    )


def test_a_failed_segment_write_names_the_segment_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _write(tmp_path / "src", [30 * KIB] * 8, seed=20)

    def full(self: direct_io.DirectWriter, view: memoryview) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_io.DirectWriter, "write", full)
    store = LocalStore(tmp_path / "s")
    with pytest.raises(StoreError, match=r"segments/[0-9a-f]{32}\.seg.*No space left"):
        store.put_files([(p, None) for p in paths])
    assert _segments(tmp_path / "s") == []
    assert list(store.iter_digests()) == []


def test_a_failed_commit_removes_the_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _write(tmp_path / "src", [30 * KIB] * 8 + [1000], seed=21)

    def refuse(self: pack_module.PackBatch) -> None:
        raise StoreError("could not write 9 objects to pack.db: disk I/O error")

    monkeypatch.setattr(pack_module.PackBatch, "commit", refuse)
    store = LocalStore(tmp_path / "s")
    with pytest.raises(StoreError, match="disk I/O error"):
        store.put_files([(p, None) for p in paths])
    assert _segments(tmp_path / "s") == []
    monkeypatch.undo()
    assert list(store.iter_digests()) == []


def test_clean_tmp_never_removes_a_segment_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _write(tmp_path / "src", [30 * KIB] * 8, seed=22)
    store = LocalStore(tmp_path / "s")
    other = LocalStore(tmp_path / "s")  # another process's view of the same store
    cleaned: list[int] = []
    real_finish = segments_module.SegmentWriter.finish

    def finish_after_cleaning(self: segments_module.SegmentWriter) -> bool:
        kept = real_finish(self)
        old = time.time() - 7200  # as if the batch had run for two hours
        os.utime(self.path, (old, old))
        cleaned.append(other.clean_tmp(older_than=-1))
        return kept

    monkeypatch.setattr(segments_module.SegmentWriter, "finish", finish_after_cleaning)
    results = store.put_files([(p, None) for p in paths])
    assert cleaned == [0]
    assert [store.get_bytes(d) for d, _ in results] == [p.read_bytes() for p in paths]
    assert other.clean_tmp(older_than=-1) == 0  # committed: in use for good


def test_verify_does_not_judge_an_object_it_cannot_read_for_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _write(tmp_path / "src", [30 * KIB] * 8, seed=23)
    store = LocalStore(tmp_path / "s")
    digest = store.put_files([(p, None) for p in paths])[0][0]
    real_open = os.open

    def busy(path: str, flags: int, *args: int) -> int:
        if str(path).endswith(".seg"):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", busy)
    with pytest.raises(StoreError, match="Too many open files"):
        store.verify(digest)
    monkeypatch.undo()
    assert store.get_bytes(digest) == paths[0].read_bytes()
    assert not (tmp_path / "s" / "quarantine").exists()


def test_threads_storing_overlapping_batches(tmp_path: Path) -> None:
    paths = _write(tmp_path / "src", [20 * KIB + i for i in range(40)], seed=24)
    store = LocalStore(tmp_path / "s")
    batches = [paths[i : i + 20] for i in range(0, 24, 4)]  # 6 batches sharing files
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda b: store.put_files([(p, None) for p in b]), batches))
    for batch, got in zip(batches, results, strict=True):
        assert got == [(digest_bytes(p.read_bytes()), p.stat().st_size) for p in batch]
    assert len(set(store.iter_digests())) == len({p for b in batches for p in b})
    assert verify_store(store).ok


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_copying_at_the_same_time_does_not_corrupt_the_parent(
    tmp_path: Path,
) -> None:
    parent_files = _write(tmp_path / "a", [300 * KIB + 1] * 40, seed=25)
    child_files = _write(tmp_path / "b", [300 * KIB + 3] * 40, seed=26)
    warm = LocalStore(tmp_path / "warm")  # fill this thread's cached buffers before forking
    warm.put_files([(p, None) for p in parent_files[:8]])
    pid = os.fork()
    if pid == 0:  # the child: copy its own files, exit 0 when every object verifies
        code = 1
        try:
            child = LocalStore(tmp_path / "child")
            child.put_files([(p, None) for p in child_files])
            code = 0 if verify_store(child).ok else 3
        finally:
            os._exit(code)
    store = LocalStore(tmp_path / "parent")
    store.put_files([(p, None) for p in parent_files])
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert verify_store(store).ok
