"""LocalStore specifics: layout, atomicity under SIGKILL, temp cleanup, error mapping, speed."""

from __future__ import annotations

import errno
import os
import signal
import statistics
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.hashing import digest_bytes, digest_file
from pipetrail.store import LocalStore, local_files, verify_store
from pipetrail.store import local_put as local_put_module
from pipetrail.store import loose as loose_module
from tests.support.killing import kill_when

if TYPE_CHECKING:
    from pathlib import Path

BIG = 200 * 1024 * 1024


def _tmp_files(root: Path) -> list[Path]:
    """Every temp file under ``root/tmp`` (writers keep theirs in folders of their own)."""
    return sorted(p for p in (root / "tmp").rglob("*") if p.is_file())


def test_layout_shards_on_first_two_hex_chars(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", small_objects=0)
    digest = store.put_bytes(b"layout")
    hex_part = digest.removeprefix("blake3:")
    path = tmp_path / "s" / hex_part[:2] / hex_part[2:]
    assert path.read_bytes() == b"layout"
    assert store.local_path(digest) == path
    assert path.stat().st_mode & 0o777 == 0o444
    assert _tmp_files(tmp_path / "s") == []


def test_iter_digests_ignores_temp_quarantine_and_junk(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, small_objects=0)
    digest = store.put_bytes(b"real")
    (tmp_path / "tmp" / "leftover").write_bytes(b"partial")
    (tmp_path / "zz").mkdir()
    (tmp_path / "zz" / ("0" * 62)).write_bytes(b"not hex shard")
    (tmp_path / digest[7:9] / "README").write_text("junk")
    (tmp_path / "notes.txt").write_text("junk")
    assert list(store.iter_digests()) == [digest]


def test_put_existing_object_is_a_noop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path, small_objects=0)
    store.put_bytes(b"once")

    def fail(*args: object) -> None:
        raise AssertionError("must not open a temp file for an existing object")

    monkeypatch.setattr(store._loose, "open_tmp", fail)
    assert store.put_bytes(b"once") == digest_bytes(b"once")


def test_a_new_object_is_put_without_an_exception_raised_and_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether an object file is there already is asked with access(2), which answers a
    # missing file without the FileNotFoundError that os.path.exists raises and catches.
    loose = LocalStore(tmp_path / "loose", small_objects=0)
    packed = LocalStore(tmp_path / "packed")
    digest = loose.put_bytes(b"first")

    def refused(*args: object, **kwargs: object) -> bool:
        raise AssertionError("os.path.exists is not asked")

    monkeypatch.setattr(os.path, "exists", refused)
    small = packed.put_bytes(b"small")  # into the pack: the loose name is asked first
    assert not packed._loose.exists(small)
    assert loose.put_bytes(b"first") == digest  # there already: kept
    assert loose._loose.exists(digest)
    monkeypatch.undo()
    assert packed.get_bytes(small) == b"small"
    shard = tmp_path / "loose" / digest.removeprefix("blake3:")[:2]
    shard.chmod(0o000)
    try:  # a folder that cannot be searched: what os.path.exists would say
        assert loose._loose.exists(digest) is os.path.exists(loose._loose.final(digest))
    finally:
        shard.chmod(0o755)


def test_put_file_big_file_path_verifies_the_copy(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(loose_module._BIG_FILE + 123))
    store = LocalStore(tmp_path / "s", small_objects=0)
    digest, size = store.put_file(src)
    assert (digest, size) == digest_file(src)
    assert store.verify(digest)
    wrong = digest_bytes(b"no")
    with pytest.raises(IntegrityError, match=r"big\.bin changed while being read"):
        store.put_file(src, digest=wrong)
    assert _tmp_files(tmp_path / "s") == []


def test_put_file_existing_object_with_different_size_is_integrity_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", small_objects=0)
    digest = store.put_bytes(b"twelve bytes")
    other = tmp_path / "other.txt"
    other.write_bytes(b"not the same length")
    with pytest.raises(IntegrityError, match=r"other\.txt"):
        store.put_file(other, digest=digest)


