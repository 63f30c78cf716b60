"""Encryption at rest: AES-256-GCM in authenticated chunks, and wrapped data keys.

A stream is encrypted in chunks of at most ``chunk_size`` bytes (1 MiB by default), so
memory stays bounded whatever the object's size. The layout:

``header`` = ``b"PTE1"`` || chunk size (4 bytes, big-endian) || nonce prefix (7 random
bytes), then each chunk's ciphertext and 16-byte tag.

Chunk ``i`` is sealed with the nonce ``prefix || i (4 bytes, big-endian) || last`` where
``last`` is 1 for the final chunk and 0 otherwise (the STREAM construction), and with the
header and the caller's ``context`` as associated data. So a chunk cannot move
(its index is in the nonce), the stream cannot be cut short or extended at a chunk
boundary (only the final chunk opens with ``last = 1``), and chunks cannot be swapped
between objects (each object has its own random prefix, and the caller binds the object
through ``context``). An empty stream is one empty final chunk.

Data keys (32 random bytes per object or per project) are stored only wrapped by a key
encryption key (AES key wrap, RFC 3394, from ``cryptography``); a wrong key fails to
unwrap and nothing is decrypted. Imports ``cryptography`` lazily.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from typing import TYPE_CHECKING

from pipetrail.errors import IntegrityError, StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

__all__ = [
    "CHUNK_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "decrypt_file",
    "decrypt_in_place",
    "decrypt_stream",
    "encrypt_buffer",
    "encrypt_stream",
    "iter_decrypted",
    "iter_sealed",
    "iter_sealed_file",
    "new_data_key",
    "sealed_size",
    "unwrap_key",
    "wrap_key",
]

MAGIC = b"PTE1"
CHUNK_SIZE = 1 << 20
HEADER_SIZE = 4 + 4 + 7
_TAG = 16
_MAX_CHUNK = 1 << 26  # a header claiming more is not ours (and would cost that memory)
# From this size a result buffer is mapped in huge pages: a fresh page costs a fault on
# first touch, and where faults are dear (a virtual machine) 64 MiB of 4 KiB pages cost
# several times the encryption itself.
_HUGE_FROM = 16 << 20
_PART = 2 << 20  # plaintext bytes per part of iter_sealed


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return os.urandom(32)


def _read_full(src: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at the end of ``src`` (pipes return short reads)."""
    data = src.read(size)
    if len(data) in (0, size):
        return data
    parts = [data]
    missing = size - len(data)
    while missing:
        more = src.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 1 << 32:
        raise StoreError("an encrypted stream may hold at most 2**32 chunks")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _stream_header(chunk_size: int, nonce_prefix: bytes | None) -> tuple[bytes, bytes]:
    """The header of a sealed stream and its nonce prefix (random unless given).

    Raises:
        ValueError: the chunk size is out of range, or the prefix is not 7 bytes.
    """
    if not 0 < chunk_size <= _MAX_CHUNK:
        raise ValueError(f"chunk size must be between 1 and {_MAX_CHUNK} bytes")
    if nonce_prefix is not None and len(nonce_prefix) != 7:
        raise ValueError("a nonce prefix is 7 bytes")
    prefix = os.urandom(7) if nonce_prefix is None else nonce_prefix
    return MAGIC + struct.pack(">I", chunk_size) + prefix, prefix


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key: bytes,
    context: bytes,
    *,
    chunk_size: int = CHUNK_SIZE,
    nonce_prefix: bytes | None = None,
) -> int:
    """Encrypt everything ``src`` yields into ``dst``; return the bytes written.

    Args:
        src: the plaintext, read in chunks.
        dst: where the header and sealed chunks go.
        key: the 32-byte data key.
        context: bound into every chunk (for example the object's digest): decrypting
            needs the same bytes.
        chunk_size: plaintext bytes per chunk.
        nonce_prefix: 7 bytes to use instead of random ones. Only for a key that seals
            this one plaintext and no other (a key derived from the content, as
            :mod:`pipetrail.store.sealed` does): the same plaintext then gives the same
            ciphertext, and no nonce is ever reused with different data.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header, prefix = _stream_header(chunk_size, nonce_prefix)
    aad = header + context
    sealer = AESGCM(key)
    written = dst.write(header)
    index = 0
    current = _read_full(src, chunk_size)
    while True:
        following = _read_full(src, chunk_size) if len(current) == chunk_size else b""
        last = not following
        nonce = _nonce(prefix, index, last)
        written += dst.write(sealer.encrypt(nonce, current, aad))
        if last:
            return written
        current = following
        index += 1


def decrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes, context: bytes, *, what: str) -> int:
    """Decrypt a stream :func:`encrypt_stream` wrote; return the plaintext bytes written.

    Each chunk is written to ``dst`` only once it authenticates; when an error is raised,
    ``dst`` may hold the chunks before the bad one, and the caller must discard it.

    Raises:
        IntegrityError: not an encrypted stream, a changed, moved, missing or extra
            chunk, a wrong key or a wrong context; the message names ``what``.
    """
    written = 0
    for plain in iter_decrypted(src, key, context, what=what):
        written += dst.write(plain)
    return written


def iter_decrypted(src: BinaryIO, key: bytes, context: bytes, *, what: str) -> Iterator[bytes]:
    """Yield the plaintext of a stream :func:`encrypt_stream` wrote, chunk by chunk.

    A chunk is yielded only once it authenticates; the last one only once the end of
    the stream is confirmed, so a consumer that reads to the end has read it all.

    Raises:
        IntegrityError: as :func:`decrypt_stream`, when the bad chunk is reached.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = bytes(_read_full(src, HEADER_SIZE))
    if len(header) != HEADER_SIZE or header[:4] != MAGIC:
        raise IntegrityError(f"{what} is not an encrypted object (no pipetrail header)")
    (chunk_size,) = struct.unpack(">I", header[4:8])
    if not 0 < chunk_size <= _MAX_CHUNK:
        raise IntegrityError(f"{what} has a corrupt encryption header")
    aad = header + context
    opener = AESGCM(key)
    sealed = chunk_size + _TAG
    index = 0
    current = _read_full(src, sealed)
    while True:
        following = _read_full(src, sealed) if len(current) == sealed else b""
        last = not following
        if len(current) < _TAG:
            raise IntegrityError(f"{what} is truncated: chunk {index} is incomplete")
        try:
            plain = opener.decrypt(_nonce(header[8:], index, last), current, aad)
        except InvalidTag:
            raise _undecryptable(what, index, last=last) from None
        yield plain
        if last:
            return
        current = following
        index += 1


