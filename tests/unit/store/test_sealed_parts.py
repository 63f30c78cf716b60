"""Sealing part by part while the store hashes and writes: the same bytes, checked the same way."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError, StoreError
from pipetrail.hashing import digest_bytes
from pipetrail.store import LocalStore
from pipetrail.store.encryption import (
    encrypt_buffer,
    encrypt_stream,
    iter_sealed,
    iter_sealed_file,
    sealed_size,
)
from pipetrail.store.memory import MemoryStore
from pipetrail.store.sealed import SealedStore, SealingKeys

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KEY = bytes(range(32))
CTX = b"blake3:object-1"
PREFIX = b"7" * 7
MIB = 1 << 20
CHUNK = 64 * 1024  # 32 chunks a part
PART = 2 * MIB


@pytest.fixture
def keys() -> SealingKeys:
    return SealingKeys.single(bytes(range(32)))


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _object_file(root: Path, digest: str) -> Path:
    hex_part = digest.removeprefix("blake3:")
    return root / hex_part[:2] / hex_part[2:]


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, PART - 1, PART, PART + 1, 2 * PART + CHUNK + 5, 3 * PART]
)
def test_the_parts_are_the_bytes_of_the_whole_buffer(size: int) -> None:
    data = os.urandom(size)
    whole = bytes(encrypt_buffer(memoryview(data), KEY, CTX, chunk_size=CHUNK, nonce_prefix=PREFIX))
    parts = iter_sealed(memoryview(data), KEY, CTX, chunk_size=CHUNK, nonce_prefix=PREFIX)
    # A part stays valid until the part after next is asked for.
    joined, previous = b"", None
    for part in parts:
        if previous is not None:
            joined += previous
        previous = bytes(part)
    joined += previous or b""
    assert joined == whole
    assert len(whole) == sealed_size(size, chunk_size=CHUNK)


def test_the_first_part_starts_with_what_comes_before() -> None:
    data = os.urandom(PART + 3)
    parts = list(
        bytes(p) for p in iter_sealed(memoryview(data), KEY, CTX, chunk_size=CHUNK, before=b"HEAD")
    )
    assert parts[0][:4] == b"HEAD"
    assert len(parts) == 2


def _chunks(data: bytes, size: int) -> Iterator[memoryview]:
    ring = [bytearray(size), bytearray(size)]
    for i, at in enumerate(range(0, len(data), size)):
        piece = data[at : at + size]
        buffer = ring[i % 2]
        buffer[: len(piece)] = piece
        yield memoryview(buffer)[: len(piece)]


def test_put_parts_stores_what_put_bytes_stores(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects", fsync=True)
    data = os.urandom(5 * MIB + 7)
    digest = store.put_parts(_chunks(data, MIB), len(data))
    assert digest == digest_bytes(data)
    assert store.get_bytes(digest) == data
    assert _object_file(tmp_path / "objects", digest).stat().st_mode & 0o777 == 0o444
    assert _files(tmp_path / "objects" / "tmp") == []
    # Again: the intact object is kept and the new file dropped.
    assert store.put_parts(_chunks(data, MIB), len(data)) == digest
    assert _files(tmp_path / "objects" / "tmp") == []
    # Small objects go where put_bytes puts them (the pack), parts joined.
    small = os.urandom(1000)
    assert store.put_parts(_chunks(small, 300), len(small)) == digest_bytes(small)
    assert store.get_bytes(digest_bytes(small)) == small


def test_put_parts_replaces_a_corrupt_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    data = os.urandom(3 * MIB)
    digest = store.put_bytes(data)
    path = _object_file(tmp_path / "objects", digest)
    path.chmod(0o644)
    path.write_bytes(b"x" + data[1:])
    assert store.put_parts(_chunks(data, MIB), len(data)) == digest
    assert path.read_bytes() == data
    assert len(_files(tmp_path / "objects" / "quarantine")) == 1


def test_put_parts_of_the_wrong_size_or_failing_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    data = os.urandom(3 * MIB)
    with pytest.raises(StoreError, match="expected"):
        store.put_parts(_chunks(data, MIB), len(data) + 1)
    assert not store.exists(digest_bytes(data))
    with pytest.raises(StoreError, match="expected"):
        store.put_parts(_chunks(data[:1000], 300), 999)
    assert not store.exists(digest_bytes(data[:1000]))

    def failing() -> Iterator[memoryview]:
        yield from _chunks(data[: 2 * MIB], MIB)
        raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        store.put_parts(failing(), len(data))
    assert _files(tmp_path / "objects" / "tmp") == []
    assert list(store.iter_digests()) == []


@pytest.mark.parametrize("chunk_size", [CHUNK, None])
def test_a_large_sealed_object_is_the_object_the_buffer_path_seals(
    tmp_path: Path, keys: SealingKeys, chunk_size: int | None
) -> None:
    """The on-disk format is unchanged: the same plaintext gives the same sealed object."""
    data = os.urandom(6 * MIB + 11)
    local = LocalStore(tmp_path / "objects")
    sealed = SealedStore(local, keys, chunk_size=chunk_size)
    digest = sealed.put_bytes(data)
    in_memory = SealedStore(MemoryStore(), keys, chunk_size=chunk_size)
    assert in_memory.put_bytes(data) == digest
    assert sealed.plain_digests[digest] == digest_bytes(data)
    assert local.verify(digest)
    assert SealedStore(LocalStore(tmp_path / "objects"), keys).get_bytes(digest) == data
    assert _files(tmp_path / "objects" / "tmp") == []


def test_a_changed_chunk_of_a_large_sealed_object_is_caught(
    tmp_path: Path, keys: SealingKeys
) -> None:
    data = os.urandom(4 * MIB)
    sealed = SealedStore(LocalStore(tmp_path / "objects"), keys)
    digest = sealed.put_bytes(data)
    path = _object_file(tmp_path / "objects", digest)
    raw = bytearray(path.read_bytes())
    raw[3 * MIB] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        SealedStore(LocalStore(tmp_path / "objects"), keys).get_bytes(digest)


@pytest.mark.parametrize("size", [0, 1, CHUNK, PART - 1, PART, 2 * PART, 2 * PART + CHUNK + 5])
def test_a_file_sealed_part_by_part_is_the_stream(size: int) -> None:
    data = os.urandom(size)
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, KEY, CTX, chunk_size=CHUNK, nonce_prefix=PREFIX)
    parts = iter_sealed_file(
        io.BufferedReader(io.BytesIO(data), buffer_size=1000),  # short reads
        KEY,
        CTX,
        chunk_size=CHUNK,
        nonce_prefix=PREFIX,
        before=b"HEAD",
    )
    assert b"".join(bytes(p) for p in parts) == b"HEAD" + out.getvalue()


@pytest.mark.parametrize("chunk_size", [CHUNK, None])
def test_a_large_file_is_sealed_to_the_object_the_temp_file_path_makes(
    tmp_path: Path, keys: SealingKeys, chunk_size: int | None
) -> None:
    data = os.urandom(5 * MIB + 3)
    path = tmp_path / "table.parquet"
    path.write_bytes(data)
    local = LocalStore(tmp_path / "objects")
    sealed = SealedStore(local, keys, chunk_size=chunk_size)
    blob, size = sealed.put_file(path, digest=digest_bytes(data))
    # Over a store without put_parts the file goes through a ciphertext temp file.
    assert SealedStore(MemoryStore(), keys, chunk_size=chunk_size).put_file(path) == (blob, size)
    assert sealed.put_bytes(data) == blob
    assert local.size(blob) == size
    assert local.verify(blob)
    assert sealed.plain_digests[blob] == digest_bytes(data)
    assert SealedStore(LocalStore(tmp_path / "objects"), keys).get_bytes(blob) == data
    assert _files(tmp_path / "objects" / "tmp") == []


def test_a_file_that_changed_while_it_was_sealed_stores_nothing(
    tmp_path: Path, keys: SealingKeys
) -> None:
    first, now = os.urandom(3 * MIB), os.urandom(3 * MIB)
    local = LocalStore(tmp_path / "objects")
    sealed = SealedStore(local, keys)
    with pytest.raises(IntegrityError, match="changed while it was sealed"):
        # The first pass hashed `first`; the second reads what the file holds now.
        sealed._seal_parts(
            local.put_parts, io.BytesIO(now), digest_bytes(first), len(first), "table.csv"
        )
    assert list(local.iter_digests()) == []
    assert _files(tmp_path / "objects" / "tmp") == []
    assert sealed.plain_digests == {}


# The sealed objects of fixed content under a fixed key, pinned: every path that seals
# (in one buffer, part by part from memory or from a file, through a temp file) writes
# these bytes, and a change to any of them shows here.
_PINNED = {
    100: "blake3:8907fa581fa07b5ae2caf7bbd499e1268fe5a19da52ae94dd411494a3d975ad0",
    3 * MIB + 7: "blake3:86b905940f56e523057ef4741c42ee695259c80904c5c7d4a124979ba78e61c5",
}


@pytest.mark.parametrize("size", sorted(_PINNED))
def test_the_sealed_bytes_are_pinned(tmp_path: Path, keys: SealingKeys, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    local = SealedStore(LocalStore(tmp_path / "objects"), keys)
    found = {
        "put_bytes": local.put_bytes(data),
        "put_file": local.put_file(path)[0],
        "put_bytes, no put_parts": SealedStore(MemoryStore(), keys).put_bytes(data),
        "put_file, no put_parts": SealedStore(MemoryStore(), keys).put_file(path)[0],
    }
    assert found == dict.fromkeys(found, _PINNED[size])
