"""Streams behind :class:`~pipetrail.store.sealed.SealedStore`: reading, decrypting, re-hashing."""

from __future__ import annotations

import contextlib
import io
import os
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from pipetrail.errors import IntegrityError
from pipetrail.hashing import Hasher

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Decrypting", "HashingReader", "drain", "filled", "plain_digest"]


def filled(raw: BinaryIO, what: str) -> io.BytesIO:
    """Everything ``raw`` holds, read into the buffer of a ``BytesIO`` (one allocation)."""
    try:
        size = os.fstat(raw.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        return io.BytesIO(raw.read())
    holder = io.BytesIO()
    if size:
        holder.seek(size - 1)
        holder.write(b"\0")  # sizes the buffer once (zero-filled)
    with holder.getbuffer() as view:
        got = 0
        while got < size:
            n = cast("io.RawIOBase", raw).readinto(view[got:])
            if not n:
                break
            got += n
    if got != size or raw.read(1):
        raise IntegrityError(f"{what} changed while it was read")
    return holder


class Decrypting(io.RawIOBase):
    """A read-only stream of plaintext, decrypted chunk by chunk as it is read."""

    def __init__(self, inner: BinaryIO, chunks: Iterator[bytes]) -> None:
        self._inner = inner
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, target: Any) -> int:
        """Fill ``target`` with the next plaintext bytes; 0 at the end."""
        view = memoryview(target).cast("B")
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        """Close the ciphertext stream too."""
        with contextlib.suppress(Exception):
            self._inner.close()
        super().close()


class HashingReader:
    """Reads from ``raw``, hashing what it hands out."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.hasher = Hasher()

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all, if negative)."""
        data = self._raw.read(size)
        self.hasher.update(data)
        return data

    def readinto(self, target: Any) -> int:
        """Read into ``target``; return the byte count (0 at the end)."""
        n: int = self._raw.readinto(target)  # type: ignore[attr-defined]
        self.hasher.update(memoryview(target)[:n])
        return n


def drain(chunks: Iterator[bytes]) -> None:
    """Consume ``chunks`` (each is authenticated as it comes)."""
    for _ in chunks:
        pass


def plain_digest(chunks: Iterator[bytes]) -> str:
    """The digest of the plaintext ``chunks`` make up."""
    hasher = Hasher()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.digest()
