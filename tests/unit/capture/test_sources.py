from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipetrail.capture import source_walk, statcache
from pipetrail.capture.sources import (
    MANIFEST_KIND,
    SourceChangedError,
    SourceObservation,
    _encode_manifest,
    observe_source,
)
from pipetrail.capture.statcache import StatCache
from pipetrail.errors import DefinitionError, IntegrityError, StoreError
from pipetrail.hashing import canonical_json, digest_bytes, digest_file
from pipetrail.store import ContentStore, LocalStore, MemoryStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "data" / "sub").mkdir(parents=True)
    (project / "data" / "a.csv").write_text("a,b\n1,2\n")
    (project / "data" / "sub" / "b.txt").write_text("bee")
    return project


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[StatCache]:
    with StatCache(tmp_path / "cache" / "stat.db") as found:
        yield found


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust entries of files written just before they were hashed (tests run fast)."""
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)


def observe(
    root: Path, path: str = "data", cache: StatCache | None = None, **kw: Any
) -> SourceObservation:
    kw.setdefault("by_reference", True)
    return observe_source(path, root=root, cache=cache, **kw)


# -- what is recorded --------------------------------------------------------------------
def test_a_file_source(root: Path) -> None:
    obs = observe(root, "data/a.csv")
    file = root / "data" / "a.csv"
    assert obs.kind == "file"
    assert (obs.digest, obs.size) == digest_file(file)
    assert obs.mtime_ns == file.stat().st_mtime_ns
    assert obs.location == os.path.realpath(file)
    assert (obs.manifest, obs.manifest_bytes, obs.file_count) == (None, None, 1)
    assert obs.observed_at.endswith("Z")
    assert (obs.hashed_files, obs.hashed_bytes, obs.cached_files) == (1, obs.size, 0)


def test_a_folder_source_and_its_manifest(root: Path) -> None:
    obs = observe(root)
    a, b = root / "data" / "a.csv", root / "data" / "sub" / "b.txt"
    files = {
        "a.csv": {"digest": digest_file(a)[0], "size": 8},
        "sub/b.txt": {"digest": digest_file(b)[0], "size": 3},
    }
    assert obs.kind == "folder"
    assert obs.manifest == files
    document = {"files": files, "kind": MANIFEST_KIND, "version": 1}
    assert obs.manifest_bytes == canonical_json(document).encode("utf-8")
    assert obs.digest == digest_bytes(obs.manifest_bytes)
    assert (obs.size, obs.file_count, obs.hashed_files) == (11, 2, 2)
    assert obs.mtime_ns == max(
        p.stat().st_mtime_ns for p in (root / "data", root / "data" / "sub", a, b)
    )
    record = obs.to_record()
    assert record["digest"] == obs.digest
    assert record["kind"] == "folder"
    assert "hashed_files" not in record
    json.dumps(record)


def test_an_empty_folder_has_an_empty_manifest(root: Path) -> None:
    (root / "empty").mkdir()
    obs = observe(root, "empty")
    assert obs.manifest == {}
    assert (obs.file_count, obs.size) == (0, 0)
    assert obs.digest == digest_bytes(
        canonical_json({"files": {}, "kind": MANIFEST_KIND, "version": 1}).encode()
    )


def test_equal_folders_have_equal_digests_wherever_they_are(root: Path) -> None:
    copy = root / "copy"
    (copy / "sub").mkdir(parents=True)
    (copy / "a.csv").write_bytes((root / "data" / "a.csv").read_bytes())
    (copy / "sub" / "b.txt").write_text("bee")
    assert observe(root, "copy").digest == observe(root, "data").digest


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: (d / "a.csv").write_text("a,b\n1,3\n"), id="content"),
        pytest.param(lambda d: (d / "a.csv").rename(d / "c.csv"), id="rename"),
        pytest.param(lambda d: (d / "sub" / "b.txt").rename(d / "b.txt"), id="move"),
        pytest.param(lambda d: (d / "new.txt").write_text(""), id="add"),
        pytest.param(lambda d: (d / "sub" / "b.txt").unlink(), id="remove"),
    ],
)
def test_any_change_to_any_file_changes_the_digest(
    root: Path, cache: StatCache, no_racy_window: None, change: Callable[[Path], object]
) -> None:
    before = observe(root, cache=cache).digest
    change(root / "data")
    assert observe(root, cache=cache).digest != before


def test_empty_sub_folders_do_not_count(root: Path) -> None:
    before = observe(root).digest
    (root / "data" / "nothing").mkdir()
    assert observe(root).digest == before


@given(st.dictionaries(st.text(st.characters(blacklist_categories=["Cs"])), st.integers(0)))
def test_the_manifest_encoding_is_canonical_json(names: dict[str, int]) -> None:
    digest = digest_bytes(b"")
    files = {name: (digest, size) for name, size in names.items()}
    document = {
        "files": {name: {"digest": digest, "size": size} for name, size in names.items()},
        "kind": MANIFEST_KIND,
        "version": 1,
    }
    assert _encode_manifest("x", files) == canonical_json(document).encode("utf-8")


def test_tricky_names_round_trip(root: Path) -> None:
    names = ['q"uote', "back\\slash", "new\nline", "é", "日本", "\x7f", "tab\t", "\u2028"]
    for name in names:
        (root / "data" / name).write_text(name)
    manifest = observe(root).manifest
    assert manifest is not None
    assert set(names) <= set(manifest)


def test_a_name_that_is_not_utf8_is_refused(root: Path) -> None:
    folder = os.fsencode(root / "data")
    fd = os.open(os.path.join(folder, b"bad\xff.csv"), os.O_CREAT | os.O_WRONLY)
    os.close(fd)
    with pytest.raises(DefinitionError, match="not valid UTF-8"):
        observe(root)


# -- the stat cache ----------------------------------------------------------------------
def test_unchanged_re_observation_hashes_nothing(
    root: Path, cache: StatCache, no_racy_window: None
) -> None:
    first = observe(root, cache=cache)
    again = observe(root, cache=cache)
    assert again.digest == first.digest
    assert (again.hashed_files, again.hashed_bytes, again.cached_files) == (0, 0, 2)
    assert again.manifest == first.manifest
    file = observe(root, "data/a.csv", cache=cache)
    assert (file.hashed_files, file.cached_files) == (0, 1)


def test_one_changed_file_is_the_only_one_hashed(
    root: Path, cache: StatCache, no_racy_window: None
) -> None:
    for i in range(20):
        (root / "data" / f"f{i}.txt").write_text(str(i))
    observe(root, cache=cache)
    (root / "data" / "f7.txt").write_text("changed")
    obs = observe(root, cache=cache)
    assert (obs.hashed_files, obs.hashed_bytes, obs.cached_files) == (1, 7, 21)


def test_a_file_replaced_with_same_size_and_mtime_is_hashed(
    root: Path, cache: StatCache, no_racy_window: None
) -> None:
    file = root / "data" / "a.csv"
    observe(root, cache=cache)
    stat = file.stat()
    file.unlink()
    file.write_text("x,y\n9,9\n")  # same size, new inode
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    obs = observe(root, cache=cache)
    assert obs.hashed_files == 1
    assert obs.manifest is not None
    assert obs.manifest["a.csv"]["digest"] == digest_file(file)[0]


def test_rehash_hashes_everything(root: Path, cache: StatCache, no_racy_window: None) -> None:
    observe(root, cache=cache)
    assert observe(root, cache=cache, rehash=True).hashed_files == 2
    assert observe(root, cache=cache).hashed_files == 0


def _fool_the_cache(cache: StatCache, file: Path, digest: str) -> None:
    """Rewrite ``file`` with other bytes of the same size, its stat signature unchanged.

    Content rewritten and mtime restored with ``os.utime``; the ctime still moves here, so
    the cache entry is re-signed with the new stat, as a file system whose ctime does not
    move (or a coarse clock) would leave it: the stat cache cannot tell.
    """
    before = file.stat()
    file.write_bytes(bytes(b ^ 0x20 for b in file.read_bytes()))
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    old = time.time_ns() - 60 * 10**9
    entry = (os.path.realpath(file), statcache.signature(file.stat()), digest, old)
    assert cache.update([entry], cached_ns=time.time_ns())


def test_content_changed_under_an_unchanged_stat_needs_rehash(root: Path, cache: StatCache) -> None:
    file = root / "data" / "a.csv"
    first = observe(root, "data/a.csv", cache=cache)
    _fool_the_cache(cache, file, first.digest)
    fooled = observe(root, "data/a.csv", cache=cache)
    assert (fooled.digest, fooled.hashed_files) == (first.digest, 0)  # stale, as expected
    rehashed = observe(root, "data/a.csv", cache=cache, rehash=True)
    assert rehashed.hashed_files == 1
    assert rehashed.digest == digest_file(file)[0] != first.digest
    assert observe(root, "data/a.csv", cache=cache).digest == rehashed.digest  # entry refreshed


def test_racy_entries_are_hashed_again(root: Path, cache: StatCache) -> None:
    # Files modified within the racy window of being hashed are never trusted; an mtime in
    # the future keeps them inside it however slow the machine is.
    future = time.time_ns() + 600 * 10**9
    for file in (root / "data" / "a.csv", root / "data" / "sub" / "b.txt"):
        os.utime(file, ns=(future, future))
    observe(root, cache=cache)
    assert observe(root, cache=cache).hashed_files == 2


def test_files_that_are_gone_are_forgotten(
    root: Path, cache: StatCache, no_racy_window: None
) -> None:
    observe(root, cache=cache)
    (root / "data" / "a.csv").unlink()
    observe(root, cache=cache)
    trusted, racy = cache.load(os.path.realpath(root / "data"), tree=True)
    assert [*trusted, *racy] == [os.path.realpath(root / "data" / "sub" / "b.txt")]


def test_a_corrupt_cache_file_is_treated_as_empty(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(os.urandom(4096))
    with StatCache(path) as cache:
        first = observe(root, cache=cache)
        assert first.hashed_files == 2
    assert first.digest == observe(root).digest


_OBSERVER = """
import sys
import threading
import time
from pathlib import Path
from pipetrail.capture import statcache
from pipetrail.capture.sources import observe_source
statcache.RACY_WINDOW_NS = 0
cache = statcache.StatCache(Path(sys.argv[2]), timeout=10)
for _ in range(15):
    print(observe_source("data", root=Path(sys.argv[1]), cache=cache, by_reference=True).digest)