def test_put_file_rejects_malformed_digest(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(StoreError, match="not a digest"):
        LocalStore(tmp_path / "s", small_objects=0).put_file(src, digest="md5:abc")


def test_missing_source_file_is_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"nope\.bin"):
        LocalStore(tmp_path / "s", small_objects=0).put_file(tmp_path / "nope.bin")


def test_os_errors_become_store_errors_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "s", small_objects=0)

    def disk_full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(StoreError, match=r"No space left on device.*free disk space") as info:
        store.put_bytes(b"does not fit")
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.undo()
    assert _tmp_files(tmp_path / "s") == []
    assert not store.exists(digest_bytes(b"does not fit"))


def test_unknown_and_malformed_digests(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, small_objects=0)
    with pytest.raises(NotFoundError, match="is not a digest"):
        store.get_bytes("blake3:XYZ")
    with pytest.raises(NotFoundError, match="not in the local store"):
        store.local_path(digest_bytes(b"absent"))


def test_clean_tmp_removes_only_stale_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, small_objects=0)
    stale = tmp_path / "tmp" / "stale"
    fresh = tmp_path / "tmp" / "fresh"
    stale.write_bytes(b"old partial write")
    fresh.write_bytes(b"a writer is still busy")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert store.clean_tmp() == 1
    assert not stale.exists()
    assert fresh.exists()
    assert store.clean_tmp(older_than=-1) == 1


def test_verify_quarantine_keeps_the_bad_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, small_objects=0)
    digest = store.put_bytes(b"precious")
    path = store.local_path(digest)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    assert store.verify(digest) is False
    (kept,) = (tmp_path / "quarantine").iterdir()
    assert kept.read_bytes() == b"tampered"
    assert store.put_bytes(b"precious") == digest  # can be stored again afterwards
    assert store.verify(digest)


def test_fsync_off_still_writes_atomically(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, fsync=False, small_objects=0)
    digest = store.put_bytes(b"fast")
    assert store.get_bytes(digest) == b"fast"
    assert _tmp_files(tmp_path) == []