def encrypt_buffer(
    data: memoryview,
    key: bytes,
    context: bytes,
    *,
    chunk_size: int = CHUNK_SIZE,
    nonce_prefix: bytes | None = None,
    before: bytes = b"",
) -> bytearray | mmap.mmap:
    """Encrypt ``data`` held in memory into one buffer: what :func:`encrypt_stream` writes.

    The output's size is known in advance, so each chunk is sealed straight into its
    place (``encrypt_into``): no per-chunk objects, no join. ``before`` is put first (a
    caller's own header), so the caller needs no copy either. Same arguments, same bytes
    as :func:`encrypt_stream`.

    Returns:
        A ``bytearray``; from 16 MiB an anonymous private map in huge pages (where the
        kernel gives them on request), which the caller closes once done with it.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header, prefix = _stream_header(chunk_size, nonce_prefix)
    aad = header + context
    sealer = AESGCM(key)
    chunks = max(1, -(-len(data) // chunk_size))
    out = _room(len(before) + HEADER_SIZE + len(data) + chunks * _TAG)
    with memoryview(out) as view:
        at = len(before) + HEADER_SIZE
        view[:at] = before + header
        for index in range(chunks):
            piece = data[index * chunk_size : (index + 1) * chunk_size]
            end = at + len(piece) + _TAG
            nonce = _nonce(prefix, index, index == chunks - 1)
            sealer.encrypt_into(nonce, piece, aad, view[at:end])
            at = end
    return out


def sealed_size(size: int, *, chunk_size: int = CHUNK_SIZE) -> int:
    """The size of the stream that encrypts ``size`` bytes (header and tags included)."""
    return HEADER_SIZE + size + max(1, -(-size // chunk_size)) * _TAG


class _PartRing:
    """What sealing part by part takes: the sealer, and two output buffers used in turn.

    The first buffer starts with ``before`` and the stream's header; each holds the
    sealed chunks of one part (:data:`_PART` plaintext bytes, whole chunks). ``chunks``,
    when the stream's length is known, keeps them no larger than it needs.
    """

    def __init__(
        self,
        key: bytes,
        context: bytes,
        *,
        chunk_size: int,
        nonce_prefix: bytes | None,
        before: bytes,
        chunks: int | None = None,
    ) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        header, self._prefix = _stream_header(chunk_size, nonce_prefix)
        self._aad = header + context
        self._sealer = AESGCM(key)
        self.per_part = max(1, _PART // chunk_size)
        lead = before + header
        held = self.per_part if chunks is None else min(self.per_part, chunks)
        room = len(lead) + held * (chunk_size + _TAG)
        second = room if chunks is None or chunks > self.per_part else 0
        self._ring = [memoryview(bytearray(room)), memoryview(bytearray(second))]
        self._ring[0][: len(lead)] = lead
        self.start = len(lead)  # where chunk 0 goes in the first buffer

    def out(self, index: int) -> memoryview:
        """The buffer chunk ``index`` is sealed into."""
        return self._ring[(index // self.per_part) % 2]

    def seal(self, index: int, piece: memoryview, at: int, *, last: bool) -> int:
        """Seal chunk ``index`` into its buffer at ``at``; return where it ends there."""
        end = at + len(piece) + _TAG
        nonce = _nonce(self._prefix, index, last)
        self._sealer.encrypt_into(nonce, piece, self._aad, self.out(index)[at:end])
        return end


def iter_sealed(
    data: memoryview,
    key: bytes,
    context: bytes,
    *,
    chunk_size: int = CHUNK_SIZE,
    nonce_prefix: bytes | None = None,
    before: bytes = b"",
) -> Iterator[memoryview]:
    """Encrypt ``data`` held in memory part by part: the bytes of :func:`encrypt_buffer`.

    Each part holds whole sealed chunks (about 2 MiB; the first also ``before`` and the
    header), sealed straight into one of two buffers used in turn: a part is valid until
    the part after next is asked for, so a consumer must be done with it by then (as
    :func:`pipetrail.store.loose_stream.write_parts` is). Memory stays bounded whatever
    the size, and each part is still in the cache when the consumer hashes it.
    """
    chunks = max(1, -(-len(data) // chunk_size))
    ring = _PartRing(
        key, context, chunk_size=chunk_size, nonce_prefix=nonce_prefix, before=before, chunks=chunks
    )
    at = ring.start
    for first in range(0, chunks, ring.per_part):
        for index in range(first, min(first + ring.per_part, chunks)):
            piece = data[index * chunk_size : (index + 1) * chunk_size]
            at = ring.seal(index, piece, at, last=index == chunks - 1)
        yield ring.out(first)[:at]
        at = 0


def iter_sealed_file(
    src: BinaryIO,
    key: bytes,
    context: bytes,
    *,
    chunk_size: int = CHUNK_SIZE,
    nonce_prefix: bytes | None = None,
    before: bytes = b"",
) -> Iterator[memoryview]:
    """Encrypt what ``src`` yields part by part: the bytes of :func:`encrypt_stream`.

    As :func:`iter_sealed` (two output buffers used in turn, ``before`` first), reading
    the plaintext into two reused chunk buffers (``readinto``) until ``src`` ends.
    """
    ring = _PartRing(key, context, chunk_size=chunk_size, nonce_prefix=nonce_prefix, before=before)
    plain = [memoryview(bytearray(chunk_size)), memoryview(bytearray(chunk_size))]
    at, index = ring.start, 0
    got = _fill(src, plain[0])
    while True:
        following = _fill(src, plain[1]) if got == chunk_size else 0
        last = not following
        at = ring.seal(index, plain[0][:got], at, last=last)
        index += 1
        if last or index % ring.per_part == 0:
            yield ring.out(index - 1)[:at]
            if last:
                return
            at = 0
        plain.reverse()
        got = following


def _room(size: int) -> bytearray | mmap.mmap:
    """A writable buffer of ``size`` bytes: a large one in huge pages where there are."""
    if size < _HUGE_FROM or not hasattr(mmap, "MADV_HUGEPAGE"):
        return bytearray(size)
    from pipetrail.hashing.digest import page_buffer

    room = page_buffer(size)
    with contextlib.suppress(OSError):  # a kernel without them: ordinary pages
        room.madvise(mmap.MADV_HUGEPAGE)
    return room


def decrypt_in_place(
    buffer: memoryview, offset: int, key: bytes, context: bytes, *, what: str
) -> int:
    """Decrypt the stream at ``buffer[offset:]`` to the start of ``buffer``; return its size.

    Each chunk is decrypted (``decrypt_into``) into one reused chunk-sized scratch
    buffer, then moved to its place: the plaintext ends at or before where the next
    chunk's ciphertext starts, so nothing unread is overwritten, and no memory is
    allocated beyond the scratch. ``buffer[:size]`` is then the plaintext; on an error
    the buffer holds a mix and must be discarded.

    Raises:
        IntegrityError: as :func:`decrypt_stream` (not an encrypted stream, a changed,
            moved, missing or extra chunk, a wrong key or context).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = bytes(buffer[offset : offset + HEADER_SIZE])
    total = len(buffer)
    body = total - offset - HEADER_SIZE
    chunk_size, chunks = _stream_shape(header, body, what=what)
    sealed = chunk_size + _TAG
    aad = header + context
    opener = AESGCM(key)
    scratch = memoryview(bytearray(min(chunk_size, body - _TAG)))
    at = offset + HEADER_SIZE
    size = 0
    for index in range(chunks):
        last = index == chunks - 1
        end = total if last else at + sealed
        length = end - at - _TAG
        try:
            opener.decrypt_into(
                _nonce(header[8:], index, last), buffer[at:end], aad, scratch[:length]
            )
        except InvalidTag:
            raise _undecryptable(what, index, last=last) from None
        buffer[size : size + length] = scratch[:length]
        size += length
        at = end
    return size


