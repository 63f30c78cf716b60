"""Where key encryption keys come from: a local key file, an environment variable, a plugin.

A key encryption key (KEK) wraps the data keys of encrypted objects
(:mod:`pipetrail.store.encryption`); it never encrypts data itself and is never stored
in the project. A provider hands out its current KEK with an id (recorded beside each
wrapped data key) and, for rotation, the KEKs of older ids it still holds.

- :class:`KeyFile` (the default): a file of 32 random bytes in base64, mode ``0600``;
  a file others can read is refused. Rotation keeps the old keys in the same file, one
  per line, newest first.
- :class:`EnvironmentKey`: the KEK in base64 in an environment variable (CI secrets).
- A plugin: an object registered under the entry point group ``pipetrail.key_providers``
  (for a KMS), built by :func:`load_provider` from the name in ``pipetrail.toml``.

A key's id is ``NAME:`` and the first 16 hex digits of the BLAKE3 digest of the key,
so the ledger can say which key wrapped what without revealing it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pipetrail.errors import StoreError
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "EnvironmentKey",
    "KeyFile",
    "KeyProvider",
    "key_id",
    "load_provider",
]

ENTRY_POINT_GROUP = "pipetrail.key_providers"


def key_id(name: str, key: bytes) -> str:
    """The id of ``key`` under provider ``name`` (reveals nothing of the key)."""
    return f"{name}:{digest_bytes(key).removeprefix('blake3:')[:16]}"


@runtime_checkable
class KeyProvider(Protocol):
    """Hands out key encryption keys by id."""

    def current(self) -> tuple[str, bytes]:
        """The id and bytes of the KEK new data keys are wrapped with."""
        ...

    def get(self, kek_id: str) -> bytes:
        """The KEK of ``kek_id``.

        Raises:
            StoreError: this provider does not hold that key.
        """
        ...


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise StoreError(f"{where} does not hold a 256-bit key in base64")
    return key


def _missing(kek_id: str, where: str) -> StoreError:
    return StoreError(
        f"the key {kek_id} is not in {where}; encrypted objects wrapped with it cannot be read "
        "until that key is configured again (nothing was decrypted)"
    )


class KeyFile:
    """KEKs in a local file, newest first, one base64 key per line (mode 0600).

    Args:
        path: the key file.
    """

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _keys(self) -> list[bytes]:
        try:
            st = self.path.stat()
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise StoreError(
                f"no key file at {self.path}: create it (32 random bytes in base64, mode "
                "0600), or configure another key provider"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read the key file {self.path}: {exc}") from None
        if st.st_mode & 0o077:
            raise StoreError(
                f"the key file {self.path} can be read by other users (mode "
                f"{oct(st.st_mode & 0o777)}); run `chmod 600 {self.path}`"
            )
        keys = [_decode(line, f"key file {self.path}") for line in text.splitlines() if line]
        if not keys:
            raise StoreError(f"the key file {self.path} is empty")
        return keys

    def current(self) -> tuple[str, bytes]:
        """The newest key."""
        key = self._keys()[0]
        return key_id(self.name, key), key

    def get(self, kek_id: str) -> bytes:
        """The key of ``kek_id`` (current or older)."""
        for key in self._keys():
            if key_id(self.name, key) == kek_id:
                return key
        raise _missing(kek_id, f"the key file {self.path}")

    def create(self) -> str:
        """Write a new key file with one fresh key; return its id.

        Raises:
            StoreError: the file exists (a key is never replaced: use :meth:`rotate`).
        """
        if self.path.exists():
            raise StoreError(f"the key file {self.path} exists already; rotate it instead")
        key = os.urandom(32)
        self._write([key])
        return key_id(self.name, key)

    def rotate(self) -> tuple[str, str]:
        """Put a fresh key first, keeping the older ones; return (old id, new id)."""
        keys = self._keys()
        fresh = os.urandom(32)
        self._write([fresh, *keys])
        return key_id(self.name, keys[0]), key_id(self.name, fresh)

    def retire(self, *, keep: str) -> list[str]:
        """Remove every key but ``keep`` from the file; return the ids removed.

        Raises:
            StoreError: the file does not hold ``keep`` (nothing is removed).
        """
        keys = self._keys()
        kept = [k for k in keys if key_id(self.name, k) == keep]
        if not kept:
            raise _missing(keep, f"the key file {self.path}")
        self._write(kept[:1])
        return [key_id(self.name, k) for k in keys if key_id(self.name, k) != keep]

    def _write(self, keys: list[bytes]) -> None:
        text = "".join(base64.b64encode(k).decode("ascii") + "\n" for k in keys)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.write(fd, text.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


class EnvironmentKey:
    """One KEK in base64 in an environment variable.

    Args:
        variable: the variable's name.
    """

    name = "env"

    def __init__(self, variable: str = "PIPETRAIL_KEK") -> None:
        self.variable = variable

    def current(self) -> tuple[str, bytes]:
        """The key in the variable."""
        text = os.environ.get(self.variable)
        if not text:
            raise StoreError(
                f"the environment variable {self.variable} is not set; it must hold the key "
                "encryption key in base64 (32 bytes)"
            )
        key = _decode(text, f"the environment variable {self.variable}")
        return key_id(self.name, key), key

    def get(self, kek_id: str) -> bytes:
        """The key in the variable, when it is ``kek_id``."""
        found, key = self.current()
        if found != kek_id:
            raise _missing(kek_id, f"the environment variable {self.variable}")
        return key


def load_provider(name: str, settings: dict[str, Any], *, default_file: Path) -> KeyProvider:
    """Build the key provider ``name`` (``file``, ``env`` or a plugin's entry point name).

    Raises:
        StoreError: an unknown provider, or a plugin that does not build a provider.
    """
    if name == "file":
        path = settings.get("path")
        return KeyFile(default_file if path is None else _path(path))
    if name == "env":
        return EnvironmentKey(str(settings.get("variable", "PIPETRAIL_KEK")))
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise StoreError(
            f"unknown key provider {name!r}: use 'file', 'env', or install a plugin that "
            f"registers {name!r} under the entry point group {ENTRY_POINT_GROUP!r}"
        )
    provider = found[0].load()(**settings)
    if not isinstance(provider, KeyProvider):
        raise StoreError(f"the key provider plugin {name!r} does not provide current() and get()")
    return provider


def _path(value: Any) -> Path:
    from pathlib import Path

    return Path(os.path.expanduser(str(value)))
