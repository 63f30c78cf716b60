"""The small-object pack: immutable rows named by digest, safe across threads and processes."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from pipetrail.errors import StoreError
from pipetrail.hashing import digest_bytes
from pipetrail.store.pack import SmallObjectPack
from tests.support.spawned import run_spawned


def _put(pack: SmallObjectPack, data: bytes) -> str:
    digest = digest_bytes(data)
    pack.put(digest, data)
    return digest


def test_put_get_exists_size_and_listing(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    assert pack.get(digest_bytes(b"x")) is None  # no file yet: nothing, no error
    assert not (tmp_path / "pack.db").exists()
    a = _put(pack, b"alpha")
    b = _put(pack, b"")
    assert pack.get(a) == b"alpha"
    assert pack.get(b) == b""
    assert pack.exists(a)
    assert pack.size(a) == 5
    assert not pack.exists(digest_bytes(b"other"))
    assert sorted(pack.iter_digests()) == sorted([a, b])
    pack.close()


def test_objects_are_immutable(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    digest = _put(pack, b"first")
    pack.put(digest, b"forged")  # same digest, other bytes: ignored
    assert pack.get(digest) == b"first"
    pack.close()


def test_verify_detects_corruption_and_remove_deletes(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    good = _put(pack, b"good")
    bad = _put(pack, b"bad")
    pack.sync()
    with sqlite3.connect(tmp_path / "pack.db") as conn:
        conn.execute("UPDATE objects SET data = ? WHERE digest = ?", (b"evil", bad))
    assert pack.verify(good) is True
    assert pack.verify(bad) is False
    assert pack.verify(digest_bytes(b"absent")) is None
    pack.remove(bad)
    assert not pack.exists(bad)
    pack.close()


def _fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the path of every file ``os.fsync`` flushes from now on."""
    flushed: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return flushed


def _recovered(folder: Path, digest: str) -> bytes | None:
    """What a crash would leave: the database and its log, opened as SQLite recovers them."""
    copy = folder / "copy"
    copy.mkdir()
    for name in ("pack.db", "pack.db-wal"):
        (copy / name).write_bytes((folder / name).read_bytes())
    with sqlite3.connect(copy / "pack.db") as conn:
        row = conn.execute("SELECT data FROM objects WHERE digest = ?", (digest,)).fetchone()
    return None if row is None else bytes(row[0])


def test_sync_flushes_the_log_holding_the_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    digest = _put(pack, b"durable")
    flushed = _fsynced(monkeypatch)
    pack.sync()
    assert str(tmp_path / "pack.db-wal") in flushed
    assert _recovered(tmp_path, digest) == b"durable"
    flushed.clear()
    pack.sync()  # nothing committed since: nothing to flush
    assert flushed == []
    pack.close()


def test_sync_does_not_restart_the_log(tmp_path: Path) -> None:
    # A checkpoint would make the next commit restart the log (a new salt in its header),
    # which costs a sync of its own; a flush leaves the log as it is.
    pack = SmallObjectPack(tmp_path / "pack.db")
    _put(pack, b"one")
    salt = (tmp_path / "pack.db-wal").read_bytes()[16:20]
    pack.sync()
    _put(pack, b"two")
    assert (tmp_path / "pack.db-wal").read_bytes()[16:20] == salt
    pack.close()


def test_threads_share_a_pack(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(50):
                _put(pack, f"{k}-{i}".encode())
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list(pack.iter_digests())) == 200
    pack.close()


def _fill(path: str, k: int) -> None:
    pack = SmallObjectPack(Path(path))
    for i in range(100):
        _put(pack, f"p{k}-{i}".encode())
    pack.close()


def test_processes_write_one_new_pack_at_once(tmp_path: Path) -> None:
    run_spawned(_fill, [(str(tmp_path / "pack.db"), k) for k in range(3)])
    pack = SmallObjectPack(tmp_path / "pack.db")
    assert len(list(pack.iter_digests())) == 300
    pack.close()