_WRITER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path
    from pipetrail.store import LocalStore

    store = LocalStore(Path(sys.argv[1]), small_objects=0)
    data = bytes(range(256)) * ({big} // 256)
    print("started", flush=True)
    store.put_bytes(data)
    print("done", flush=True)
    time.sleep(120)  # the kill lands even when the write ended before it
    """
).format(big=BIG)


@pytest.mark.slow
@pytest.mark.parametrize("extra_delay", [0.0, 0.05, 0.2])
def test_sigkill_during_write_never_leaves_a_partial_object(
    tmp_path: Path, extra_delay: float
) -> None:
    root = tmp_path / "store"
    expected = digest_bytes(bytes(range(256)) * (BIG // 256))
    # Wait until the writer has a temp file open, so the kill lands mid-write.
    returncode = kill_when(_WRITER, [str(root)], lambda: bool(_tmp_files(root)), delay=extra_delay)
    assert returncode == -signal.SIGKILL
    store = LocalStore(root, small_objects=0)
    if store.exists(expected):
        # The rename happened before the kill: the object must then be complete.
        assert store.size(expected) == BIG
        assert store.verify(expected)
    assert verify_store(store).ok
    for name in _tmp_files(root):
        assert name.stat().st_size <= BIG
    assert store.clean_tmp(older_than=-1) >= 0
    assert list((root / "tmp").iterdir()) == []


def test_put_bytes_small_payload_is_fast(tmp_path: Path) -> None:
    """Guards the hot path (~1,000 small objects per second) against gross regressions.

    A new object costs ~35 us of our own code (measured on tmpfs) plus the filesystem's
    create + rename (~50-600 us on a shared VM disk) plus, by default, fsync (~400 us+).
    Only the code path is ours, so the bounds are loose: the timed loop uses fsync=False,
    and an already-stored object must cost about one stat().
    """
    store = LocalStore(tmp_path, fsync=False, small_objects=0)
    payloads = [os.urandom(100) for _ in range(300)]
    new: list[int] = []
    for payload in payloads:
        start = time.perf_counter_ns()
        store.put_bytes(payload)
        new.append(time.perf_counter_ns() - start)
    again: list[int] = []
    for payload in payloads:
        start = time.perf_counter_ns()
        store.put_bytes(payload)
        again.append(time.perf_counter_ns() - start)
    assert statistics.median(new) < 5_000_000  # ns
    assert statistics.median(again) < 100_000


def test_sync_fsyncs_each_touched_shard_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(loose_module, "fsync_dir_best_effort", synced.append)
    store = LocalStore(tmp_path / "objects", small_objects=0)
    digests = [store.put_bytes(f"object {i}".encode()) for i in range(40)]
    store.put_bytes(b"object 0")  # already stored: nothing new to sync
    assert synced == []  # renames are synced in batches, not one by one
    store.sync()
    shards = {str(tmp_path / "objects" / d[7:9]) for d in digests}
    assert sorted(synced) == sorted(shards)
    store.sync()
    assert len(synced) == len(shards)  # nothing pending any more


def test_without_fsync_sync_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    monkeypatch.setattr(loose_module, "fsync_dir_best_effort", synced.append)
    store = LocalStore(tmp_path / "objects", fsync=False, small_objects=0)
    store.put_bytes(b"scratch")
    store.sync()
    assert synced == []


# -- put_files: the batched durable write path --------------------------------------------
def _files(folder: Path, count: int, *, size: int = 100) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"f{i:04d}.bin"
        path.write_bytes(i.to_bytes(4, "big") + os.urandom(size - 4))
        paths.append(path)
    return paths


class _Spy:
    """Records, in order, the durability calls and renames a batch makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[str] = []
        real_syncfs, real_fsync, real_replace = local_files.syncfs, os.fsync, os.replace

        def syncfs(fd: int) -> None:
            self.events.append("syncfs")
            real_syncfs(fd)

        def fsync(fd: int) -> None:
            self.events.append("fsync")
            real_fsync(fd)

        def replace(src: str, dst: str) -> None:
            self.events.append("rename")
            real_replace(src, dst)

        monkeypatch.setattr(loose_module, "syncfs", syncfs)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def count(self, event: str) -> int:
        return self.events.count(event)


def test_put_files_makes_a_batch_durable_with_one_syncfs_before_any_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not local_files.syncfs_available():
        pytest.skip("syncfs(2) needs Linux 5.8 or later")
    paths = _files(tmp_path / "src", 100)
    store = LocalStore(tmp_path / "s", small_objects=0)
    spy = _Spy(monkeypatch)
    results = store.put_files([(p, None) for p in paths])
    assert results == [digest_file(p) for p in paths]
    assert spy.events == ["syncfs"] + ["rename"] * 100  # no fsync per object
    assert [store.get_bytes(d) for d, _ in results] == [p.read_bytes() for p in paths]
    assert all(store.local_path(d).stat().st_mode & 0o777 == 0o444 for d, _ in results)
    assert _tmp_files(tmp_path / "s") == []
    assert verify_store(store).ok


def test_put_files_copies_only_new_distinct_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "src", 20)
    twin = tmp_path / "src" / "twin.bin"
    twin.write_bytes(paths[5].read_bytes())
    store = LocalStore(tmp_path / "s", small_objects=0)
    store.put_files([(p, None) for p in paths[:10]])
    copied: list[str] = []
    real_copy = store._loose.copy_to_tmp

    def spy(
        src: str, src_fd: int, size: int, digest: str | None, *, fsync: bool
    ) -> tuple[str, str, int]:
        copied.append(src)
        return real_copy(src, src_fd, size, digest, fsync=fsync)

    monkeypatch.setattr(store._loose, "copy_to_tmp", spy)
    items = [(p, digest_file(p)[0]) for p in [*paths, twin, paths[15]]]
    results = store.put_files(items)
    assert results == [(d, 100) for _, d in items]
    assert sorted(copied) == sorted(str(p) for p in paths[10:])
    assert set(store.iter_digests()) == {d for _, d in items}
    assert store.put_files([]) == []


