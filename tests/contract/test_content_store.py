"""Contract suite for ContentStore: every implementation in IMPLEMENTATIONS must pass it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipetrail.errors import IntegrityError, NotFoundError
from pipetrail.hashing import digest_bytes, digest_file, is_digest
from pipetrail.store import ContentStore, LocalStore, MemoryStore, verify_store
from pipetrail.store.s3 import S3Store
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedServer

Factory = Callable[[Path], ContentStore]

IMPLEMENTATIONS: list[tuple[str, Factory]] = [
    ("local", lambda tmp_path: LocalStore(tmp_path / "store", small_objects=0)),
    ("local-packed", lambda tmp_path: LocalStore(tmp_path / "store")),
    ("memory", lambda tmp_path: MemoryStore()),
]


def s3_store(server: SeaweedServer, url: str, tmp_path: Path) -> S3Store:
    """An S3Store on a real SeaweedFS server, under a fresh prefix."""
    return S3Store(
        url,
        cache_dir=tmp_path / "s3-cache",
        endpoint=server.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )


@pytest.fixture(params=[*(n for n, _ in IMPLEMENTATIONS), "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ContentStore:
    if request.param == "s3":
        server = request.getfixturevalue("seaweed")
        return s3_store(server, request.getfixturevalue("s3_url"), tmp_path)
    factory = dict(IMPLEMENTATIONS)[request.param]
    return factory(tmp_path)


def corrupt(store: ContentStore, digest: str) -> None:
    """Flip one byte of a stored object behind the store's back."""
    if isinstance(store, LocalStore) and store._pack.exists(digest):
        import sqlite3

        row = store._pack.get(digest)
        assert row is not None
        data = bytearray(row)
        data[0] ^= 0xFF
        with sqlite3.connect(store.root / "pack.db") as conn:
            conn.execute("UPDATE objects SET data = ? WHERE digest = ?", (bytes(data), digest))
    elif isinstance(store, LocalStore):
        path = store.local_path(digest)
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))
    elif isinstance(store, MemoryStore):
        data = bytearray(store._objects[digest])
        data[0] ^= 0xFF
        store._objects[digest] = bytes(data)
    elif isinstance(store, S3Store):
        import obstore as obs

        client = store._client_store
        data = bytearray(obs.get(client, store._key(digest)).bytes())
        data[0] ^= 0xFF
        obs.put(client, store._key(digest), bytes(data))  # an overwrite, as an insider could
        store._evict(digest)
    else:  # pragma: no cover - a new implementation must teach this helper how to corrupt
        raise NotImplementedError(type(store))


def is_quarantined(store: ContentStore, digest: str) -> bool:
    if isinstance(store, LocalStore):
        hex_part = digest.split(":", 1)[1]
        return any(p.name.startswith(hex_part) for p in (store.root / "quarantine").iterdir())
    if isinstance(store, MemoryStore):
        return digest in store.quarantine
    if isinstance(store, S3Store):
        import obstore as obs

        hex_part = digest.split(":", 1)[1]
        listed = obs.list(store._client_store, prefix=f"{store._prefix}quarantine/")
        return any(hex_part in str(meta["path"]) for batch in listed for meta in batch)
    raise NotImplementedError(type(store))  # pragma: no cover


def test_implements_protocol(store: ContentStore) -> None:
    assert isinstance(store, ContentStore)


@pytest.mark.parametrize("data", [b"", b"x", b"hello world" * 1000])
def test_put_then_get_round_trips(store: ContentStore, data: bytes) -> None:
    digest = store.put_bytes(data)
    assert is_digest(digest)
    assert digest == digest_bytes(data)
    assert store.get_bytes(digest) == data
    assert store.size(digest) == len(data)
    assert store.exists(digest)
    with store.open(digest) as f:
        assert f.read() == data


