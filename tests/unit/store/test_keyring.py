"""The project keyring: created private, keys from the configured provider, rotation."""

from __future__ import annotations

import base64
import json
import os
import stat
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError, StoreError
from pipetrail.store import LocalStore
from pipetrail.store.key_providers import EnvironmentKey
from pipetrail.store.keyring import (
    EncryptionSettings,
    begin_reencryption,
    finish_reencryption,
    open_keys,
    pending_reencryption,
    rotate_keys,
)
from pipetrail.store.sealed import SealedStore

if TYPE_CHECKING:
    from pathlib import Path


def _settings(root: Path, toml: str = "") -> EncryptionSettings:
    (root / "pipetrail.toml").write_text("[pipetrail]\n" + toml)
    return EncryptionSettings.load(root, root / ".pipetrail")


def test_first_write_creates_a_private_key_file_and_keyring(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(StoreError, match="no keyring"):
        open_keys(settings, create=False)
    keys = open_keys(settings, create=True)
    kek = tmp_path / ".pipetrail" / "private" / "kek"
    assert stat.S_IMODE(kek.stat().st_mode) == 0o600
    assert stat.S_IMODE(kek.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.keyring.stat().st_mode) == 0o600
    ring = json.loads(settings.keyring.read_text())
    assert keys.data_keys[keys.current] not in settings.keyring.read_bytes()
    assert ring["data_keys"][0]["id"] == keys.current
    assert open_keys(settings, create=False) == keys


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    open_keys(settings, create=True)
    os.chmod(settings.default_key_file, 0o644)
    with pytest.raises(StoreError, match=r"can be read by other users.*chmod 600"):
        open_keys(settings, create=False)


def test_env_provider_and_a_wrong_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, '[encryption]\nprovider = "env"\nvariable = "TEST_KEK"\n')
    monkeypatch.delenv("TEST_KEK", raising=False)
    with pytest.raises(StoreError, match="TEST_KEK is not set"):
        open_keys(settings, create=True)
    assert not settings.keyring.exists()  # nothing half-written
    monkeypatch.setenv("TEST_KEK", base64.b64encode(os.urandom(32)).decode())
    keys = open_keys(settings, create=True)
    monkeypatch.setenv("TEST_KEK", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(StoreError, match="does not hold"):
        open_keys(settings, create=False)
    del keys


def test_malformed_settings_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"encryption.provider must be a name"):
        _settings(tmp_path, "[encryption]\nprovider = 3\n")
    with pytest.raises(StoreError, match=r"unknown key\(s\) encryption.chmod"):
        _settings(tmp_path, '[encryption]\nchmod = "x"\n')


def test_rotation_rewraps_without_rewriting_data(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    keys = open_keys(settings, create=True)
    store = LocalStore(tmp_path / "objects")
    digest = SealedStore(store, keys).put_bytes(b"secret rows")
    before = settings.default_key_file.read_text()
    done = rotate_keys(settings)
    assert done.data_keys == [keys.current]
    assert done.new_kek not in done.old_keks
    assert done.retired
    after = settings.default_key_file.read_text()
    assert len(after.splitlines()) == 1  # the old key is gone
    assert before.splitlines()[0] != after.splitlines()[0]
    reopened = open_keys(settings, create=False)
    assert reopened == keys  # same data keys: digests and objects stay valid
    assert SealedStore(store, reopened).get_bytes(digest) == b"secret rows"


def test_rotation_with_the_wrong_old_key_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, '[encryption]\nprovider = "env"\nvariable = "NEW_KEK"\n')
    old = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("NEW_KEK", old)
    open_keys(settings, create=True)
    ring = settings.keyring.read_bytes()
    monkeypatch.setenv("NEW_KEK", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("OLD_KEK", base64.b64encode(os.urandom(32)).decode())  # wrong
    with pytest.raises(StoreError, match="does not hold"):
        rotate_keys(settings, old=EnvironmentKey("OLD_KEK"))
    assert settings.keyring.read_bytes() == ring
    monkeypatch.setenv("OLD_KEK", old)
    done = rotate_keys(settings, old=EnvironmentKey("OLD_KEK"))
    assert not done.retired
    assert open_keys(settings, create=False).current == done.data_keys[0]


def test_a_changed_keyring_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    open_keys(settings, create=True)
    ring = json.loads(settings.keyring.read_text())
    ring["data_keys"][0]["wrapped"] = base64.b64encode(os.urandom(40)).decode()
    settings.keyring.write_text(json.dumps(ring))
    with pytest.raises(IntegrityError, match="does not unwrap"):
        open_keys(settings, create=False)
    settings.keyring.write_text("{}")
    with pytest.raises(StoreError, match="not a pipetrail keyring"):
        open_keys(settings, create=False)


def test_reencryption_keeps_the_digest_key_and_retires_the_old_data_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    keys = open_keys(settings, create=True)
    store = LocalStore(tmp_path / "objects")
    old_blob = SealedStore(store, keys).put_bytes(b"secret rows")
    keyed = keys.keyed_digest("blake3:" + "ab" * 32)

    opener, sealing = begin_reencryption(settings)
    assert pending_reencryption(settings) == sealing.current != keys.current
    # Pending: the old key still seals, both open, keyed digests are unchanged.
    during = open_keys(settings, create=False)
    assert during.current == keys.current
    assert set(during.data_keys) == {keys.current, sealing.current}
    assert during.keyed_digest("blake3:" + "ab" * 32) == keyed
    new_blob, _ = SealedStore(store, sealing).reseal(old_blob, opener)
    assert new_blob != old_blob
    assert SealedStore(store, during).get_bytes(new_blob) == b"secret rows"
    # A rerun takes the same pending key.
    assert begin_reencryption(settings)[1].current == sealing.current
    # A KEK rotation in between wraps the pending key and the digest key too.
    rotate_keys(settings)

    assert finish_reencryption(settings) == [keys.current]
    after = open_keys(settings, create=False)
    assert set(after.data_keys) == {sealing.current} == {after.current}
    assert after.keyed_digest("blake3:" + "ab" * 32) == keyed
    assert SealedStore(store, after).get_bytes(new_blob) == b"secret rows"
    with pytest.raises(StoreError, match=f"data key {keys.current} is not in the keyring"):
        SealedStore(store, after).get_bytes(old_blob)
    with pytest.raises(StoreError, match="no re-encryption is under way"):
        finish_reencryption(settings)


def test_a_large_object_is_resealed_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipetrail.store.sealed as sealed_module

    monkeypatch.setattr(sealed_module, "_IN_MEMORY", 1000)  # take the streaming path
    settings = _settings(tmp_path)
    keys = open_keys(settings, create=True)
    store = LocalStore(tmp_path / "objects")
    data = os.urandom(50_000)
    blob = SealedStore(store, keys, chunk_size=4096).put_bytes(data)
    opener, sealing = begin_reencryption(settings)
    again, size = SealedStore(store, sealing, chunk_size=4096).reseal(blob, opener)
    assert size == store.size(again)
    # The same content sealed in memory gives the same object (deterministic sealing).
    assert SealedStore(store, sealing, chunk_size=4096).put_bytes(data) == again
    assert SealedStore(store, opener).get_bytes(again) == data


def test_a_keyring_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    open_keys(settings, create=True)
    ring = json.loads(settings.keyring.read_text())
    ring["version"] = 3
    settings.keyring.write_text(json.dumps(ring))
    with pytest.raises(StoreError, match="written by a newer pipetrail"):
        open_keys(settings, create=False)
