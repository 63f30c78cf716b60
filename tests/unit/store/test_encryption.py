"""Chunked AES-256-GCM: round trips, and every way of tampering with a stream is caught."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetrail.errors import IntegrityError
from pipetrail.store.encryption import (
    HEADER_SIZE,
    decrypt_file,
    decrypt_in_place,
    decrypt_stream,
    encrypt_buffer,
    encrypt_stream,
    new_data_key,
    unwrap_key,
    wrap_key,
)

KEY = bytes(range(32))
CTX = b"blake3:object-1"
CHUNK = 64
SEALED = CHUNK + 16


def seal(data: bytes, key: bytes = KEY, context: bytes = CTX) -> bytes:
    out = io.BytesIO()
    written = encrypt_stream(io.BytesIO(data), out, key, context, chunk_size=CHUNK)
    assert written == len(out.getvalue())
    return out.getvalue()


def open_(data: bytes, key: bytes = KEY, context: bytes = CTX) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, key, context, what="object 1")
    return out.getvalue()


class Trickle(io.RawIOBase):
    """A source that returns at most 7 bytes a read, as a pipe may."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self.data.read(min(size, 7) if size >= 0 else 7)

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        piece = self.read(len(target))
        target[: len(piece)] = piece
        return len(piece)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=5 * CHUNK + 3))