"""


def test_concurrent_observers_in_two_processes(root: Path, tmp_path: Path) -> None:
    for i in range(200):
        (root / "data" / f"f{i:03d}.txt").write_text(str(i))
    db = tmp_path / "shared.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OBSERVER, str(root), str(db)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    expected = observe(root).digest
    assert all(digests == [expected] * 15 for digests in outputs)


# -- storing content ---------------------------------------------------------------------
class Recorder:
    """A thread-safe ``store_files`` callback that remembers its batches and threads."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, str | None]]] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        with self._lock:
            self.batches.append(list(batch))
            self.threads.add(threading.get_ident())
        return [digest_file(p) if d is None else (d, os.path.getsize(p)) for p, d in batch]

    @property
    def pairs(self) -> list[tuple[str, str | None]]:
        return [pair for batch in self.batches for pair in batch]


def test_small_new_files_are_handed_over_for_the_store_to_hash(root: Path) -> None:
    (root / "data" / "same.csv").write_bytes((root / "data" / "a.csv").read_bytes())
    calls = Recorder()
    obs = observe(root, store_files=calls, by_reference=False)
    assert obs.by_reference is False
    assert sorted(p for p, _ in calls.pairs) == sorted(
        str(root / "data" / name) for name in ("a.csv", "same.csv", "sub/b.txt")
    )
    assert {d for _, d in calls.pairs} == {None}  # read once, by the store
    manifest = obs.manifest or {}
    assert (
        manifest["same.csv"]
        == manifest["a.csv"]
        == {"digest": digest_file(root / "data" / "a.csv")[0], "size": 8}
    )
    assert (obs.stored_files, obs.hashed_files, obs.hashed_bytes) == (2, 3, 19)