def test_put_is_idempotent(store: ContentStore) -> None:
    first = store.put_bytes(b"same")
    second = store.put_bytes(b"same")
    assert first == second
    assert list(store.iter_digests()) == [first]


def test_unknown_digest_raises_not_found(store: ContentStore) -> None:
    missing = digest_bytes(b"never stored")
    assert not store.exists(missing)
    for call in (store.get_bytes, store.open, store.size, store.verify):
        with pytest.raises(NotFoundError, match=missing):
            call(missing)
    with pytest.raises(KeyError):  # NotFoundError is also a KeyError
        store.get_bytes(missing)


def test_malformed_digest_is_not_found(store: ContentStore) -> None:
    assert not store.exists("blake3:nope")
    with pytest.raises(NotFoundError):
        store.get_bytes("blake3:nope")


def test_put_file_returns_digest_and_size(store: ContentStore, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    expected = digest_file(path)
    assert store.put_file(path) == expected
    assert store.put_file(path, digest=expected[0]) == expected
    assert store.get_bytes(expected[0]) == path.read_bytes()


def test_put_file_with_wrong_digest_raises_integrity_error(
    store: ContentStore, tmp_path: Path
) -> None:
    path = tmp_path / "changing.txt"
    path.write_bytes(b"what is really in the file")
    wrong = digest_bytes(b"what the caller thought was in it")
    with pytest.raises(IntegrityError, match=r"changing\.txt.*changed while being read"):
        store.put_file(path, digest=wrong)
    assert not store.exists(wrong)
    assert not store.exists(digest_file(path)[0])


def test_iter_digests_lists_every_object(store: ContentStore) -> None:
    digests = {store.put_bytes(f"object {i}".encode()) for i in range(50)}
    assert set(store.iter_digests()) == digests


def test_local_path(store: ContentStore) -> None:
    digest = store.put_bytes(b"on disk?")
    path = store.local_path(digest)
    if isinstance(store, MemoryStore):
        assert path is None
    else:  # a remote store's path is its verified read-cache copy
        assert path is not None
        assert path.read_bytes() == b"on disk?"
        assert path.stat().st_mode & 0o777 == 0o444


def test_verify_detects_corruption_and_quarantines(store: ContentStore) -> None:
    good = store.put_bytes(b"good object")
    bad = store.put_bytes(b"soon corrupt")
    assert store.verify(good)
    corrupt(store, bad)
    assert store.verify(bad) is False
    assert not store.exists(bad)
    assert is_quarantined(store, bad)
    assert store.verify(good)
    assert set(store.iter_digests()) == {good}


def test_reads_of_a_corrupt_object_raise_integrity_error_and_quarantine(
    store: ContentStore,
) -> None:
    good = store.put_bytes(b"intact neighbour")
    for read in (store.get_bytes, store.open):
        data = f"read with {read.__name__}".encode() * 100
        digest = store.put_bytes(data)
        corrupt(store, digest)
        with pytest.raises(IntegrityError, match=rf"Object {digest} is corrupt"):
            read(digest)
        assert not store.exists(digest)
        assert is_quarantined(store, digest)
        with pytest.raises(NotFoundError):
            store.get_bytes(digest)
    assert store.get_bytes(good) == b"intact neighbour"


def test_a_put_replaces_corrupt_bytes_held_under_the_name(
    store: ContentStore, tmp_path: Path
) -> None:
    data = b"stored once, damaged, stored again" * 50
    digest = store.put_bytes(data)
    corrupt(store, digest)
    assert store.put_bytes(data) == digest
    assert store.get_bytes(digest) == data
    assert is_quarantined(store, digest)
    path = tmp_path / "again.bin"
    path.write_bytes(os.urandom(100_000))
    file_digest, size = store.put_file(path)
    corrupt(store, file_digest)
    assert store.put_file(path) == (file_digest, size)
    assert store.put_files([(path, None)]) == [(file_digest, size)]
    assert store.get_bytes(file_digest) == path.read_bytes()
    assert verify_store(store).ok


def test_verify_store_reports_corrupt_and_missing(store: ContentStore) -> None:
    digests = [store.put_bytes(f"item {i}".encode()) for i in range(5)]
    corrupt(store, digests[2])
    never = digest_bytes(b"expected but never stored")
    report = verify_store(store, expected=[*digests, never])
    assert report.checked == 5
    assert report.corrupt == [digests[2]]
    assert report.missing == [never]
    assert not report.ok
    assert verify_store(store, expected=[digests[0]]).ok


def test_concurrent_puts_from_threads(store: ContentStore) -> None:
    payloads = [f"payload {i % 40}".encode() * (1 + i % 7) for i in range(400)]
    workers = 8
    barrier = threading.Barrier(workers)

    def put_share(offset: int) -> dict[int, str]:
        barrier.wait()  # start together to maximise contention on the same digests
        return {i: store.put_bytes(payloads[i]) for i in range(offset, len(payloads), workers)}

    results: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for share in pool.map(put_share, range(workers)):  # re-raises a worker's error
            results.update(share)
    assert len(results) == len(payloads)
    for i, digest in results.items():
        assert store.get_bytes(digest) == payloads[i]
    assert set(store.iter_digests()) == {digest_bytes(p) for p in payloads}
    assert all(store.verify(d) for d in store.iter_digests())


def _write_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"f{i:03d}.bin"
        path.write_bytes(f"file {i % 25}".encode() * (1 + i % 25))  # 25 distinct contents
        paths.append(path)
    return paths


def test_put_files_returns_digest_and_size_per_item_in_order(
    store: ContentStore, tmp_path: Path
) -> None:
    paths = _write_files(tmp_path / "src", 60)
    store.put_file(paths[0])  # already stored before the batch
    items: list[tuple[Path, str | None]] = [
        (p, digest_file(p)[0] if i % 2 else None) for i, p in enumerate(paths)
    ]
    results = store.put_files(items)
    assert results == [digest_file(p) for p in paths]
    assert set(store.iter_digests()) == {d for d, _ in results}
    assert len(set(store.iter_digests())) == 25
    for path, (digest, _) in zip(paths, results, strict=True):
        assert store.get_bytes(digest) == path.read_bytes()
    assert store.put_files(items) == results  # idempotent
    assert store.put_files([]) == []
    store.sync()


def test_put_files_with_a_wrong_digest_raises_and_stores_neither(
    store: ContentStore, tmp_path: Path
) -> None:
    good, changing = _write_files(tmp_path / "src", 2)
    changing.write_bytes(b"what is really in the file")
    wrong = digest_bytes(b"what the caller thought was in the file")
    with pytest.raises(IntegrityError, match=r"f001\.bin.*changed while being read"):
        store.put_files([(good, None), (changing, wrong)])
    assert not store.exists(wrong)
    assert not store.exists(digest_file(changing)[0])


def test_concurrent_batches_from_threads(store: ContentStore, tmp_path: Path) -> None:
    paths = _write_files(tmp_path / "src", 200)
    expected = {str(p): digest_file(p) for p in paths}
    workers = 6
    barrier = threading.Barrier(workers)

    def put_batches(offset: int) -> list[tuple[str, int]]:
        # Overlapping batches: every digest is written by several threads at once.
        share = paths[offset * 10 :] + paths[: offset * 10]
        barrier.wait()
        results: list[tuple[str, int]] = []
        for start in range(0, len(share), 40):
            results += store.put_files([(p, None) for p in share[start : start + 40]])
        assert results == [expected[str(p)] for p in share]
        return results

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put_batches, range(workers)))  # re-raises a worker's error
    store.sync()
    assert set(store.iter_digests()) == {d for d, _ in expected.values()}
    assert verify_store(store).ok
    assert all(store.verify(d) for d in store.iter_digests())
