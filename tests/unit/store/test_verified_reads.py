"""Reads of a LocalStore are verified; writes repair a corrupt object (ADR 0011).

Every object is corrupted behind the store's back, in each place an object can live: a
loose file, a row of the pack, a slice of a segment file.
"""

from __future__ import annotations

import os
import pickle  # noqa: TID251 - builds the tampered payload the store must refuse
import sqlite3
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError, NotFoundError
from pipetrail.hashing import digest_bytes, digest_file
from pipetrail.store import LocalStore, SerializerRegistry, verify_store

if TYPE_CHECKING:
    from pathlib import Path

KIB = 1024
MIB = 1024 * KIB


def _flip_file(path: Path, offset: int = 0) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def _flip_row(root: Path, digest: str) -> None:
    with sqlite3.connect(root / "pack.db") as conn:
        (data,) = conn.execute("SELECT data FROM objects WHERE digest = ?", (digest,)).fetchone()
        flipped = bytes([data[0] ^ 0x01]) + bytes(data[1:])
        conn.execute("UPDATE objects SET data = ? WHERE digest = ?", (flipped, digest))


def _segment_objects(tmp_path: Path, store: LocalStore, count: int = 8) -> list[tuple[Path, str]]:
    """Store ``count`` files of 20 KiB in one batch: they land in one segment file."""
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"m{i}.bin"
        path.write_bytes(os.urandom(20 * KIB))
        paths.append(path)
    results = store.put_files([(p, None) for p in paths])
    return [(p, d) for p, (d, _) in zip(paths, results, strict=True)]


def _flip_segment(root: Path, digest: str) -> None:
    with sqlite3.connect(root / "pack.db") as conn:
        segment, start = conn.execute(
            "SELECT segment, start FROM segment_objects WHERE digest = ?", (digest,)
        ).fetchone()
    _flip_file(root / "segments" / segment, start + 7)


def _quarantined(root: Path, digest: str) -> list[bytes]:
    folder = root / "quarantine"
    hex_part = digest.removeprefix("blake3:")
    if not folder.exists():
        return []
    return [p.read_bytes() for p in folder.iterdir() if p.name.startswith(hex_part)]