def test_large_new_files_are_hashed_by_the_store_on_the_pool(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_walk, "_POOL_MIN_SIZE", 0)  # every file goes to the pool
    (root / "data" / "same.csv").write_bytes((root / "data" / "a.csv").read_bytes())
    calls = Recorder()
    obs = observe(root, store_files=calls, by_reference=False)
    assert {d for _, d in calls.pairs} == {None}  # read once, by the store
    assert threading.get_ident() not in calls.threads
    assert all(os.path.isabs(p) for p, _ in calls.pairs)
    manifest = obs.manifest or {}
    assert manifest == {
        name: {"digest": digest_file(root / "data" / name)[0], "size": size}
        for name, size in (("a.csv", 8), ("same.csv", 8), ("sub/b.txt", 3))
    }
    assert (obs.stored_files, obs.hashed_files, obs.hashed_bytes) == (2, 3, 19)


def test_known_files_are_handed_over_once_per_digest(
    root: Path, cache: StatCache, no_racy_window: None
) -> None:
    (root / "data" / "same.csv").write_bytes((root / "data" / "a.csv").read_bytes())
    first = observe(root, cache=cache)  # by reference: fills the cache
    calls = Recorder()
    obs = observe(root, cache=cache, store_files=calls, by_reference=False)
    assert obs.hashed_files == 0
    assert sorted(d or "" for _, d in calls.pairs) == sorted(
        {e["digest"] for e in (first.manifest or {}).values()}
    )
    assert obs.stored_files == len(calls.pairs) == 2