def test_an_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    pack = SmallObjectPack(blocker / "pack.db")
    with pytest.raises(StoreError, match="could not be opened"):
        pack.put(digest_bytes(b"x"), b"x")


def test_batch_commits_all_rows_in_one_transaction(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    rows = [(digest_bytes(f"row {i}".encode()), f"row {i}".encode()) for i in range(300)]
    batch = pack.batch()
    for digest, data in rows:
        batch.add(digest, data)
    assert len(batch) == 300
    assert not pack.exists(rows[0][0])  # nothing written before commit
    batch.commit()
    assert all(pack.get(digest) == data for digest, data in rows)
    assert pack.sizes([rows[0][0], digest_bytes(b"absent"), rows[1][0]]) == {
        rows[0][0]: len(rows[0][1]),
        rows[1][0]: len(rows[1][1]),
    }
    pack.close()


def test_batch_rollback_after_spilling_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipetrail.store.pack_batch as pack_module

    monkeypatch.setattr(pack_module, "_BATCH_SPILL_BYTES", 100)  # write early, in a transaction
    pack = SmallObjectPack(tmp_path / "pack.db")
    batch = pack.batch()
    digests = []
    for i in range(20):
        data = bytes([i]) * 60
        digests.append(digest_bytes(data))
        batch.add(digests[-1], data)
    assert len(batch) < 20  # some rows are already written, uncommitted
    batch.rollback()
    assert pack.sizes(digests) == {}
    other = SmallObjectPack(tmp_path / "pack.db")  # the write lock was released
    other.put(digest_bytes(b"later"), b"later")
    assert pack.exists(digest_bytes(b"later"))
    other.close()
    pack.close()


def test_sizes_of_a_pack_not_created_yet_is_empty(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    assert pack.sizes([digest_bytes(b"x")]) == {}
    assert not (tmp_path / "pack.db").exists()


def test_sizes_takes_an_object_with_a_row_from_its_row_and_asks_the_segments_for_the_rest(
    tmp_path: Path,
) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    in_row = _put(pack, b"alpha")
    in_segment = digest_bytes(b"segment object")
    # An index entry for each: the one with a row too is sized by its row, as get reads it.
    with sqlite3.connect(tmp_path / "pack.db") as db:
        db.executemany(
            "INSERT INTO segment_objects (digest, segment, start, size) VALUES (?, ?, ?, ?)",
            [(in_row, "seg-1", 0, 99), (in_segment, "seg-1", 99, 14)],
        )
    db.close()
    absent = digest_bytes(b"absent")
    assert pack.sizes([in_row, in_segment, absent, in_row]) == {in_row: 5, in_segment: 14}
    assert pack.size(in_row) == len(pack.get(in_row) or b"") == 5
    pack.close()


def test_existing_finds_rows_and_segment_objects_without_their_sizes(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    absent = digest_bytes(b"absent")
    assert pack.existing([absent]) == set()  # no pack yet: nothing, and no file made
    assert not (tmp_path / "pack.db").exists()
    in_row = _put(pack, b"alpha")
    in_segment = digest_bytes(b"segment object")
    with sqlite3.connect(tmp_path / "pack.db") as db:
        db.execute(
            "INSERT INTO segment_objects (digest, segment, start, size) VALUES (?, ?, ?, ?)",
            (in_segment, "seg-1", 0, 14),
        )
    db.close()
    assert pack.existing([in_row, in_segment, absent, in_row]) == {in_row, in_segment}
    assert pack.existing([in_row, in_segment, absent]) == set(
        pack.sizes([in_row, in_segment, absent])
    )
    pack.close()


def test_sync_flushes_rows_written_by_another_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    digest = digest_bytes(b"from a worker")
    worker = threading.Thread(target=pack.put, args=(digest, b"from a worker"))
    worker.start()
    worker.join()
    flushed = _fsynced(monkeypatch)
    pack.sync()  # this thread never wrote: the log must still be flushed
    assert str(tmp_path / "pack.db-wal") in flushed
    assert _recovered(tmp_path, digest) == b"from a worker"
    pack.close()
