"""Re-observing a copied source: one store lookup for the files the stat cache vouches for.

``observe_source(..., stored_sizes=store.stored_sizes)`` asks the store once about every
file whose digest came from the stat cache, and hands only the missing ones (or those
stored with another size) to ``store_files``. Real ``LocalStore``s throughout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture import statcache
from pipetrail.capture.sources import observe_source
from pipetrail.capture.statcache import StatCache
from pipetrail.errors import IntegrityError
from pipetrail.hashing import digest_bytes, digest_file
from pipetrail.store import LocalStore
from tests.support.stored_sources import Calls, mixed_folder

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return mixed_folder(tmp_path)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StatCache]:
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)  # trust files written just now
    with StatCache(tmp_path / "stat.db") as found:
        yield found


def _observe(root: Path, cache: StatCache, calls: Calls, **kw: Any) -> Any:
    return observe_source(
        "data",
        root=root,
        cache=cache,
        store_files=calls.store_files,
        stored_sizes=calls.stored_sizes,
        **kw,
    )


def test_an_unchanged_re_observation_hands_nothing_to_the_store(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    calls = Calls(LocalStore(tmp_path / "objects"))
    first = _observe(root, cache, calls)
    assert len(calls.handed) == 14
    assert calls.looked_up == []
    calls.handed.clear()
    again = _observe(root, cache, calls)
    assert again.digest == first.digest
    assert (again.hashed_files, again.cached_files, again.stored_files) == (0, 14, 14)
    assert calls.handed == []
    digests = {e["digest"] for e in (first.manifest or {}).values()}
    assert len(calls.looked_up) == 1
    assert sorted(calls.looked_up[0]) == sorted(digests)


def test_objects_missing_from_the_store_are_copied_again(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    first = _observe(root, cache, Calls(LocalStore(tmp_path / "objects")))
    other = Calls(LocalStore(tmp_path / "other"))  # holds none of them
    again = _observe(root, cache, other)
    assert again.digest == first.digest
    assert again.hashed_files == 0
    assert len(other.handed) == 14
    assert all(digest is not None for _, digest in other.handed)  # the cache's digests
    for name, entry in (first.manifest or {}).items():
        assert other.store.get_bytes(entry["digest"]) == (root / "data" / name).read_bytes()


def test_only_the_missing_object_is_handed_over(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    calls = Calls(LocalStore(tmp_path / "objects", small_objects=0))
    _observe(root, cache, calls, store_threads=1)
    big = root / "data" / "sub" / "big.bin"
    big_digest = digest_file(big)[0]
    object_file = Path(calls.store._loose.final(big_digest))
    object_file.chmod(0o644)
    object_file.unlink()  # as if it had been moved aside
    calls.handed.clear()
    _observe(root, cache, calls)
    assert calls.handed == [(str(big), big_digest)]
    assert calls.store.get_bytes(big_digest) == big.read_bytes()


def test_an_object_stored_with_another_size_goes_to_the_store(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    calls = Calls(LocalStore(tmp_path / "objects"))
    _observe(root, cache, calls)
    small = root / "data" / "small.csv"
    small_digest = digest_file(small)[0]

    def lying(digests: list[str]) -> Mapping[str, int]:
        sizes = dict(calls.store.stored_sizes(digests))
        sizes[small_digest] += 1
        return sizes

    calls.handed.clear()
    observe_source(
        "data", root=root, cache=cache, store_files=calls.store_files, stored_sizes=lying
    )
    assert calls.handed == [(str(small), small_digest)]  # the store checks it itself


def test_a_wrong_digest_from_the_cache_still_fails_in_the_store(
    root: Path, tmp_path: Path, cache: StatCache
) -> None:
    calls = Calls(LocalStore(tmp_path / "other"))
    observe_source("data", root=root, cache=cache, by_reference=True)  # fills the cache
    small = root / "data" / "small.csv"
    small.write_text("a,b\n6,6\n")  # same size; the cache is then told the old digest
    with StatCache(tmp_path / "stat.db") as reopened:
        reopened.update(
            [
                (
                    str(small),
                    statcache.signature(small.stat()),
                    digest_bytes(b"a,b\n1,2\n"),
                    small.stat().st_mtime_ns,
                )
            ],
            cached_ns=small.stat().st_mtime_ns + 10**10,
        )
    with pytest.raises(IntegrityError, match=r"small\.csv"):
        _observe(root, cache, calls)


def test_local_store_stored_sizes(tmp_path: Path, root: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    files = sorted(p for p in (root / "data").rglob("*") if p.is_file())
    stored = store.put_files([(p, None) for p in files])
    loose = store.put_bytes(os.urandom(2_000_000))
    missing = digest_bytes(b"never stored")
    asked = [d for d, _ in stored] + [loose, missing, "not a digest", stored[0][0]]
    sizes = store.stored_sizes(asked)
    assert sizes == {**dict(stored), loose: 2_000_000}
    assert store.stored_sizes([]) == {}


def test_local_store_existing_finds_what_stored_sizes_sizes(tmp_path: Path, root: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    files = sorted(p for p in (root / "data").rglob("*") if p.is_file())
    stored = store.put_files([(p, None) for p in files])
    loose = store.put_bytes(os.urandom(2_000_000))
    missing = digest_bytes(b"never stored")
    asked = [d for d, _ in stored] + [loose, missing, "not a digest", stored[0][0]]
    assert store.existing(asked) == set(store.stored_sizes(asked)) == {*dict(stored), loose}
    assert store.existing([]) == set()
