"""Ed25519 signing keys of the people and service accounts that act on a project.

A key pair is made by :func:`create_key`: the private key is written to the key folder
(``$PIPETRAIL_HOME/keys/NAME.key``, PKCS #8 PEM, optionally encrypted with a passphrase,
mode ``0600`` in a ``0700`` folder, written whole or not at all), and the public key is
returned as text, ``ed25519:`` and the 32 raw bytes in base64. That text is what a project
records for a user; a key is known by its id, ``ed25519:`` and the first 16 hex digits of
the BLAKE3 digest of the raw public key.

What gets signed is never a free-form string: :func:`signing_message` puts a fixed domain
prefix and the kind of act before the canonical JSON of its content, so a signature on one
kind of act (an approval) can never be replayed as another (a rollback).

The key folder is ``$PIPETRAIL_HOME`` when set, else ``$XDG_CONFIG_HOME/pipetrail``, else
``~/.config/pipetrail``: scripts and tests act as several people by pointing
``PIPETRAIL_HOME`` at several folders. Imports ``cryptography`` lazily.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.errors import IdentityError
from pipetrail.hashing import canonical_bytes, digest_bytes

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "KEY_PREFIX",
    "PublicKey",
    "Signer",
    "create_key",
    "key_folder",
    "load_signer",
    "adopt_key",
    "parse_public_key",
    "signing_message",
    "verify_signature",
]

KEY_PREFIX = "ed25519:"
_DOMAIN = b"pipetrail signature v1\n"
_NAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_PASSPHRASE_ENV = "PIPETRAIL_KEY_PASSPHRASE"  # noqa: S105 - a variable name


def key_folder() -> Path:
    """The folder holding this user's private keys and identity settings."""
    home = os.environ.get("PIPETRAIL_HOME")
    if home:
        return Path(home)
    config = os.environ.get("XDG_CONFIG_HOME")
    return (Path(config) if config else Path.home() / ".config") / "pipetrail"


def check_name(name: str) -> str:
    """Return ``name`` when it can name a user: lowercase letters, digits, ``.``, ``_``, ``-``.

    Raises:
        IdentityError: naming what is wrong and what is allowed.
    """
    if not _NAME.fullmatch(name):
        raise IdentityError(
            f"{name!r} cannot name a user: use 1-64 characters, lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter (for example 'alice' or 'ci-bot')"
        )
    return name


@dataclass(frozen=True)
class PublicKey:
    """A user's public key: its text form (what the ledger records) and its id."""

    text: str
    raw: bytes

    @functools.cached_property
    def key_id(self) -> str:
        """``ed25519:`` and the first 16 hex digits of the BLAKE3 digest of the raw key.

        Kept once computed: the fold of the governance events asks for the signer's key
        id twice per event.
        """
        return KEY_PREFIX + digest_bytes(self.raw).removeprefix("blake3:")[:16]