def test_put_files_without_digest_reads_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "src", 8)
    twin = tmp_path / "src" / "twin.bin"
    twin.write_bytes(paths[5].read_bytes())
    store = LocalStore(tmp_path / "s", small_objects=0)
    store.put_file(paths[0])
    opened: list[str] = []
    real_open = os.open

    def spy(path: str, flags: int, mode: int = 0o777, **kw: object) -> int:
        if str(path).startswith(str(tmp_path / "src")):
            opened.append(os.path.basename(path))
        return real_open(path, flags, mode, **kw)  # type: ignore[arg-type]  # dir_fd only

    monkeypatch.setattr(os, "open", spy)
    results = store.put_files([(p, None) for p in [*paths, twin]])
    monkeypatch.undo()
    assert results == [digest_file(p) for p in [*paths, twin]]
    assert sorted(opened) == sorted(p.name for p in [*paths, twin])  # no separate hashing
    # The copies of the stored object and of the twin were dropped, not renamed over.
    assert set(store.iter_digests()) == {d for d, _ in results}
    assert _tmp_files(tmp_path / "s") == []


def test_put_files_file_changing_during_the_batch_stores_nothing_of_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "src", 10)
    items = [(p, digest_file(p)[0]) for p in paths]
    victim = paths[6]
    store = LocalStore(tmp_path / "s", small_objects=0)
    real_copy = store._loose.copy_to_tmp

    def copy(
        src: str, src_fd: int, size: int, digest: str | None, *, fsync: bool
    ) -> tuple[str, str, int]:
        if src == str(paths[3]):  # the batch is under way: rewrite a file not yet copied
            victim.write_bytes(os.urandom(100))
        return real_copy(src, src_fd, size, digest, fsync=fsync)

    monkeypatch.setattr(store._loose, "copy_to_tmp", copy)
    with pytest.raises(IntegrityError, match=r"f0006\.bin changed while being read"):
        store.put_files(items)
    assert not store.exists(items[6][1])
    assert not store.exists(digest_file(victim)[0])
    assert list(store.iter_digests()) == []  # the batch's other copies were dropped too
    assert _tmp_files(tmp_path / "s") == []


def test_put_files_existing_object_with_other_size_is_integrity_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", small_objects=0)
    digest = store.put_bytes(b"twelve bytes")
    other = tmp_path / "other.txt"
    other.write_bytes(b"not the same length")
    with pytest.raises(IntegrityError, match=r"other\.txt has 19 bytes"):
        store.put_files([(other, digest)])
    with pytest.raises(StoreError, match="not a digest"):
        store.put_files([(other, "md5:abc")])


def test_put_files_without_syncfs_fsyncs_each_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "src", 30)
    store = LocalStore(tmp_path / "s", small_objects=0)
    monkeypatch.setattr(loose_module, "syncfs_available", lambda: False)
    spy = _Spy(monkeypatch)
    results = store.put_files([(p, None) for p in paths])
    assert spy.events == ["fsync"] * 30 + ["rename"] * 30  # durable before any rename
    assert [store.get_bytes(d) for d, _ in results] == [p.read_bytes() for p in paths]
    assert _tmp_files(tmp_path / "s") == []


def test_put_files_falls_back_to_fsync_when_syncfs_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _files(tmp_path / "src", 12)
    store = LocalStore(tmp_path / "s", small_objects=0)
    monkeypatch.setattr(loose_module, "syncfs_available", lambda: True)
    spy = _Spy(monkeypatch)

    def refused(fd: int) -> None:
        spy.events.append("syncfs")
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(loose_module, "syncfs", refused)
    results = store.put_files([(p, None) for p in paths])
    # Each temp file is reopened and fsynced, all before the first rename.
    assert spy.events == ["syncfs"] + ["fsync"] * 12 + ["rename"] * 12
    assert "fsyncing 12 objects one by one" in caplog.text
    assert [store.get_bytes(d) for d, _ in results] == [p.read_bytes() for p in paths]


