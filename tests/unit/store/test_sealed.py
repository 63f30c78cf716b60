"""Sealed objects in a real local store: no plaintext on disk, tampering and wrong keys caught."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError, StoreError
from pipetrail.hashing import digest_bytes
from pipetrail.store import LocalStore
from pipetrail.store.sealed import SealedStore, SealingKeys

if TYPE_CHECKING:
    from pathlib import Path

SECRET = b"patient Zebulon Quartermain, born 1961-04-02; diagnosis: none of your business\n"
CHUNK = 64


def _files(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def keys() -> SealingKeys:
    return SealingKeys.single(bytes(range(32)))


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objects")


def test_round_trip_leaves_no_plaintext_and_no_plain_digest(
    tmp_path: Path, store: LocalStore, keys: SealingKeys
) -> None:
    sealed = SealedStore(store, keys, chunk_size=CHUNK)
    data = SECRET * 40  # many chunks
    digest = sealed.put_bytes(data)
    assert sealed.get_bytes(digest) == data
    with sealed.open(digest) as reader:
        assert reader.read() == data
    on_disk = _files(tmp_path / "objects")
    assert b"Zebulon" not in on_disk
    assert digest != digest_bytes(data)
    assert sealed.local_path(digest) is None
    # The store re-hashes the ciphertext without any key.
    assert store.verify(digest)


def test_sealing_is_deterministic_and_keyed(store: LocalStore, keys: SealingKeys) -> None:
    sealed = SealedStore(store, keys, chunk_size=CHUNK)
    first = sealed.put_bytes(SECRET)
    assert sealed.put_bytes(SECRET) == first  # equal content, one object
    plain = digest_bytes(SECRET)
    assert keys.keyed_digest(plain) == keys.keyed_digest(plain)
    assert keys.keyed_digest(plain) != plain
    other = SealingKeys.single(bytes(32))
    assert other.keyed_digest(plain) != keys.keyed_digest(plain)
    assert SealedStore(store, other, chunk_size=CHUNK).put_bytes(SECRET) != first


def test_put_file_seals_a_file_and_checks_its_digest(
    tmp_path: Path, store: LocalStore, keys: SealingKeys
) -> None:
    path = tmp_path / "patients.csv"
    path.write_bytes(SECRET * 3)
    sealed = SealedStore(store, keys, chunk_size=CHUNK)
    blob, size = sealed.put_file(path, digest=digest_bytes(SECRET * 3))
    assert size == store.size(blob)
    assert sealed.get_bytes(blob) == SECRET * 3
    assert sealed.plain_digests[blob] == digest_bytes(SECRET * 3)
    with pytest.raises(IntegrityError, match="changed while it was stored"):
        sealed.put_file(path, digest=digest_bytes(b"something else"))


def _forge(store: LocalStore, sealed_bytes: bytes) -> str:
    """Store bytes as a new object, named by their own digest (an attacker with write access)."""
    return store.put_bytes(sealed_bytes)


def test_a_changed_chunk_is_detected_with_a_clear_message(
    store: LocalStore, keys: SealingKeys
) -> None:
    sealed = SealedStore(store, keys, chunk_size=CHUNK)
    digest = sealed.put_bytes(SECRET * 10)
    raw = bytearray(store.get_bytes(digest))
    raw[60 + 15 + 100] ^= 1  # a byte inside chunk 1 (after the two headers)
    forged = _forge(store, bytes(raw))
    with pytest.raises(IntegrityError, match=r"sensitive artifact .* does not decrypt at chunk 1"):
        sealed.get_bytes(forged)
    with pytest.raises(IntegrityError, match="does not decrypt"), sealed.open(forged) as reader:
        reader.read()
    # Dropping the last chunk is caught too: the stream's end is authenticated.
    cut = _forge(store, bytes(raw[: 60 + 15 + 2 * (CHUNK + 16)]))
    with pytest.raises(IntegrityError, match="cut short"):
        sealed.get_bytes(cut)


def test_a_changed_byte_in_place_is_caught_by_the_store_first(
    tmp_path: Path, store: LocalStore, keys: SealingKeys
) -> None:
    sealed = SealedStore(store, keys, chunk_size=CHUNK)
    digest = sealed.put_bytes(SECRET * 200)  # big enough to be a loose file, not a pack row
    (path,) = [p for p in (tmp_path / "objects").rglob(digest.removeprefix("blake3:")[2:] + "*")]
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        sealed.get_bytes(digest)


def test_a_wrong_or_missing_key_fails_closed(store: LocalStore, keys: SealingKeys) -> None:
    digest = SealedStore(store, keys, chunk_size=CHUNK).put_bytes(SECRET)
    stranger = SealingKeys.single(bytes(32))
    with pytest.raises(StoreError, match=r"data key .* is not in the keyring"):
        SealedStore(store, stranger).get_bytes(digest)
    # Same id, other key bytes (a changed keyring): the object key does not unwrap.
    impostor = SealingKeys(current=keys.current, data_keys={keys.current: bytes(32)})
    with pytest.raises(IntegrityError, match="does not unwrap"):
        SealedStore(store, impostor).get_bytes(digest)


def test_a_plain_object_read_as_sealed_is_refused(store: LocalStore, keys: SealingKeys) -> None:
    digest = store.put_bytes(b"plain text " * 10)
    with pytest.raises(IntegrityError, match="not a sealed"):
        SealedStore(store, keys).get_bytes(digest)


def test_streaming_open_reads_in_pieces(store: LocalStore, keys: SealingKeys) -> None:
    sealed = SealedStore(store, keys, chunk_size=CHUNK)
    data = bytes(range(256)) * 50
    digest = sealed.put_bytes(data)
    out = io.BytesIO()
    with sealed.open(digest) as reader:
        while piece := reader.read(100):
            out.write(piece)
    assert out.getvalue() == data
