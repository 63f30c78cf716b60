"""Held small writes: read back at once, committed together, never before they are asked to."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import StoreError
from pipetrail.hashing import digest_bytes
from pipetrail.store import LocalStore
from pipetrail.store.pack import SmallObjectPack

if TYPE_CHECKING:
    from pathlib import Path


def _put(pack: SmallObjectPack, data: bytes) -> str:
    digest = digest_bytes(data)
    pack.put(digest, data)
    return digest


def test_held_puts_read_back_at_once_and_reach_the_file_only_when_committed(
    tmp_path: Path,
) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    pack.hold()
    digests = [_put(pack, f"object {i}".encode()) for i in range(5)]
    assert [pack.get(d) for d in digests] == [f"object {i}".encode() for i in range(5)]
    assert pack.size(digests[0]) == len(b"object 0")
    assert pack.exists(digests[1])
    assert pack.verify(digests[2]) is True
    assert pack.sizes(digests) == {d: 8 for d in digests}
    other = SmallObjectPack(tmp_path / "pack.db")
    assert [other.exists(d) for d in digests] == [False] * 5  # nothing written yet
    assert pack.commit_held() == []
    assert [other.get(d) for d in digests] == [f"object {i}".encode() for i in range(5)]
    late = _put(pack, b"after the commit")  # still held: held until released
    assert not other.exists(late)
    pack.commit_held(release=True)
    assert other.get(late) == b"after the commit"
    written = _put(pack, b"no longer held")
    assert other.get(written) == b"no longer held"
    pack.close()
    other.close()


def test_committing_when_not_holding_does_not_start_holding(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    assert pack.commit_held() == []  # a store synced outside a run
    digest = _put(pack, b"written at once")
    assert SmallObjectPack(tmp_path / "pack.db").get(digest) == b"written at once"
    pack.hold()
    pack.commit_held(release=True)
    pack.commit_held()  # a sync after the run's release
    late = _put(pack, b"also written at once")
    assert SmallObjectPack(tmp_path / "pack.db").get(late) == b"also written at once"
    pack.close()


def test_a_held_put_replaces_a_corrupt_row_when_committed(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    good = b"the real bytes"
    digest = digest_bytes(good)
    pack.put(digest, b"rotten")  # a corrupt row: bytes that do not hash to the digest
    pack.hold()
    pack.put(digest, good)
    assert pack.commit_held(release=True) == [(digest, b"rotten")]
    assert pack.get(digest) == good
    pack.close()


def test_a_failed_commit_keeps_the_objects_held(tmp_path: Path) -> None:
    pack = SmallObjectPack(tmp_path / "pack.db")
    _put(pack, b"creates the file")
    pack.hold()
    digest = _put(pack, b"waits in memory")
    blocker = sqlite3.connect(tmp_path / "pack.db", timeout=0)
    blocker.execute("PRAGMA busy_timeout=0")
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    pack._db().execute("PRAGMA busy_timeout=0")
    with pytest.raises(StoreError):
        pack.commit_held()
    blocker.rollback()
    blocker.close()
    assert pack.get(digest) == b"waits in memory"
    pack.commit_held(release=True)
    assert SmallObjectPack(tmp_path / "pack.db").get(digest) == b"waits in memory"
    pack.close()


def test_sync_commits_what_the_local_store_holds(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.hold_small_writes()
    digest = store.put_bytes(b"a small output")
    assert store.get_bytes(digest) == b"a small output"
    assert not LocalStore(tmp_path / "objects").exists(digest)
    store.sync()
    assert LocalStore(tmp_path / "objects").get_bytes(digest) == b"a small output"
    store.commit_small_writes(release=True)