def _stream_shape(header: bytes, body: int, *, what: str) -> tuple[int, int]:
    """``(chunk size, chunks)`` of a stream with ``header`` and ``body`` bytes after it.

    Raises:
        IntegrityError: not an encrypted stream, or its last chunk is incomplete.
    """
    if len(header) != HEADER_SIZE or header[:4] != MAGIC:
        raise IntegrityError(f"{what} is not an encrypted object (no pipetrail header)")
    (chunk_size,) = struct.unpack(">I", header[4:8])
    if not 0 < chunk_size <= _MAX_CHUNK:
        raise IntegrityError(f"{what} has a corrupt encryption header")
    sealed = chunk_size + _TAG
    chunks = max(1, -(-body // sealed))
    if body < _TAG or 0 < body % sealed < _TAG:
        raise IntegrityError(f"{what} is truncated: chunk {chunks - 1} is incomplete")
    return chunk_size, chunks


def _fill(src: BinaryIO, view: memoryview) -> int:
    """Read into all of ``view`` (fewer bytes only at the end of ``src``); return the count."""
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def decrypt_file(src: BinaryIO, size: int, key: bytes, context: bytes, *, what: str) -> bytes:
    """Decrypt the ``size``-byte stream ``src`` holds (from where it stands) into new bytes.

    One pass: each sealed chunk is read into one reused chunk-sized buffer and decrypted
    (``decrypt_into``) straight into its place in the result, whose size follows from
    ``size``. Nothing is returned unless every chunk authenticates and ``src`` held
    exactly ``size`` bytes.

    Raises:
        IntegrityError: as :func:`decrypt_stream` (not an encrypted stream, a changed,
            moved, missing or extra chunk, a wrong key or context), or ``src`` did not
            hold ``size`` bytes (it changed while it was read).
    """
    import io

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = bytes(_read_full(src, HEADER_SIZE))
    body = size - len(header)
    chunk_size, chunks = _stream_shape(header, body, what=what)
    plain = body - chunks * _TAG
    aad = header + context
    opener = AESGCM(key)
    holder = io.BytesIO()
    if plain:
        holder.seek(plain - 1)
        holder.write(b"\0")  # sizes the result once
    sealed = chunk_size + _TAG
    scratch = memoryview(bytearray(min(sealed, body)))
    with holder.getbuffer() as out:
        at = 0
        for index in range(chunks):
            last = index == chunks - 1
            length = body - index * sealed if last else sealed
            if _fill(src, scratch[:length]) != length:
                raise IntegrityError(f"{what} changed while it was read")
            try:
                opener.decrypt_into(
                    _nonce(header[8:], index, last),
                    scratch[:length],
                    aad,
                    out[at : at + length - _TAG],
                )
            except InvalidTag:
                raise _undecryptable(what, index, last=last) from None
            at += length - _TAG
    if src.read(1):
        raise IntegrityError(f"{what} changed while it was read")
    # CPython hands over BytesIO's own buffer when nothing else shares it: no copy.
    return holder.getvalue()


def wrap_key(kek: bytes, data_key: bytes) -> bytes:
    """Wrap a data key with a key encryption key (AES key wrap, RFC 3394)."""
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    return aes_key_wrap(kek, data_key)


def unwrap_key(kek: bytes, wrapped: bytes, *, what: str) -> bytes:
    """Unwrap a data key.

    Raises:
        IntegrityError: the key encryption key is not the one that wrapped it, or the
            wrapped key was changed; nothing can be decrypted with it.
    """
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

    try:
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        raise IntegrityError(
            f"the data key of {what} does not unwrap: the key encryption key is wrong (check "
            "the configured key provider) or the wrapped key was changed"
        ) from None


def _undecryptable(what: str, index: int, *, last: bool) -> IntegrityError:
    """The error for chunk ``index`` of ``what`` failing its authentication."""
    reason = (
        "it was cut short, extended or changed"
        if last or index
        else "it was changed, or the key or the object it belongs to is wrong"
    )
    return IntegrityError(
        f"{what} does not decrypt at chunk {index}: {reason}; it cannot be trusted"
    )