def test_put_files_fallback_fsync_error_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "src", 12)  # enough for a syncfs: see the next test
    store = LocalStore(tmp_path / "s", small_objects=0)
    monkeypatch.setattr(loose_module, "syncfs_available", lambda: True)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(loose_module, "syncfs", failing)
    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(StoreError, match="Input/output error"):
        store.put_files([(p, None) for p in paths])
    assert list(store.iter_digests()) == []
    assert _tmp_files(tmp_path / "s") == []


def test_put_files_short_batch_fsyncs_its_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "src", local_put_module._SYNCFS_MIN_ITEMS - 1)
    store = LocalStore(tmp_path / "s", small_objects=0)
    monkeypatch.setattr(loose_module, "syncfs_available", lambda: True)
    spy = _Spy(monkeypatch)
    store.put_files([(p, None) for p in paths])
    count = len(paths)
    assert spy.events == ["fsync"] * count + ["rename"] * count  # no syncfs of everyone's data


def test_put_files_rename_failure_keeps_only_complete_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "src", 6)
    store = LocalStore(tmp_path / "s", small_objects=0)
    real_replace = os.replace
    calls = 0

    def replace(src: str, dst: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StoreError, match="free disk space"):
        store.put_files([(p, None) for p in paths])
    stored = set(store.iter_digests())
    assert stored == {digest_file(p)[0] for p in paths[:2]}
    assert all(store.verify(d) for d in stored)
    assert _tmp_files(tmp_path / "s") == []


def test_put_files_without_fsync_flushes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "src", 10)
    store = LocalStore(tmp_path / "s", fsync=False, small_objects=0)
    spy = _Spy(monkeypatch)
    store.put_files([(p, None) for p in paths])
    store.sync()
    assert spy.events == ["rename"] * 10


def test_put_files_big_files_take_the_kernel_copy_path(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(loose_module._BIG_FILE + 5))
    small = _files(tmp_path / "src", 3)
    store = LocalStore(tmp_path / "s", small_objects=0)
    results = store.put_files([(big, None), *[(p, None) for p in small]])
    assert results[0] == digest_file(big)
    assert store.verify(results[0][0])
    with pytest.raises(IntegrityError, match=r"big\.bin changed while being read"):
        store.put_files([(big, digest_bytes(b"no"))])


def test_put_files_packs_small_files_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = _files(tmp_path / "src", 50, size=1000)
    medium = _files(tmp_path / "medium", 3, size=40_000)
    large = _files(tmp_path / "large", 2, size=1_200_000)
    store = LocalStore(tmp_path / "s")  # the default pack limit: 16 KiB
    spy = _Spy(monkeypatch)
    items: list[tuple[Path, str | None]] = [(p, None) for p in [*small, *medium, *large]]
    results = store.put_files(items)
    monkeypatch.undo()
    assert results == [digest_file(p) for p in [*small, *medium, *large]]
    loose = {d for d in store.iter_digests() if os.path.exists(store._path(d))}
    assert loose == {d for d, _ in results[53:]}  # only the large ones are files
    assert spy.count("rename") == 2
    # Small ones are rows, medium ones (16 KiB to 1 MiB) are in one segment file.
    assert store._pack.sizes(d for d, _ in results) == {d: s for d, s in results[:53]}
    assert len(os.listdir(tmp_path / "s" / "segments")) == 1
    # Given digests of packed objects are checked in the pack, without copying again.
    again = store.put_files([(p, d) for p, (d, _) in zip(small, results, strict=False)])
    assert again == results[:50]
    store.sync()
    assert verify_store(store).ok


def test_put_files_small_file_changed_stores_nothing_of_the_batch(tmp_path: Path) -> None:
    paths = _files(tmp_path / "src", 10)
    items: list[tuple[Path, str | None]] = [(p, None) for p in paths]
    items[7] = (paths[7], digest_bytes(b"what the caller thought"))
    store = LocalStore(tmp_path / "s")
    with pytest.raises(IntegrityError, match=r"f0007\.bin changed while being read"):
        store.put_files(items)
    assert list(store.iter_digests()) == []  # the pack batch was rolled back


