"""Digests: spelling, files (small and memory-mapped), incremental hashing."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import pytest
from blake3 import blake3

from pipetrail.hashing import (
    DIGEST_ALGORITHM,
    Hasher,
    digest_bytes,
    digest_file,
    digest_value,
    is_digest,
)
from pipetrail.hashing import digest as digest_module
from pipetrail.hashing.digest import DIGEST_PREFIX, hex_of

if TYPE_CHECKING:
    from pathlib import Path

_DIGEST_FORMAT = re.compile(r"blake3:[0-9a-f]{64}")

# BLAKE3 of the empty input, from the BLAKE3 reference test vectors.
_EMPTY = "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def _pseudo_random(size: int, seed: int = 7) -> bytes:
    # Deterministic, non-repeating-looking content (a repeated byte would hide chunking bugs).
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += blake3(seed.to_bytes(4, "big") + counter.to_bytes(8, "big")).digest(length=1 << 16)
        counter += 1
    return bytes(out[:size])


# -- format -------------------------------------------------------------------------------


def test_algorithm_and_prefix() -> None:
    assert DIGEST_ALGORITHM == "blake3"
    assert DIGEST_PREFIX == "blake3:"


def test_digest_bytes_format() -> None:
    digest = digest_bytes(b"hello")
    assert _DIGEST_FORMAT.fullmatch(digest)
    assert digest == "blake3:" + blake3(b"hello").hexdigest()


def test_digest_of_empty_input_matches_reference_vector() -> None:
    assert digest_bytes(b"") == _EMPTY


def test_digest_bytes_accepts_bytearray_and_memoryview() -> None:
    data = b"some bytes"
    assert digest_bytes(bytearray(data)) == digest_bytes(data)
    assert digest_bytes(memoryview(data)) == digest_bytes(data)


def test_different_bytes_give_different_digests() -> None:
    assert digest_bytes(b"a") != digest_bytes(b"b")


def test_digest_value_format_and_determinism() -> None:
    first = digest_value({"a": 1, "b": [1, 2]})
    assert _DIGEST_FORMAT.fullmatch(first)
    assert digest_value({"b": [1, 2], "a": 1}) == first
    assert digest_value({"a": 1, "b": [2, 1]}) != first


def test_digest_value_is_not_digest_of_plain_json() -> None:
    # The version tag is hashed too, so a value and its JSON text never share a digest.
    assert digest_value("x") != digest_bytes(b'"x"')


@pytest.mark.parametrize(
    "text",
    [
        _EMPTY,
        digest_bytes(b"x"),
        "blake3:" + "0" * 64,
    ],
)
def test_is_digest_accepts_complete_digests(text: str) -> None:
    assert is_digest(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "blake3:",
        "blake3:" + "a" * 63,
        "blake3:" + "a" * 65,
        "blake3:" + "A" * 64,
        "blake3:" + "g" * 64,
        "sha256:" + "a" * 64,
        "BLAKE3:" + "a" * 64,
        "a" * 64,
        " blake3:" + "a" * 64,
        "blake3:" + "a" * 64 + " ",
        "blake3:" + "a" * 64 + "\n",
        "blake3:" + "a" * 32 + "\n" + "a" * 32,
    ],
    ids=[
        "empty",
        "prefix-only",
        "short",
        "long",
        "uppercase",
        "non-hex",
        "other-algorithm",
        "uppercase-algorithm",
        "no-prefix",
        "leading-space",
        "trailing-space",
        "trailing-newline",
        "embedded-newline",
    ],
)
def test_is_digest_rejects_malformed_text(text: str) -> None:
    assert not is_digest(text)


def test_hex_of() -> None:
    digest = digest_bytes(b"x")
    assert hex_of(digest) == blake3(b"x").hexdigest()
    with pytest.raises(ValueError, match="not a blake3 digest"):
        hex_of("sha256:" + "a" * 64)


# -- files --------------------------------------------------------------------------------


def test_digest_file_small(tmp_path: Path) -> None:
    data = _pseudo_random(10_000)
    path = tmp_path / "small.bin"
    path.write_bytes(data)
    assert digest_file(path) == (digest_bytes(data), len(data))


def test_digest_file_accepts_str_path(tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    path.write_bytes(b"abc")
    assert digest_file(str(path)) == (digest_bytes(b"abc"), 3)


def test_digest_file_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    assert digest_file(path) == (_EMPTY, 0)


@pytest.mark.parametrize(
    "size",
    [
        digest_module._PARALLEL_THRESHOLD - 1,
        digest_module._PARALLEL_THRESHOLD,
        digest_module._PARALLEL_THRESHOLD + 12_345,
        5 * 1024 * 1024,
    ],
    ids=["just-below-threshold", "at-threshold", "above-threshold", "5MiB"],
)
def test_digest_file_large_equals_digest_bytes(tmp_path: Path, size: int) -> None:
    data = _pseudo_random(size)
    path = tmp_path / "large.bin"
    path.write_bytes(data)
    assert digest_file(path) == (digest_bytes(data), size)


def test_large_files_are_read_ahead_not_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prove the >= 4 MiB branch really is taken (and the small branch is not), so the
    # equality test above covers both implementations; and that nothing is mapped.
    size = 3 * digest_module._PARALLEL_THRESHOLD + 1
    data = _pseudo_random(size)
    path = tmp_path / "large.bin"
    path.write_bytes(data)
    calls: list[int] = []
    real = digest_module._digest_large

    def spy(fd: int) -> tuple[str, int]:
        calls.append(fd)
        return real(fd)

    def no_mmap(self: blake3, target: str | os.PathLike[str]) -> blake3:
        raise AssertionError("files must not be memory-mapped (SIGBUS on truncation)")

    monkeypatch.setattr(digest_module, "_digest_large", spy)
    monkeypatch.setattr(blake3, "update_mmap", no_mmap)
    assert digest_file(path) == (digest_bytes(data), size)
    assert len(calls) == 1

    small = tmp_path / "small.bin"
    small.write_bytes(data[:100])
    assert digest_file(small) == (digest_bytes(data[:100]), 100)
    assert len(calls) == 1


def test_a_file_truncated_while_read_gives_what_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a memory map this would kill the process (SIGBUS); reads just end early.
    size = 4 * digest_module._PARALLEL_THRESHOLD
    path = tmp_path / "shrinking.bin"
    path.write_bytes(_pseudo_random(size))
    real_readv = os.readv
    reads = 0

    def readv_then_truncate(fd: int, buffers: list[Any]) -> int:
        nonlocal reads
        reads += 1
        if reads == 2:
            os.truncate(path, digest_module._PARALLEL_THRESHOLD + 10)
        return real_readv(fd, buffers)

    monkeypatch.setattr(os, "readv", readv_then_truncate)
    digest, read = digest_file(path)
    assert read == digest_module._PARALLEL_THRESHOLD + 10
    assert digest == digest_bytes(path.read_bytes())


def test_digest_file_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    first = digest_file(path)
    path.write_bytes(b"two")
    assert digest_file(path) != first


def test_digest_file_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        digest_file(tmp_path / "missing.bin")


# -- Hasher -------------------------------------------------------------------------------


def test_hasher_empty() -> None:
    hasher = Hasher()
    assert hasher.digest() == _EMPTY
    assert hasher.size == 0


@pytest.mark.parametrize("chunk", [1, 7, 1000, 65_536, 1 << 20])
def test_hasher_incremental_equals_one_shot(chunk: int) -> None:
    data = _pseudo_random(300_000)
    hasher = Hasher()
    for start in range(0, len(data), chunk):
        hasher.update(data[start : start + chunk])
    assert hasher.digest() == digest_bytes(data)
    assert hasher.size == len(data)


def test_hasher_accepts_bytearray_and_memoryview() -> None:
    hasher = Hasher()
    hasher.update(bytearray(b"ab"))
    hasher.update(memoryview(b"cd"))
    assert hasher.digest() == digest_bytes(b"abcd")
    assert hasher.size == 4


def test_hasher_digest_can_be_read_midway() -> None:
    hasher = Hasher()
    hasher.update(b"ab")
    assert hasher.digest() == digest_bytes(b"ab")
    hasher.update(b"cd")
    assert hasher.digest() == digest_bytes(b"abcd")


def test_hasher_order_matters() -> None:
    first = Hasher()
    first.update(b"ab")
    first.update(b"cd")
    second = Hasher()
    second.update(b"cd")
    second.update(b"ab")
    assert first.digest() != second.digest()
