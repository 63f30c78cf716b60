"""A per-user cache of governance events whose hash and signature were checked.

Verifying an Ed25519 signature costs tens of microseconds (more on a busy machine), and
every governance command folds every governance event. So each user keeps, in their own
key folder (``$PIPETRAIL_HOME/verified/``, mode 0700, beside their private key), the
fingerprints of the events they have fully verified: 16 bytes of the BLAKE3 digest of
every stored field of the event (sequence number, time, actor, kind, run id, payload
text, previous hash, hash) together with the raw public key it verified against. An event
whose fingerprint is there was re-hashed and its signature checked by this user before,
with this very key; any edit of any of its bytes, or a different key, gives another
fingerprint, and the event is checked in full again.

The cache is as trustworthy as the key folder it sits in: whoever can write it can also
read the private key next to it. It lives outside the project, so write access to the
database or the store gives no way to mark a forged event as verified.
``pipetrail audit verify`` never uses it: an audit checks every signature.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.ledger.events import Event

__all__ = ["VerifiedCache", "user_cache"]

_SIZE = 16


class VerifiedCache:
    """Fingerprints of verified governance events of one metadata store, for one user.

    Args:
        path: the cache file (created on the first :meth:`save` that has news).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: set[bytes] = set()
        self._new: list[bytes] = []
        with contextlib.suppress(OSError):
            data = path.read_bytes()
            usable = len(data) - len(data) % _SIZE
            self._known = {data[i : i + _SIZE] for i in range(0, usable, _SIZE)}

    @classmethod
    def for_store(cls, folder: Path, metadata_url: str) -> VerifiedCache:
        """The cache of the metadata store at ``metadata_url``, in the key folder ``folder``."""
        name = digest_bytes(metadata_url.encode("utf-8")).removeprefix("blake3:")[:32]
        return cls(folder / "verified" / f"{name}.bin")

    @staticmethod
    def fingerprint(event: Event) -> bytes:
        """What identifies one stored event (every stored field)."""
        fields = (
            str(event.seq), event.ts, event.actor, event.kind, event.run_id or "",
            event.payload_text, event.prev_hash, event.hash,
        )  # fmt: skip
        body = "\x00".join(fields).encode("utf-8")
        return bytes.fromhex(digest_bytes(body).removeprefix("blake3:")[: 2 * _SIZE])

    def known(self, fingerprint: bytes) -> bool:
        """Whether this user verified that event with that key before."""
        return fingerprint in self._known

    def add(self, fingerprint: bytes) -> None:
        """Remember an event just verified in full (kept by :meth:`save`)."""
        if fingerprint not in self._known:
            self._known.add(fingerprint)
            self._new.append(fingerprint)

    def save(self) -> None:
        """Append what was verified since loading (best effort: a cache may be lost)."""
        if not self._new:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, b"".join(self._new))
            finally:
                os.close(fd)
            self._new = []


def user_cache(metadata_url: str) -> VerifiedCache:
    """The acting user's cache for the metadata store at ``metadata_url``."""
    from pipetrail.governance.keys import key_folder

    return VerifiedCache.for_store(key_folder(), metadata_url)