def test_put_file_small_file_goes_to_the_pack(tmp_path: Path) -> None:
    src = tmp_path / "small.txt"
    src.write_bytes(b"a small source file")
    store = LocalStore(tmp_path / "s")
    digest, size = store.put_file(src)
    assert (digest, size) == digest_file(src)
    assert not os.path.exists(store._path(digest))
    assert store.get_bytes(digest) == b"a small source file"
    assert store.put_file(src, digest=digest) == (digest, size)  # found in the pack
    other = tmp_path / "other.txt"
    other.write_bytes(b"a longer file than the object stored")
    with pytest.raises(IntegrityError, match="has 36 bytes"):
        store.put_file(other, digest=digest)


def test_sync_after_a_large_batch_flushes_the_filesystem_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not local_files.syncfs_available():
        pytest.skip("syncfs(2) needs Linux 5.8 or later")
    store = LocalStore(tmp_path / "s", small_objects=0)
    store.put_files([(p, None) for p in _files(tmp_path / "src", 600)])
    synced: list[str] = []
    monkeypatch.setattr(loose_module, "fsync_dir_best_effort", synced.append)
    spy = _Spy(monkeypatch)
    store.sync()
    assert (spy.events, synced) == (["syncfs"], [])
    monkeypatch.setattr(loose_module, "syncfs_available", lambda: False)
    store.put_files([(p, None) for p in _files(tmp_path / "more", 600)])
    store.sync()  # no syncfs: one fsync per shard folder, as for few shards
    assert len(synced) == len(set(synced)) > loose_module._SYNCFS_MIN_SHARDS


_BATCH_WRITER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path
    from pipetrail.store import LocalStore

    store = LocalStore(Path(sys.argv[1]), small_objects=0)
    files = sorted(Path(sys.argv[2]).iterdir())
    print("started", flush=True)
    store.put_files([(path, None) for path in files])
    print("done", flush=True)
    time.sleep(120)  # the kill lands even when the write ended before it
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["copying", "copying+0.05", "copying+0.2", "renaming"])
def test_sigkill_during_a_batch_never_leaves_a_partial_object(tmp_path: Path, kill_at: str) -> None:
    root = tmp_path / "store"
    source = tmp_path / "src"
    source.mkdir()
    for i in range(160):  # 160 x 512 KiB + 2 files above the kernel-copy threshold
        (source / f"small{i:03d}").write_bytes(os.urandom(512 * 1024))
    for i in range(2):
        (source / f"big{i}").write_bytes(os.urandom(loose_module._BIG_FILE + i))
    expected = {digest_file(p)[0]: p.stat().st_size for p in source.iterdir()}
    if kill_at == "renaming":  # the first shard folder appears with the first rename
        delay = 0.0

        def ready() -> bool:
            return any(len(p.name) == 2 for p in root.iterdir())
    else:
        delay = float(kill_at.partition("+")[2] or 0)

        def ready() -> bool:
            return bool(_tmp_files(root))

    returncode = kill_when(_BATCH_WRITER, [str(root), str(source)], ready, delay=delay)
    assert returncode == -signal.SIGKILL
    store = LocalStore(root, small_objects=0)
    stored = list(store.iter_digests())
    # When the kill lands among the renames some objects are in place; on a loaded machine
    # it may land just before them. Either way, every object present must be whole.
    for digest in stored:
        assert store.size(digest) == expected[digest]
        assert store.verify(digest)
    assert verify_store(store).ok
    assert store.clean_tmp(older_than=-1) >= 0
    assert list((root / "tmp").iterdir()) == []


def test_a_store_opened_without_create_makes_nothing_until_it_writes(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalStore(root, create=False)
    assert not root.exists()
    assert verify_store(store, ["blake3:" + "ab" * 32]).missing == ["blake3:" + "ab" * 32]
    assert list(store.iter_digests()) == []
    assert not store.exists(digest_bytes(b"x"))
    assert not root.exists()  # reading created nothing
    big = store.put_bytes(b"y" * 100_000)  # a loose object: tmp/ and its shard made now
    small = store.put_bytes(b"small")  # packed
    assert sorted(store.iter_digests()) == sorted([big, small])
    assert LocalStore(root).get_bytes(big) == b"y" * 100_000
    assert _tmp_files(root) == []