def test_round_trip_of_any_size(data: bytes) -> None:
    sealed = seal(data)
    chunks = max(1, -(-len(data) // CHUNK))
    assert len(sealed) == HEADER_SIZE + len(data) + 16 * chunks
    assert open_(sealed) == data
    out = io.BytesIO()
    decrypt_stream(Trickle(sealed), out, KEY, CTX, what="x")  # type: ignore[arg-type]
    assert out.getvalue() == data
    # In memory: the same bytes as the stream for the same nonce prefix, both ways.
    prefix = sealed[8:HEADER_SIZE]
    again = io.BytesIO()
    encrypt_stream(io.BytesIO(data), again, KEY, CTX, chunk_size=CHUNK, nonce_prefix=prefix)
    assert again.getvalue() == sealed
    buffered = encrypt_buffer(
        memoryview(data), KEY, CTX, chunk_size=CHUNK, nonce_prefix=prefix, before=b"HEAD"
    )
    assert bytes(buffered) == b"HEAD" + sealed
    room = bytearray(b"HEAD" + sealed)
    size = decrypt_in_place(memoryview(room), 4, KEY, CTX, what="x")
    assert room[:size] == data
    # From a file, chunk by chunk into the result, however short the reads.
    assert decrypt_file(io.BytesIO(sealed), len(sealed), KEY, CTX, what="x") == data
    trickled = decrypt_file(Trickle(sealed), len(sealed), KEY, CTX, what="x")  # type: ignore[arg-type]
    assert trickled == data


def test_same_plaintext_encrypts_differently_each_time() -> None:
    assert seal(b"secret" * 50) != seal(b"secret" * 50)


def test_tampering_is_detected() -> None:
    data = bytes(range(256)) * 2  # 8 chunks of 64
    sealed = seal(data)
    body = sealed[HEADER_SIZE:]
    chunks = [body[i : i + SEALED] for i in range(0, len(body), SEALED)]
    header = sealed[:HEADER_SIZE]
    cases = {
        "flipped byte": sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:],
        "dropped last chunk": header + b"".join(chunks[:-1]),
        "dropped middle chunk": header + b"".join(chunks[:3] + chunks[4:]),
        "reordered": header + b"".join([chunks[1], chunks[0], *chunks[2:]]),
        "extended": header + b"".join([*chunks, chunks[-1]]),
        "truncated mid-chunk": sealed[:-5],
        "swapped from another object": header
        + seal(data)[HEADER_SIZE : HEADER_SIZE + SEALED]
        + b"".join(chunks[1:]),
        "header changed": sealed[:8] + bytes(7) + sealed[HEADER_SIZE:],
    }
    for name, bad in cases.items():
        with pytest.raises(IntegrityError, match="object 1") as caught:
            open_(bad)
        assert "cannot be trusted" in str(caught.value) or "header" in str(caught.value), name
        with pytest.raises(IntegrityError, match="object 1"):
            decrypt_in_place(memoryview(bytearray(bad)), 0, KEY, CTX, what="object 1")
        with pytest.raises(IntegrityError, match="object 1"):
            decrypt_file(io.BytesIO(bad), len(bad), KEY, CTX, what="object 1")
    with pytest.raises(IntegrityError, match="key or the object it belongs to is wrong"):
        open_(sealed, key=new_data_key())
    with pytest.raises(IntegrityError, match="does not decrypt"):
        open_(sealed, context=b"blake3:object-2")
    for junk in [b"", b"PTE1", b"not encrypted at all, just text"]:
        with pytest.raises(IntegrityError, match=r"not an encrypted object|corrupt"):
            open_(junk)
        with pytest.raises(IntegrityError, match=r"not an encrypted object|corrupt"):
            decrypt_in_place(memoryview(bytearray(junk)), 0, KEY, CTX, what="object 1")
    with pytest.raises(IntegrityError, match="key or the object it belongs to is wrong"):
        decrypt_in_place(memoryview(bytearray(sealed)), 0, new_data_key(), CTX, what="object 1")
    with pytest.raises(IntegrityError, match="key or the object it belongs to is wrong"):
        decrypt_file(io.BytesIO(sealed), len(sealed), new_data_key(), CTX, what="object 1")


def test_decrypt_file_refuses_a_source_that_is_not_the_size_it_was_said_to_be() -> None:
    sealed = seal(bytes(range(256)) * 2)
    # More bytes than announced (the file grew while it was read).
    with pytest.raises(IntegrityError, match="changed while it was read"):
        decrypt_file(io.BytesIO(sealed + b"x"), len(sealed), KEY, CTX, what="object 1")
    # Fewer (it shrank): the last chunk is short.
    with pytest.raises(IntegrityError, match="changed while it was read"):
        decrypt_file(io.BytesIO(sealed[:-40]), len(sealed), KEY, CTX, what="object 1")


def test_data_keys_are_wrapped_and_a_wrong_kek_fails_closed() -> None:
    kek, other = new_data_key(), new_data_key()
    data_key = new_data_key()
    wrapped = wrap_key(kek, data_key)
    assert data_key not in wrapped
    assert unwrap_key(kek, wrapped, what="object 1") == data_key
    with pytest.raises(IntegrityError, match="key encryption key is wrong"):
        unwrap_key(other, wrapped, what="object 1")
    with pytest.raises(IntegrityError, match="does not unwrap"):
        unwrap_key(kek, wrapped[:-1] + bytes([wrapped[-1] ^ 1]), what="object 1")


def test_a_large_buffer_seals_to_the_same_bytes_as_the_stream() -> None:
    """From 16 MiB the output is a map in huge pages; the bytes are the stream's."""
    import mmap
    import os

    data = os.urandom(17 * 1024 * 1024 + 5)
    out = io.BytesIO()
    prefix = b"7" * 7
    encrypt_stream(io.BytesIO(data), out, KEY, CTX, nonce_prefix=prefix)
    buffered = encrypt_buffer(memoryview(data), KEY, CTX, nonce_prefix=prefix, before=b"HEAD")
    try:
        assert isinstance(buffered, mmap.mmap) == hasattr(mmap, "MADV_HUGEPAGE")
        assert len(buffered) == 4 + len(out.getvalue())
        assert buffered[:4] == b"HEAD"
        assert buffered[4:] == out.getvalue()
    finally:
        if isinstance(buffered, mmap.mmap):
            buffered.close()
    sealed = out.getvalue()
    assert decrypt_file(io.BytesIO(sealed), len(sealed), KEY, CTX, what="x") == data
