"""Signing keys: made, stored privately, loaded, and used to sign and verify."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IdentityError
from pipetrail.governance.keys import (
    create_key,
    key_folder,
    load_signer,
    parse_public_key,
    signing_message,
    verify_signature,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_a_key_signs_and_its_public_key_verifies(tmp_path: Path) -> None:
    public = create_key("alice", folder=tmp_path)
    signer = load_signer("alice", folder=tmp_path)
    assert signer.public_key == public
    assert parse_public_key(public.text) == public
    message = signing_message("approval", {"request": "R1", "digest": "blake3:00"})
    signature = signer.sign(message)
    assert verify_signature(public, message, signature)
    # another message, another kind of act, another key, a mangled signature: all refused
    assert not verify_signature(public, signing_message("approval", {"request": "R2"}), signature)
    assert not verify_signature(
        public, signing_message("rollback", {"request": "R1", "digest": "blake3:00"}), signature
    )
    other = create_key("bob", folder=tmp_path)
    assert not verify_signature(other, message, signature)
    assert not verify_signature(public, message, signature[:-4] + "AAA=")
    assert not verify_signature(public, message, "not base64!")
    assert public.key_id.startswith("ed25519:")
    assert len(public.key_id) == len("ed25519:") + 16
    assert public.key_id != other.key_id


def test_the_private_key_is_private_and_never_silently_replaced(tmp_path: Path) -> None:
    create_key("alice", folder=tmp_path)
    path = tmp_path / "keys" / "alice.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    before = path.read_bytes()
    with pytest.raises(IdentityError, match="already exists"):
        create_key("alice", folder=tmp_path)
    assert path.read_bytes() == before
    rotated = create_key("alice", folder=tmp_path, replace=True)
    assert (tmp_path / "keys" / "alice.key.old-1").read_bytes() == before
    assert load_signer("alice", folder=tmp_path).public_key == rotated
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_signer("alice", folder=tmp_path)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_passphrase_protects_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPETRAIL_KEY_PASSPHRASE", raising=False)
    public = create_key("carol", folder=tmp_path, passphrase="correct horse")  # noqa: S106
    assert b"ENCRYPTED" in (tmp_path / "keys" / "carol.key").read_bytes()
    with pytest.raises(IdentityError, match="is encrypted; give its passphrase"):
        load_signer("carol", folder=tmp_path)
    with pytest.raises(IdentityError, match="wrong passphrase"):
        load_signer("carol", folder=tmp_path, passphrase="wrong")  # noqa: S106
    monkeypatch.setenv("PIPETRAIL_KEY_PASSPHRASE", "correct horse")
    assert load_signer("carol", folder=tmp_path).public_key == public


def test_the_key_folder_follows_pipetrail_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPETRAIL_HOME", str(tmp_path / "home-a"))
    assert key_folder() == tmp_path / "home-a"
    create_key("dave")
    assert (tmp_path / "home-a" / "keys" / "dave.key").exists()
    monkeypatch.delenv("PIPETRAIL_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert key_folder() == tmp_path / "xdg" / "pipetrail"
    with pytest.raises(IdentityError, match="no signing key for 'dave'"):
        load_signer("dave")


@pytest.mark.parametrize(
    "text",
    ["", "alice", "ed25519:", "ed25519:AAAA", "rsa:" + "A" * 44, "ed25519:" + "!" * 44],
)
def test_malformed_public_keys_are_refused(text: str) -> None:
    with pytest.raises(IdentityError, match="is not a public key"):
        parse_public_key(text)


@pytest.mark.parametrize("name", ["", "Alice", "1bob", "a b", "../x", "a" * 65])
def test_bad_user_names_are_refused_before_any_file_is_touched(tmp_path: Path, name: str) -> None:
    with pytest.raises(IdentityError, match="cannot name a user"):
        create_key(name, folder=tmp_path)
    assert not (tmp_path / "keys").exists()
    assert os.listdir(tmp_path) == []


def test_each_key_is_parsed_once_and_every_signature_is_still_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from pipetrail.governance import keys

    keys._verifier.cache_clear()
    made: list[bytes] = []
    real = Ed25519PublicKey.from_public_bytes

    def from_public_bytes(data: bytes) -> Ed25519PublicKey:
        made.append(data)
        return real(data)

    monkeypatch.setattr(Ed25519PublicKey, "from_public_bytes", from_public_bytes)
    public = create_key("alice", folder=tmp_path)
    signer = load_signer("alice", folder=tmp_path)
    messages = [signing_message("decision", {"n": n}) for n in range(5)]
    signatures = [signer.sign(m) for m in messages]
    for message, signature in zip(messages, signatures, strict=True):
        assert verify_signature(public, message, signature)
    # The key object is made once; a forged or misplaced signature still fails after it.
    assert made == [public.raw]
    assert not verify_signature(public, messages[0], signatures[1])
    assert not verify_signature(public, messages[1] + b" ", signatures[1])
    assert made == [public.raw]
    # The key id is kept once computed, and keys still compare by their text and bytes.
    assert public.key_id is public.key_id
    assert parse_public_key(public.text) == public
