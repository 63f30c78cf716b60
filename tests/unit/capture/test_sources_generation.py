"""Re-observing a copied source at an unchanged store generation: no store lookup (ADR 0032).

The stat cache remembers at which store generation it saw each file's content in the
store; while the store's generation is the same, nothing can have left it, and the
observation neither looks the files up nor hands them over. Any change of generation
(a collection, a quarantine) brings the lookup back, and what left is stored again.
Real ``LocalStore``s and stat caches throughout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture import statcache
from pipetrail.capture.sources import observe_source
from pipetrail.capture.statcache import ENTRY_SIZE, StatCache
from pipetrail.hashing import digest_file
from pipetrail.store import LocalStore
from pipetrail.store.gc import find_garbage, remove_garbage
from pipetrail.store.generation import bump_generation
from tests.support.stored_sources import FILES, Calls, mixed_folder

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from pipetrail.capture.sources import SourceObservation


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return mixed_folder(tmp_path)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StatCache]:
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)  # trust files written just now
    with StatCache(tmp_path / "stat.db") as found:
        yield found


def _observe(root: Path, cache: StatCache, calls: Calls, **kw: Any) -> SourceObservation:
    kw.setdefault("store_generation", calls.store.generation())  # read first, as the runner
    return observe_source(
        "data",
        root=root,
        cache=cache,
        store_files=calls.store_files,
        stored_sizes=calls.stored_sizes,
        **kw,
    )


def _contents_stored(obs: SourceObservation, root: Path, store: LocalStore) -> None:
    for name, entry in (obs.manifest or {}).items():
        assert store.get_bytes(entry["digest"]) == (root / "data" / name).read_bytes()


def test_at_the_same_generation_nothing_is_looked_up(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    calls = Calls(LocalStore(tmp_path / "objects"))
    first = _observe(root, cache, calls)
    assert len(calls.handed) == FILES
    calls.clear()
    again = _observe(root, cache, calls)
    assert again.digest == first.digest
    assert (again.hashed_files, again.cached_files, again.stored_files) == (0, FILES, FILES)
    assert calls.handed == []
    assert calls.looked_up == []


def test_entries_from_before_generations_are_looked_up_once_then_marked(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    calls = Calls(LocalStore(tmp_path / "objects"))
    _observe(root, cache, calls, store_generation=None)  # as a stat cache of before
    calls.clear()
    _observe(root, cache, calls)
    assert len(calls.looked_up) == 1
    assert len(calls.looked_up[0]) == FILES
    assert calls.handed == []
    calls.clear()
    _observe(root, cache, calls)
    assert calls.looked_up == []


def test_a_new_generation_brings_the_lookup_back(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    calls = Calls(LocalStore(tmp_path / "objects"))
    _observe(root, cache, calls)
    bump_generation(str(calls.store.root))
    calls.clear()
    _observe(root, cache, calls)
    assert len(calls.looked_up) == 1
    assert calls.handed == []  # nothing had actually left
    calls.clear()
    _observe(root, cache, calls)
    assert calls.looked_up == []


def test_objects_a_collection_removed_are_stored_again(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    calls = Calls(LocalStore(tmp_path / "objects"))
    first = _observe(root, cache, calls)
    store = calls.store
    remove_garbage(store.root, find_garbage(store.root, set(), grace=0))
    assert list(store.iter_digests()) == []
    calls.clear()
    again = _observe(root, cache, calls)
    assert again.digest == first.digest
    assert again.hashed_files == 0
    assert len(calls.handed) == FILES
    _contents_stored(again, root, store)


def test_an_object_quarantined_is_stored_again(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    calls = Calls(LocalStore(tmp_path / "objects"))
    _observe(root, cache, calls)
    big = root / "data" / "sub" / "big.bin"
    big_digest = digest_file(big)[0]
    object_file = calls.store.root / big_digest[7:9] / big_digest[9:]
    object_file.chmod(0o644)
    with open(object_file, "r+b") as f:  # one flipped byte: store verify moves it aside
        first = f.read(1)[0]
        f.seek(0)  # the write goes where the byte was read, not after it
        f.write(bytes([first ^ 1]))
    assert not LocalStore(calls.store.root).verify(big_digest)
    calls.clear()
    _observe(root, cache, calls)
    assert calls.handed == [(str(big), big_digest)]
    assert calls.store.get_bytes(big_digest) == big.read_bytes()


def test_another_store_is_another_generation(root: Path, tmp_path: Path, cache: StatCache) -> None:
    _observe(root, cache, Calls(LocalStore(tmp_path / "objects")))
    other = Calls(LocalStore(tmp_path / "other"))  # holds none of them
    again = _observe(root, cache, other)
    assert len(other.handed) == FILES
    _contents_stored(again, root, other.store)


def test_by_reference_observations_mark_nothing(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    observe_source("data", root=root, cache=cache, by_reference=True, store_generation="ab" * 16)
    trusted, _ = cache.load(str(root / "data"), tree=True)
    assert len(trusted) == FILES
    assert {len(entry) for entry in trusted.values()} == {ENTRY_SIZE}
    calls = Calls(LocalStore(tmp_path / "objects"))  # empty: every file must be copied
    _observe(root, cache, calls)
    assert len(calls.handed) == FILES


def test_a_failed_store_marks_no_entry(root: Path, tmp_path: Path, cache: StatCache) -> None:
    calls = Calls(LocalStore(tmp_path / "objects"))
    _observe(root, cache, calls, store_generation=None)
    other = Calls(LocalStore(tmp_path / "other"))
    generation = other.store.generation()

    def failing(batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        observe_source(
            "data",
            root=root,
            cache=cache,
            store_files=failing,
            stored_sizes=other.stored_sizes,
            store_generation=generation,
        )
    trusted, _ = cache.load(str(root / "data"), tree=True)
    assert {len(entry) for entry in trusted.values()} == {ENTRY_SIZE}  # none marked
    again = _observe(root, cache, other)
    assert len(other.handed) == FILES
    _contents_stored(again, root, other.store)
