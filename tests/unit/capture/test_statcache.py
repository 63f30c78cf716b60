from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

from pipetrail.capture.statcache import (
    DIGEST_SIZE,
    RACY_WINDOW_NS,
    SIGNATURE_SIZE,
    StatCache,
    signature,
)
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

DIGEST = digest_bytes(b"x")
OLD = 1_000_000_000_000_000_000  # 2001, in nanoseconds


def fake_stat(size: int = 3, mtime: int = OLD, ino: int = 7, dev: int = 9) -> os.stat_result:
    return cast(
        "os.stat_result",
        SimpleNamespace(st_size=size, st_mtime_ns=mtime, st_ctime_ns=mtime, st_ino=ino, st_dev=dev),
    )


def entry(path: str, st: os.stat_result, digest: str = DIGEST) -> tuple[str, bytes, str, int]:
    return (path, signature(st), digest, max(st.st_mtime_ns, st.st_ctime_ns))


def test_missing_file_is_an_empty_cache(tmp_path: Path) -> None:
    cache = StatCache(tmp_path / "cache" / "stat.db")
    assert cache.load("/data/a", tree=False) == ({}, [])


def test_update_then_load_one_file_and_a_tree(tmp_path: Path) -> None:
    st = fake_stat()
    with StatCache(tmp_path / "stat.db") as cache:
        now = time.time_ns()
        assert cache.update(
            [entry("/data/a", st), entry("/data/sub/b", st), entry("/data2/c", st)], cached_ns=now
        )
        trusted, racy = cache.load("/data", tree=True)
        assert sorted(trusted) == ["/data/a", "/data/sub/b"]  # not /data2/c
        assert racy == []
        value = trusted["/data/a"]
        assert len(value) == SIGNATURE_SIZE + DIGEST_SIZE
        assert value.startswith(signature(st))
        assert value[SIGNATURE_SIZE:].hex() == DIGEST.removeprefix("blake3:")
        assert list(cache.load("/data/a", tree=False)[0]) == ["/data/a"]


def test_remove_forgets_paths(tmp_path: Path) -> None:
    with StatCache(tmp_path / "stat.db") as cache:
        cache.update([entry("/d/a", fake_stat()), entry("/d/b", fake_stat())], cached_ns=OLD * 2)
        cache.update([], cached_ns=OLD * 2, remove=["/d/a"])
        assert list(cache.load("/d", tree=True)[0]) == ["/d/b"]


def test_entries_modified_within_the_racy_window_are_not_trusted(tmp_path: Path) -> None:
    cached_ns = OLD + RACY_WINDOW_NS
    fresh = fake_stat(mtime=cached_ns - RACY_WINDOW_NS // 2)  # modified 1 s before caching
    future = fake_stat(mtime=cached_ns + RACY_WINDOW_NS * 10)  # clock skew: never trusted
    old = fake_stat(mtime=cached_ns - RACY_WINDOW_NS - 1)
    with StatCache(tmp_path / "stat.db") as cache:
        cache.update(
            [entry("/d/fresh", fresh), entry("/d/future", future), entry("/d/old", old)],
            cached_ns=cached_ns,
        )
        trusted, racy = cache.load("/d", tree=True)
    assert list(trusted) == ["/d/old"]
    assert sorted(racy) == ["/d/fresh", "/d/future"]


def test_the_ctime_counts_for_the_racy_window(tmp_path: Path) -> None:
    st = cast(
        "os.stat_result",
        SimpleNamespace(st_size=1, st_mtime_ns=OLD, st_ctime_ns=OLD * 2, st_ino=1, st_dev=1),
    )
    with StatCache(tmp_path / "stat.db") as cache:
        cache.update([entry("/d/a", st)], cached_ns=OLD * 2 + 1)
        assert cache.load("/d", tree=True) == ({}, ["/d/a"])


def test_signature_holds_full_64_bit_inodes_and_devices(tmp_path: Path) -> None:
    st = fake_stat(ino=2**64 - 1, dev=2**63 + 5)
    with StatCache(tmp_path / "stat.db") as cache:
        cache.update([entry("/d/a", st)], cached_ns=OLD * 2)
        assert cache.load("/d/a", tree=False)[0]["/d/a"].startswith(signature(st))
    assert signature(st) != signature(fake_stat(ino=2**64 - 2, dev=2**63 + 5))


def test_a_corrupt_file_is_a_miss_and_is_recreated_on_write(tmp_path: Path) -> None:
    path = tmp_path / "stat.db"
    path.write_bytes(b"this is not a database" * 100)
    cache = StatCache(path)
    assert cache.load("/d", tree=True) == ({}, [])
    assert cache.update([entry("/d/a", fake_stat())], cached_ns=OLD * 2)
    assert list(cache.load("/d", tree=True)[0]) == ["/d/a"]
    cache.close()


def test_a_database_with_another_schema_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stat.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE entries (whatever TEXT)")
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    with StatCache(path) as cache:
        assert cache.load("/d", tree=True) == ({}, [])
        assert cache.update([entry("/d/a", fake_stat())], cached_ns=OLD * 2)
        assert list(cache.load("/d", tree=True)[0]) == ["/d/a"]


def test_an_unusable_location_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = StatCache(blocker / "stat.db")
    assert cache.load("/d", tree=True) == ({}, [])
    assert cache.update([entry("/d/a", fake_stat())], cached_ns=OLD) is False


def test_a_locked_cache_skips_the_write_without_raising(tmp_path: Path) -> None:
    path = tmp_path / "stat.db"
    StatCache(path).update([entry("/d/a", fake_stat())], cached_ns=OLD * 2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        cache = StatCache(path, timeout=0.05)
        assert list(cache.load("/d", tree=True)[0]) == ["/d/a"]  # WAL: readers go on
        assert cache.update([entry("/d/b", fake_stat())], cached_ns=OLD * 2) is False
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cache.update([entry("/d/b", fake_stat())], cached_ns=OLD * 2)
    cache.close()


def test_paths_sqlite_cannot_encode_are_skipped(tmp_path: Path) -> None:
    with StatCache(tmp_path / "stat.db") as cache:
        bad = os.fsdecode(b"/d/\xff")
        assert cache.update([entry(bad, fake_stat())], cached_ns=OLD * 2) is False
        assert cache.load(bad, tree=False) == ({}, [])


_WRITER = """
import sys
from pathlib import Path
from types import SimpleNamespace
from pipetrail.capture.statcache import StatCache, signature
cache = StatCache(Path(sys.argv[1]), timeout=10)
tag = sys.argv[2]
for i in range(40):
    st = SimpleNamespace(st_size=i, st_mtime_ns=1, st_ctime_ns=1, st_ino=i, st_dev=1)
    rows = [(f"/d/{tag}/{i}/{j}", signature(st), "blake3:" + "ab" * 32, 1) for j in range(25)]
    assert cache.update(rows, cached_ns=10**18), "write skipped"
    cache.load("/d", tree=True)
"""


def test_concurrent_writers_in_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "stat.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag]) for tag in ("p", "q")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with StatCache(path) as cache:
        trusted, _ = cache.load("/d", tree=True)
    assert len(trusted) == 2 * 40 * 25
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_a_forked_child_opens_its_own_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = StatCache(tmp_path / "stat.db")
    cache.update([entry("/d/a", fake_stat())], cached_ns=OLD * 2)
    first = cache._conn
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert list(cache.load("/d", tree=True)[0]) == ["/d/a"]
    assert cache._conn is not first
    cache.close()
    assert first is not None
    first.close()
