"""One-pass verified reads: a reader's result is handed back only once the bytes hash right.

Sealed reads of large objects decrypt the file while another thread hashes it
(``LocalStore.read_with``); these tests check that nothing a reader made from bad bytes
comes back, on the real store and with sealed objects of 16 MiB and more.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, BinaryIO

import pytest

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.store import LocalStore
from pipetrail.store.sealed import SealedStore, SealingKeys

if TYPE_CHECKING:
    from pathlib import Path

LARGE = 17 * 1024 * 1024  # above the size from which the file is hashed alongside


def _file(store: LocalStore, digest: str) -> Path:
    return store.root / digest.removeprefix("blake3:")[:2] / digest.removeprefix("blake3:")[2:]


def _overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)
    old = path.stat().st_mtime_ns - 10 * 10**9  # old enough to be trusted by stat
    os.utime(path, ns=(old, old))


def _whole(raw: BinaryIO, size: int) -> bytes:
    return raw.read(size)


@pytest.fixture
def keys() -> SealingKeys:
    return SealingKeys.single(bytes(range(32)))


@pytest.mark.parametrize("size", [100, 40_000, LARGE])
def test_read_with_hands_back_what_the_reader_made(tmp_path: Path, size: int) -> None:
    store = LocalStore(tmp_path / "objects")
    data = os.urandom(size)
    digest = store.put_bytes(data)
    sizes: list[int] = []

    def reader(raw: BinaryIO, length: int) -> bytes:
        sizes.append(length)
        return raw.read()

    assert store.read_with(digest, reader) == data
    assert sizes == [size]
    with pytest.raises(NotFoundError):
        store.read_with("blake3:" + "0" * 64, reader)


def test_a_corrupt_large_file_gives_nothing_back_and_is_quarantined(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    data = os.urandom(LARGE)
    digest = store.put_bytes(data)
    changed = bytearray(data)
    changed[LARGE // 2] ^= 1
    _overwrite(_file(store, digest), bytes(changed))
    fresh = LocalStore(tmp_path / "objects")
    with pytest.raises(IntegrityError, match="is corrupt"):
        fresh.read_with(digest, _whole)
    assert not fresh.exists(digest)
    assert len(list((tmp_path / "objects" / "quarantine").iterdir())) == 1


def test_the_hash_verdict_comes_before_the_readers_own_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    digest = store.put_bytes(os.urandom(LARGE))
    _overwrite(_file(store, digest), os.urandom(LARGE))

    def failing(raw: BinaryIO, size: int) -> bytes:
        raw.read(size)
        raise IntegrityError("the reader's own complaint")

    with pytest.raises(IntegrityError, match="is corrupt"):
        LocalStore(tmp_path / "objects").read_with(digest, failing)


def test_a_file_changed_while_it_is_read_is_read_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    data = os.urandom(LARGE)
    digest = store.put_bytes(data)
    path = _file(store, digest)
    calls: list[int] = []

    def touching(raw: BinaryIO, size: int) -> bytes:
        calls.append(size)
        if len(calls) == 1:
            os.utime(path, ns=(1, 1))  # same bytes, another signature
        return raw.read(size)

    assert LocalStore(tmp_path / "objects").read_with(digest, touching) == data
    assert len(calls) == 2


def test_get_bytes_of_a_file_touched_while_it_is_read_reads_it_again_from_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipetrail.store import loose_read as loose_read_module

    store = LocalStore(tmp_path / "objects")
    data = os.urandom(LARGE)
    digest = store.put_bytes(data)
    path = _file(store, digest)
    real_digest_fd = loose_read_module.digest_fd
    hashed: list[int] = []

    def touching(fd: int) -> tuple[str, int]:
        hashed.append(fd)
        if len(hashed) == 1:
            os.utime(path, ns=(1, 1))  # same bytes, another signature
        return real_digest_fd(fd)

    monkeypatch.setattr(loose_read_module, "digest_fd", touching)
    assert LocalStore(tmp_path / "objects").get_bytes(digest) == data
    assert len(hashed) == 1  # then the bytes read again were hashed themselves
    assert not (tmp_path / "objects" / "quarantine").exists()


def test_large_sealed_objects_round_trip_in_one_pass(tmp_path: Path, keys: SealingKeys) -> None:
    inner = LocalStore(tmp_path / "objects")
    data = os.urandom(LARGE + 12345)
    digest = SealedStore(inner, keys).put_bytes(data)
    assert SealedStore(LocalStore(tmp_path / "objects"), keys).get_bytes(digest) == data
    empty = SealedStore(inner, keys).put_bytes(b"")
    assert SealedStore(LocalStore(tmp_path / "objects"), keys).get_bytes(empty) == b""


def test_a_valid_sealed_object_under_another_name_is_refused(
    tmp_path: Path, keys: SealingKeys
) -> None:
    """Every chunk would authenticate (same key): only the digest of the name catches it."""
    inner = LocalStore(tmp_path / "objects")
    sealed = SealedStore(inner, keys)
    first = sealed.put_bytes(os.urandom(LARGE))
    second = sealed.put_bytes(os.urandom(LARGE))
    shutil.copyfile(_file(inner, second), tmp_path / "second")
    _overwrite(_file(inner, first), (tmp_path / "second").read_bytes())
    with pytest.raises(IntegrityError, match=f"Object {first} is corrupt"):
        SealedStore(LocalStore(tmp_path / "objects"), keys).get_bytes(first)


def test_a_changed_byte_of_a_large_sealed_object_is_caught(
    tmp_path: Path, keys: SealingKeys
) -> None:
    inner = LocalStore(tmp_path / "objects")
    digest = SealedStore(inner, keys).put_bytes(os.urandom(LARGE))
    path = _file(inner, digest)
    raw = bytearray(path.read_bytes())
    raw[LARGE // 3] ^= 1
    _overwrite(path, bytes(raw))
    with pytest.raises(IntegrityError, match="is corrupt"):
        SealedStore(LocalStore(tmp_path / "objects"), keys).get_bytes(digest)


def test_a_large_sealed_object_with_a_wrong_key_fails_closed(
    tmp_path: Path, keys: SealingKeys
) -> None:
    inner = LocalStore(tmp_path / "objects")
    digest = SealedStore(inner, keys).put_bytes(os.urandom(LARGE))
    with pytest.raises(StoreError, match="is not in the keyring"):
        SealedStore(inner, SealingKeys.single(bytes(32))).get_bytes(digest)
    impostor = SealingKeys(current=keys.current, data_keys={keys.current: bytes(32)})
    with pytest.raises(IntegrityError, match="does not unwrap"):
        SealedStore(LocalStore(tmp_path / "objects"), impostor).get_bytes(digest)
    assert inner.verify(digest)  # a wrong key quarantines nothing


def test_peek_reads_the_start_of_an_object_wherever_it_lives(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    small = store.put_bytes(b"small object kept in the pack")
    large = store.put_bytes(b"L" * 100 + os.urandom(LARGE))
    assert store.peek(small, 5) == b"small"
    assert store.peek(large, 100) == b"L" * 100
    assert store.peek(small, 1000) == b"small object kept in the pack"
    with pytest.raises(NotFoundError):
        store.peek("blake3:" + "1" * 64, 4)
    with pytest.raises(NotFoundError, match="not a digest"):
        store.peek("nonsense", 4)


def test_peek_does_not_verify_and_the_next_read_still_does(tmp_path: Path) -> None:
    """What peek returns decides nothing a full read would not check again."""
    store = LocalStore(tmp_path / "objects")
    data = os.urandom(LARGE)
    digest = store.put_bytes(data)
    changed = bytearray(data)
    changed[-1] ^= 1
    _overwrite(_file(store, digest), bytes(changed))
    fresh = LocalStore(tmp_path / "objects")
    assert fresh.peek(digest, 16) == data[:16]  # the start is intact; nothing was hashed
    with pytest.raises(IntegrityError, match="is corrupt"):
        fresh.get_bytes(digest)


def test_checking_and_resealing_a_large_sealed_object_verify_it_alongside(
    tmp_path: Path, keys: SealingKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipetrail.store.sealed as sealed_module

    inner = LocalStore(tmp_path / "objects")
    data = os.urandom(LARGE)
    digest = SealedStore(inner, keys).put_bytes(data)
    SealedStore(LocalStore(tmp_path / "objects"), keys).check_sealed(digest)
    # Sealed again through a temp file (the path of objects above 64 MiB).
    monkeypatch.setattr(sealed_module, "_IN_MEMORY", 1 << 20)
    other = SealingKeys.single(bytes(range(1, 33)))
    again, _ = SealedStore(LocalStore(tmp_path / "objects"), other).reseal(digest, keys)
    assert again == SealedStore(inner, other).put_bytes(data)  # the same plaintext digest
    # A changed byte: the check and the re-sealing refuse it, naming the corruption.
    path = _file(inner, again)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    _overwrite(path, bytes(raw))
    with pytest.raises(IntegrityError, match="is corrupt"):
        SealedStore(LocalStore(tmp_path / "objects"), other).check_sealed(again)
    forged = inner.put_bytes(bytes(raw))  # the changed bytes under their own digest
    with pytest.raises(IntegrityError, match="does not decrypt"):
        SealedStore(LocalStore(tmp_path / "objects"), keys).reseal(forged, other)