def test_store_files_also_receives_files_served_from_the_cache(
    root: Path, cache: StatCache, no_racy_window: None
) -> None:
    first = observe(root, cache=cache)  # by reference: nothing stored yet
    calls = Recorder()
    obs = observe(root, cache=cache, store_files=calls, by_reference=False)
    assert obs.hashed_files == 0
    assert sorted(d or "" for _, d in calls.pairs) == sorted(
        e["digest"] for e in (first.manifest or {}).values()
    )
    # Files the cache knows are most likely stored: handed over in this thread.
    assert calls.threads == {threading.get_ident()}


def test_files_are_handed_over_in_bounded_batches(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_walk, "_BATCH_FILES", 10)
    monkeypatch.setattr(source_walk, "_BATCH_BYTES", 1000)
    for i in range(95):
        (root / "data" / f"f{i:02d}.txt").write_text(f"file {i}")
    (root / "data" / "big.bin").write_bytes(os.urandom(3000))
    calls = Recorder()
    obs = observe(root, store_files=calls, by_reference=False)
    assert len(calls.pairs) == len(obs.manifest or {}) == 98
    assert max(len(b) for b in calls.batches) == 10
    assert len(calls.batches) >= 10
    (big_batch,) = [b for b in calls.batches if any(p.endswith("big.bin") for p, _ in b)]
    assert big_batch[-1][0].endswith("big.bin")  # a batch ends once it holds 1000 bytes