def parse_public_key(text: str) -> PublicKey:
    """Parse the text form of a public key (``ed25519:BASE64``).

    Raises:
        IdentityError: the text is not an Ed25519 public key, saying what it should be.
    """
    body = text.strip()
    if not body.startswith(KEY_PREFIX):
        raise IdentityError(
            f"{_shown(text)} is not a public key: it should start with {KEY_PREFIX!r}, as "
            "`pipetrail user key create` prints it"
        )
    try:
        raw = base64.b64decode(body.removeprefix(KEY_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise IdentityError(
            f"{_shown(text)} is not a public key: after {KEY_PREFIX!r} it should hold 32 "
            "bytes in base64, as `pipetrail user key create` prints it"
        )
    return PublicKey(KEY_PREFIX + base64.b64encode(raw).decode("ascii"), raw)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def signing_message(kind: str, content: Any) -> bytes:
    """The exact bytes signed for an act of ``kind`` (``approval``...) over ``content``."""
    return _DOMAIN + kind.encode("utf-8") + b"\n" + canonical_bytes(content)


@dataclass(frozen=True)
class Signer:
    """A loaded private key: signs messages as ``name``."""

    name: str
    public_key: PublicKey
    _private: Ed25519PrivateKey

    def sign(self, message: bytes) -> str:
        """Sign ``message``; return the signature in base64."""
        return base64.b64encode(self._private.sign(message)).decode("ascii")


def verify_signature(public_key: PublicKey, message: bytes, signature: str) -> bool:
    """Return whether ``signature`` (base64) is ``public_key``'s signature of ``message``."""
    from cryptography.exceptions import InvalidSignature

    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != 64:
        return False
    try:
        _verifier(public_key.raw).verify(raw, message)
    except InvalidSignature:
        return False
    return True


@functools.lru_cache(maxsize=256)
def _verifier(raw: bytes) -> Ed25519PublicKey:
    """The key object that checks signatures of the raw public key ``raw``.

    Made once per key rather than once per signature: ``audit verify`` checks thousands
    of signatures made by a handful of keys. Only the parsed key is kept; every
    signature is checked every time.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def _key_path(name: str, folder: Path | None) -> Path:
    return (folder or key_folder()) / "keys" / f"{check_name(name)}.key"


def create_key(
    name: str, *, passphrase: str | None = None, folder: Path | None = None, replace: bool = False
) -> PublicKey:
    """Make a key pair for ``name``; keep the private key in the key folder.

    Args:
        name: the user the key is for.
        passphrase: encrypts the private key when given (it is then needed to sign).
        folder: the key folder (default: :func:`key_folder`).
        replace: overwrite an existing key (for a rotation; the old one is kept as
            ``NAME.key.old-N``, so signatures it made can still be re-checked offline).

    Raises:
        IdentityError: the name is invalid, or a key exists and ``replace`` is False.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = _key_path(name, folder)
    if path.exists() and not replace:
        raise IdentityError(
            f"a key for {name!r} already exists at {path}; use `pipetrail user rotate-key` to "
            "replace it, or set PIPETRAIL_HOME to keep keys in another folder"
        )
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _write_private(path, pem, keep_old=replace)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return PublicKey(KEY_PREFIX + base64.b64encode(raw).decode("ascii"), raw)


def _write_private(path: Path, pem: bytes, *, keep_old: bool) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(pem)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if keep_old and path.exists():
            n = 1
            while path.with_name(f"{path.name}.old-{n}").exists():
                n += 1
            os.link(path, path.with_name(f"{path.name}.old-{n}"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def adopt_key(name: str, staged: Path, *, folder: Path | None = None) -> None:
    """Make the private key at ``staged`` ``name``'s key; keep the old one as ``.old-N``.

    ``staged`` was made by :func:`create_key` in another folder of the same file system.
    """
    path = _key_path(name, folder)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        n = 1
        while path.with_name(f"{path.name}.old-{n}").exists():
            n += 1
        os.link(path, path.with_name(f"{path.name}.old-{n}"))
    os.replace(staged, path)


def load_signer(name: str, *, passphrase: str | None = None, folder: Path | None = None) -> Signer:
    """Load ``name``'s private key from the key folder.

    The passphrase of an encrypted key comes from ``passphrase`` or the
    ``PIPETRAIL_KEY_PASSPHRASE`` environment variable.

    Raises:
        IdentityError: no key, a key readable by others, a wrong or missing passphrase,
            or a file that is not an Ed25519 private key; each says how to fix it.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = _key_path(name, folder)
    try:
        st = path.stat()
        pem = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(
            f"no signing key for {name!r} in {path.parent}; make one with `pipetrail user key "
            "create`, or point PIPETRAIL_HOME at the folder that holds it"
        ) from None
    if st.st_mode & 0o077:
        raise IdentityError(
            f"the signing key {path} can be read by other users (mode "
            f"{oct(st.st_mode & 0o777)}); run `chmod 600 {path}`"
        )
    secret = passphrase if passphrase is not None else os.environ.get(_PASSPHRASE_ENV)
    try:
        private = serialization.load_pem_private_key(
            pem, password=secret.encode("utf-8") if secret else None
        )
    except TypeError:
        raise IdentityError(
            f"the signing key of {name!r} is encrypted; give its passphrase "
            f"(or set {_PASSPHRASE_ENV})"
        ) from None
    except ValueError:
        hint = "a wrong passphrase" if secret else "not a private key"
        raise IdentityError(
            f"cannot read the signing key {path}: {hint}; check the passphrase, or make a new "
            "key with `pipetrail user rotate-key`"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise IdentityError(
            f"{path} is not an Ed25519 key; make one with `pipetrail user key create`"
        )
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Signer(name, PublicKey(KEY_PREFIX + base64.b64encode(raw).decode("ascii"), raw), private)