# -- reads ---------------------------------------------------------------------------
# 17 MiB: get_bytes hashes the file on another thread while it reads it.
@pytest.mark.parametrize("size", [100, 40 * KIB, 6 * MIB, 17 * MIB])
def test_every_read_of_a_corrupt_loose_object_raises_and_quarantines(
    tmp_path: Path, size: int
) -> None:
    root = tmp_path / "s"
    data = os.urandom(size)
    for read in ("get_bytes", "open", "local_path"):
        store = LocalStore(root, small_objects=0)
        digest = store.put_bytes(data)
        _flip_file(store.local_path(digest), size // 2)
        with pytest.raises(IntegrityError, match=rf"Object {digest} is corrupt.*quarantine"):
            getattr(store, read)(digest)
        assert not store.exists(digest)
        assert _quarantined(root, digest)[-1] != data
        with pytest.raises(NotFoundError):
            store.get_bytes(digest)
        assert store.put_bytes(data) == digest  # stored again: intact
        assert store.get_bytes(digest) == data
        store.verify(digest)
        (root / digest[7:9] / digest[9:]).chmod(0o644)
        os.unlink(root / digest[7:9] / digest[9:])


def test_every_read_of_a_corrupt_pack_row_raises_and_quarantines(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = LocalStore(root)
    good = store.put_bytes(b"good row")
    for read in ("get_bytes", "open", "local_path"):
        data = f"row read by {read}".encode()
        digest = store.put_bytes(data)
        _flip_row(root, digest)
        with pytest.raises(IntegrityError, match=rf"Object {digest} is corrupt.*row of .*pack\.db"):
            getattr(store, read)(digest)
        assert not store.exists(digest)
        assert _quarantined(root, digest) == [bytes([data[0] ^ 1]) + data[1:]]
    assert store.get_bytes(good) == b"good row"
    assert verify_store(store).ok


def test_every_read_of_a_corrupt_segment_slice_raises_and_quarantines(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = LocalStore(root)
    stored = _segment_objects(tmp_path, store)
    for (path, digest), read in zip(stored, ("get_bytes", "open", "local_path"), strict=False):
        _flip_segment(root, digest)
        with pytest.raises(IntegrityError, match=rf"Object {digest} is corrupt.*segment file"):
            getattr(store, read)(digest)
        assert not store.exists(digest)
        assert len(_quarantined(root, digest)[0]) == path.stat().st_size
    for path, digest in stored[3:]:
        assert store.get_bytes(digest) == path.read_bytes()


def test_a_corrupt_loose_copy_of_a_packed_object_falls_back_to_the_pack(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = LocalStore(root)
    digest = store.put_bytes(b"packed, with a loose copy for a caller that needs a file")
    copy = store.local_path(digest)
    for read in ("get_bytes", "open", "local_path"):
        _flip_file(copy, 2)
        found = getattr(store, read)(digest)
        if read == "open":
            with found as f:
                found = f.read()
        elif read == "local_path":
            found = found.read_bytes()
        assert found == b"packed, with a loose copy for a caller that needs a file"
        if not copy.exists():
            copy = store.local_path(digest)
    assert len(_quarantined(root, digest)) == 3


def test_open_hands_out_the_very_file_it_verified(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", small_objects=0)
    data = os.urandom(5 * MIB + 3)
    digest = store.put_bytes(data)
    with store.open(digest) as f:
        assert f.read() == data
    assert store.local_path(digest).read_bytes() == data
    assert store.get_bytes(digest) == data


def test_a_verified_unchanged_file_is_not_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipetrail.store import loose_read as loose_read_module
    from pipetrail.store import verified as verified_module

    store = LocalStore(tmp_path / "s", small_objects=0)
    data = os.urandom(2 * MIB)
    digest = store.put_bytes(data)
    hashed: list[str] = []
    real_digest_fd, real_digest_of = loose_read_module.digest_fd, loose_read_module.digest_of

    def counting_fd(fd: int) -> tuple[str, int]:
        hashed.append("file")
        return real_digest_fd(fd)

    def counting_of(buffer: bytes) -> str:
        hashed.append("bytes")
        return real_digest_of(buffer)

    monkeypatch.setattr(loose_read_module, "digest_fd", counting_fd)
    monkeypatch.setattr(loose_read_module, "digest_of", counting_of)
    # Just written: changed less than RACY_SECONDS ago, so hashed on every read.
    store.local_path(digest)
    store.local_path(digest)
    assert hashed == ["file", "file"]
    monkeypatch.setattr(verified_module, "RACY_SECONDS", -60.0)  # as if written long ago
    hashed.clear()
    store.local_path(digest)
    with store.open(digest) as f:
        assert f.read() == data
    assert store.get_bytes(digest) == data
    assert hashed == ["file"]  # once; then trusted by its stat signature
    # Any write changes the signature: the next read hashes again and sees it.
    _flip_file(store.local_path(digest), 1000)
    with pytest.raises(IntegrityError, match=digest):
        store.get_bytes(digest)
    assert hashed == ["file", "bytes"]


def test_a_truncated_loose_file_is_corrupt(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", small_objects=0)
    digest = store.put_bytes(os.urandom(64 * KIB))
    path = store.local_path(digest)
    path.chmod(0o644)
    os.truncate(path, 10)
    with pytest.raises(IntegrityError, match=digest):
        store.get_bytes(digest)


# -- writes repair ---------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_put_bytes_replaces_a_corrupt_loose_object(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "s"
    store = LocalStore(root, small_objects=0)
    data = os.urandom(300 * KIB)
    digest = store.put_bytes(data)
    path = store.local_path(digest)
    if damage == "flip":
        _flip_file(path, 77)
    else:
        path.chmod(0o644)
        os.truncate(path, 1000)
    assert store.put_bytes(data) == digest
    assert path.read_bytes() == data
    assert len(_quarantined(root, digest)) == 1
    assert store.verify(digest)


def test_put_bytes_replaces_a_corrupt_pack_row(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = LocalStore(root)
    digest = store.put_bytes(b"a small output")
    _flip_row(root, digest)
    assert store.put_bytes(b"a small output") == digest
    assert store.get_bytes(digest) == b"a small output"
    assert _quarantined(root, digest) == [b"` small output"]


def test_put_bytes_of_an_object_held_in_a_corrupt_segment_slice_stores_it_again(
    tmp_path: Path,
) -> None:
    root = tmp_path / "s"
    store = LocalStore(root)
    (path, digest), *_ = _segment_objects(tmp_path, store)
    assert store.put_bytes(path.read_bytes()) == digest  # intact: nothing written
    assert not (root / digest[7:9] / digest[9:]).exists()
    _flip_segment(root, digest)
    assert store.put_bytes(path.read_bytes()) == digest
    assert store.get_bytes(digest) == path.read_bytes()
    assert len(_quarantined(root, digest)) == 1


def test_put_file_replaces_a_corrupt_object_with_or_without_its_digest(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = LocalStore(root, small_objects=0)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * MIB))
    digest, size = digest_file(source)
    assert store.put_file(source) == (digest, size)
    for given in (None, digest):
        _flip_file(store.local_path(digest), 12345)
        assert store.put_file(source, digest=given) == (digest, size)
        assert store.get_bytes(digest) == source.read_bytes()
    assert len(_quarantined(root, digest)) == 2


def test_put_file_still_refuses_a_file_that_does_not_match_an_intact_object(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "s", small_objects=0)
    digest = store.put_bytes(b"the real content")
    liar = tmp_path / "liar.txt"
    liar.write_bytes(b"other content, other size")
    with pytest.raises(IntegrityError, match=r"liar\.txt has 25 bytes but object"):
        store.put_file(liar, digest=digest)
    assert store.get_bytes(digest) == b"the real content"


def test_put_files_repairs_corrupt_objects_it_reads_again(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = LocalStore(root)
    folder = tmp_path / "src"
    folder.mkdir()
    files = {
        "small": os.urandom(2 * KIB),
        "big": os.urandom(2 * MIB),
        **{f"m{i}": os.urandom(30 * KIB) for i in range(8)},
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    items = [(folder / name, None) for name in files]
    digests = {name: d for name, (d, _) in zip(files, store.put_files(items), strict=True)}
    _flip_row(root, digests["small"])
    _flip_file(store.local_path(digests["big"]), 5)
    _flip_segment(root, digests["m3"])
    assert [d for d, _ in store.put_files(items)] == list(digests.values())
    for name, digest in digests.items():
        assert store.get_bytes(digest) == files[name]
    assert verify_store(store).ok
    assert len(_quarantined(root, digests["small"])) == 1
    assert len(_quarantined(root, digests["m3"])) == 1


def test_put_files_with_given_digests_checks_sizes_and_repairs_after_a_read(
    tmp_path: Path,
) -> None:
    """The stat-cache path of source observation: sizes only (ADR 0011)."""
    root = tmp_path / "s"
    store = LocalStore(root, small_objects=0)
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(2 * MIB))
    digest, size = digest_file(source)
    store.put_files([(source, digest)])
    path = store.local_path(digest)
    path.chmod(0o644)
    os.truncate(path, 1000)  # another size: seen and repaired at once
    assert store.put_files([(source, digest)]) == [(digest, size)]
    assert store.get_bytes(digest) == source.read_bytes()
    _flip_file(store.local_path(digest), 99)  # same size: not seen by the write...
    assert store.put_files([(source, digest)]) == [(digest, size)]
    with pytest.raises(IntegrityError):  # ...but by the next read, which quarantines it
        store.get_bytes(digest)
    assert store.put_files([(source, digest)]) == [(digest, size)]  # so the next write repairs
    assert store.get_bytes(digest) == source.read_bytes()


def test_quarantine_on_read_never_moves_a_repaired_object(tmp_path: Path) -> None:
    """A reader that read corrupt bytes must not move away the intact copy a writer put since."""
    root = tmp_path / "s"
    store = LocalStore(root, small_objects=0)
    data = os.urandom(100 * KIB)
    digest = store.put_bytes(data)
    path = store.local_path(digest)
    _flip_file(path, 3)
    stale = os.stat(path)
    other = LocalStore(root, small_objects=0)
    assert other.put_bytes(data) == digest  # repaired (the corrupt file is quarantined)
    store._loose.quarantine_file(digest, stale)  # the first reader's late quarantine
    assert store.get_bytes(digest) == data


# -- pickle ------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (type(self.marker).touch, (self.marker,))  # unpickling creates the marker


@pytest.mark.parametrize("small_objects", [0, 16 * KIB], ids=["loose", "pack"])
def test_a_tampered_pickle_object_is_refused_before_it_is_unpickled(
    tmp_path: Path, small_objects: int
) -> None:
    root = tmp_path / "s"
    store = LocalStore(root, small_objects=small_objects)
    registry = SerializerRegistry.with_builtins()
    record = registry.dump({1, 2, 3}, store, allow_pickle=True)
    assert record.serializer == "pickle"
    marker = tmp_path / "payload-ran"
    evil = pickle.dumps(_Payload(marker))
    if small_objects:
        with sqlite3.connect(root / "pack.db") as conn:
            conn.execute("UPDATE objects SET data = ? WHERE digest = ?", (evil, record.blob))
    else:
        path = store.local_path(record.blob)
        path.chmod(0o644)
        path.write_bytes(evil)
    with pytest.raises(IntegrityError, match=record.blob):
        registry.load(record, store)
    assert not marker.exists()
    assert _quarantined(root, record.blob) == [evil]
    assert digest_bytes(evil) != record.blob