def test_by_reference_never_calls_store_files(root: Path) -> None:
    def fail(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        raise AssertionError("store_files called")

    obs = observe(root, store_files=fail, by_reference=True)
    assert (obs.by_reference, obs.stored_files) == (True, 0)


def test_store_files_is_required_unless_by_reference(root: Path) -> None:
    with pytest.raises(ValueError, match="store_files"):
        observe_source("data", root=root)


STORES: list[tuple[str, Callable[[Path], ContentStore]]] = [
    ("memory", lambda tmp_path: MemoryStore()),
    ("local", lambda tmp_path: LocalStore(tmp_path / "objects")),
]


@pytest.mark.parametrize("make_store", [f for _, f in STORES], ids=[n for n, _ in STORES])
def test_a_store_s_put_files_is_a_store_files_callback(
    root: Path, tmp_path: Path, make_store: Callable[[Path], ContentStore]
) -> None:
    for i in range(50):
        (root / "data" / f"f{i}.txt").write_text(str(i % 20))
    store = make_store(tmp_path)
    obs = observe(root, store_files=store.put_files, by_reference=False)
    manifest = obs.manifest or {}
    assert set(store.iter_digests()) == {e["digest"] for e in manifest.values()}
    for name, entry in manifest.items():
        assert store.get_bytes(entry["digest"]) == (root / "data" / name).read_bytes()


def test_a_file_changed_after_the_cache_vouched_for_it_is_not_stored(
    root: Path, tmp_path: Path, cache: StatCache, no_racy_window: None
) -> None:
    observe(root, cache=cache)  # by reference: the cache now knows both files
    store = LocalStore(tmp_path / "objects")
    victim = root / "data" / "a.csv"

    def change_then_store(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        victim.write_text("a,b\n6,6\n")  # same size: only the digest check can tell
        return store.put_files(batch)

    with pytest.raises(IntegrityError, match=r"a\.csv changed while being read"):
        observe(
            root, cache=cache, store_files=change_then_store, by_reference=False, store_threads=1
        )
    assert not store.exists(digest_file(victim)[0])
    assert list(store.iter_digests()) == []
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []


def test_a_large_file_changed_before_the_store_read_it_is_detected(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_walk, "_POOL_MIN_SIZE", 0)  # every file goes to the pool
    store = LocalStore(tmp_path / "objects", small_objects=0)
    victim = root / "data" / "a.csv"

    def change_then_store(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        if any(p == str(victim) for p, _ in batch):
            victim.write_text("a,b\n6,6\n!")
        return store.put_files(batch)

    with pytest.raises(SourceChangedError, match=r"a\.csv changed while it was being read"):
        observe(root, store_files=change_then_store, by_reference=False)


def test_a_small_file_changed_before_the_store_read_it_is_detected(
    root: Path, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "objects")
    victim = root / "data" / "a.csv"

    def change_then_store(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        victim.write_text("a,b\n6,6\n!")
        return store.put_files(batch)

    with pytest.raises(SourceChangedError, match=r"a\.csv changed while it was being read"):
        observe(root, store_files=change_then_store, by_reference=False)


def test_a_small_file_vanishing_before_the_store_read_it_is_detected(
    root: Path, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "objects")
    victim = root / "data" / "a.csv"

    def remove_then_store(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        victim.unlink()
        return store.put_files(batch)

    with pytest.raises(SourceChangedError, match=r"a\.csv vanished") as info:
        observe(root, store_files=remove_then_store, by_reference=False)
    assert isinstance(info.value.__cause__, StoreError)


def test_a_large_file_vanishing_before_the_store_read_it_is_detected(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_walk, "_POOL_MIN_SIZE", 0)  # every file goes to the pool
    store = LocalStore(tmp_path / "objects")
    victim = root / "data" / "a.csv"

    def remove_then_store(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        victim.unlink(missing_ok=True)
        return store.put_files(batch)

    with pytest.raises(SourceChangedError, match=r"a\.csv vanished") as info:
        observe(root, store_files=remove_then_store, by_reference=False)
    assert isinstance(info.value.__cause__, StoreError)


def test_store_files_must_return_a_result_per_file(root: Path) -> None:
    def forgetful(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        return []

    with pytest.raises(TypeError, match=r"one \(digest, size\) per file"):
        observe(root, store_files=forgetful, by_reference=False)


# -- what is refused ---------------------------------------------------------------------
def test_a_missing_source(root: Path) -> None:
    with pytest.raises(DefinitionError, match=r"'data/nope.csv' does not exist"):
        observe(root, "data/nope.csv")


def test_object_uris_need_the_s3_store(root: Path) -> None:
    with pytest.raises(DefinitionError, match="S3 store, which is not available yet"):
        observe(root, "s3://bucket/key.csv")


def test_dot_dot_escaping_the_root_is_refused(root: Path) -> None:
    (root.parent / "outside.csv").write_text("x")
    with pytest.raises(DefinitionError, match=r"'\.\./outside\.csv' is outside the project root"):
        observe(root, "../outside.csv")
    with pytest.raises(DefinitionError, match=r"allow_outside=True"):
        observe(root, "data/../../outside.csv")
    assert observe(root, "../outside.csv", allow_outside=True).size == 1


def test_absolute_paths_inside_are_fine_outside_refused(root: Path) -> None:
    assert observe(root, str(root / "data" / "a.csv")).size == 8
    outside = root.parent / "elsewhere.csv"
    outside.write_text("x")
    with pytest.raises(DefinitionError, match="outside the project root"):
        observe(root, str(outside))
    assert observe(root, str(outside), allow_outside=True).kind == "file"


def test_a_source_symlink_pointing_outside_is_refused(root: Path) -> None:
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "x.csv").write_text("x")
    (root / "linked").symlink_to(outside)
    with pytest.raises(DefinitionError, match=r"symlink to .*outside the project root"):
        observe(root, "linked")
    assert observe(root, "linked", allow_outside=True).file_count == 1


def test_a_symlink_inside_a_folder_pointing_outside_it_is_refused(root: Path) -> None:
    (root / "other.csv").write_text("inside the root but not the folder")
    (root / "data" / "link.csv").symlink_to(root / "other.csv")
    with pytest.raises(DefinitionError, match=r"link\.csv is a symlink to .*outside the folder"):
        observe(root)
    obs = observe(root, allow_outside=True)
    assert obs.manifest is not None
    assert obs.manifest["link.csv"]["size"] == len("inside the root but not the folder")


def test_symlinks_inside_the_folder_are_recorded_under_the_link(root: Path) -> None:
    (root / "data" / "alias.csv").symlink_to("a.csv")
    (root / "data" / "alias_dir").symlink_to("sub", target_is_directory=True)
    manifest = observe(root).manifest
    assert manifest is not None
    assert manifest["alias.csv"] == manifest["a.csv"]
    assert manifest["alias_dir/b.txt"] == manifest["sub/b.txt"]


def test_a_symlink_cycle_is_refused(root: Path) -> None:
    (root / "data" / "sub" / "loop").symlink_to("..", target_is_directory=True)
    with pytest.raises(DefinitionError, match="one of its own parent folders"):
        observe(root)


def test_a_broken_symlink_is_refused(root: Path) -> None:
    (root / "data" / "dangling").symlink_to("missing.csv")
    with pytest.raises(DefinitionError, match="broken symlink"):
        observe(root)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_special_files_are_refused(root: Path) -> None:
    os.mkfifo(root / "data" / "pipe")
    with pytest.raises(DefinitionError, match=r"pipe is a named pipe \(FIFO\)"):
        observe(root)
    with pytest.raises(DefinitionError, match="named pipe"):
        observe(root, "data/pipe")


# -- files that change or vanish while read --------------------------------------------------
def _patch_digest_file(
    monkeypatch: pytest.MonkeyPatch, before: Callable[[Path], object] | None = None
) -> None:
    def patched(path: str | os.PathLike[str]) -> tuple[str, int]:
        if before is not None and Path(path).name == "a.csv":
            before(Path(path))
        return digest_file(path)

    monkeypatch.setattr(source_walk, "digest_file", patched)


def test_a_file_growing_while_read_is_detected(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def grow(path: Path) -> None:
        with path.open("a") as f:
            f.write("3,4\n")

    _patch_digest_file(monkeypatch, grow)
    with pytest.raises(SourceChangedError, match=r"a\.csv changed while it was being read") as exc:
        observe(root)
    assert exc.value.file.endswith("a.csv")
    assert isinstance(exc.value, DefinitionError)


def test_a_file_rewritten_while_read_is_detected(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace(path: Path) -> None:
        tmp = path.with_name("tmp")
        tmp.write_text("x,y\n9,9\n")  # same size, other inode
        tmp.replace(path)

    _patch_digest_file(monkeypatch, replace)
    with pytest.raises(SourceChangedError, match="changed while it was being read"):
        observe(root, "data/a.csv")


def test_a_file_vanishing_while_read_is_detected(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_digest_file(monkeypatch, Path.unlink)
    with pytest.raises(SourceChangedError, match=r"a\.csv vanished while it was being read"):
        observe(root)


class StoreBrokeError(Exception):
    pass


@pytest.mark.parametrize("threads", [1, 4])
def test_the_first_store_error_propagates(root: Path, threads: int) -> None:
    def broken(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        raise StoreBrokeError(batch[0][0])

    with pytest.raises(StoreBrokeError):
        observe(root, store_files=broken, by_reference=False, store_threads=threads)
    with pytest.raises(StoreBrokeError):
        observe(root, "data/a.csv", store_files=broken, by_reference=False, store_threads=threads)


def test_large_files_are_stored_on_threads_unless_told_otherwise(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_walk, "_BATCH_FILES", 8)
    monkeypatch.setattr(source_walk, "_POOL_MIN_SIZE", 2)  # "large": 2 bytes or more
    for i in range(100):
        (root / "data" / f"f{i}.txt").write_text(str(i + 10))
    pooled = Recorder()
    obs = observe(root, store_files=pooled, by_reference=False)
    assert threading.get_ident() not in pooled.threads
    assert {d for _, d in pooled.pairs} == {None}  # hashed by the store as it copies
    assert all(
        entry["digest"] == digest_file(root / "data" / name)[0]
        for name, entry in (obs.manifest or {}).items()
    )
    inline = Recorder()
    observe(root, store_files=inline, by_reference=False, store_threads=1)
    assert inline.threads == {threading.get_ident()}
    assert len(inline.batches) == len(pooled.batches) == 13


def test_small_files_are_stored_from_the_calling_thread(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_walk, "_POOL_MIN_SIZE", 100)
    (root / "data" / "large.bin").write_bytes(os.urandom(100))
    calls = Recorder()
    seen: dict[str, int] = {}

    def record(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        seen.update((os.path.basename(p), threading.get_ident()) for p, _ in batch)
        return calls(batch)

    observe(root, store_files=record, by_reference=False)
    me = threading.get_ident()
    assert seen.pop("large.bin") != me
    assert seen == {"a.csv": me, "b.txt": me}


def test_large_files_are_read_not_mapped(root: Path) -> None:
    big = root / "data" / "big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024 + 17))
    obs = observe(root, "data/big.bin")
    assert (obs.digest, obs.size) == digest_file(big)


def test_a_large_file_truncated_while_read_is_detected(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through a memory map this would kill the process with SIGBUS.
    big = root / "data" / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    real_readv = os.readv
    calls = 0

    def readv_then_truncate(fd: int, buffers: list[Any]) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            os.truncate(big, 1024)
        return real_readv(fd, buffers)

    monkeypatch.setattr(os, "readv", readv_then_truncate)
    with pytest.raises(SourceChangedError, match=r"big\.bin changed while it was being read"):
        observe(root, "data/big.bin")
