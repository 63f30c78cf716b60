"""Sealed objects: sensitive content encrypted in the store, named so no guess confirms it.

A :class:`SealedStore` is a view over a real content store (local or S3): what is put
through it is encrypted before it reaches the store, and what is read through it is
decrypted and authenticated. The store itself only ever holds ciphertext, named (like
every object) by the BLAKE3 digest of the bytes it holds, so ``store verify``, copies and
garbage collection work on sealed objects without any key.

Keys (docs/adr/0023-keyed-digests.md): one project data key (:class:`SealingKeys`,
kept wrapped by the key encryption key in :mod:`pipetrail.store.keyring`) gives, by
BLAKE3 key derivation, a *digest key* and an *object secret*. For content whose plain
digest is ``d``:

* its keyed digest, the identity the ledger records, is ``blake3:`` + BLAKE3 keyed with
  the digest key over ``d`` (:meth:`SealingKeys.keyed_digest`);
* its object key is BLAKE3 keyed with the object secret over ``d``; the content is
  encrypted with it (:mod:`pipetrail.store.encryption`, nonce prefix derived from it),
  so equal content gives an equal sealed object and caching and deduplication work.

Sealed object layout: ``b"PTS1"`` || data key id (16 ASCII hex digits) || the object key
wrapped by the data key's wrapping key (40 bytes), then the encrypted stream, which binds
that header as its context. A reader unwraps the object key with the data key the header
names: no ledger lookup is needed to read a sealed object. Plaintext is never written to
disk by this module.
"""

from __future__ import annotations

import contextlib
import functools
import io
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypedDict, TypeVar, cast

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.hashing import Hasher, digest_bytes
from pipetrail.store.sealed_io import Decrypting, HashingReader, drain, filled, plain_digest
from pipetrail.store.verified import digest_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from pipetrail.store.base import ContentStore

__all__ = [
    "SEALED_MAGIC",
    "SealedStore",
    "SealingKeys",
    "data_key_id",
    "header_key_id",
    "is_sealed_object",
]

T = TypeVar("T")

SEALED_MAGIC = b"PTS1"
_ID_LEN = 16
_WRAPPED_LEN = 40
_HEADER_LEN = len(SEALED_MAGIC) + _ID_LEN + _WRAPPED_LEN
_READ = 1 << 20
_IN_MEMORY = 1 << 26  # a sealed object up to this size is sealed again in memory
_STREAM_FROM = 1 << 21  # from this size put_bytes seals into a store's put_parts, if it has one


class _Sealing(TypedDict):
    """How one object is sealed, whichever way: the same arguments give the same bytes."""

    chunk_size: int
    nonce_prefix: bytes
    before: bytes  # the sealed object's header, also the encrypted stream's context


def _derive(data_key: bytes, purpose: str) -> bytes:
    import blake3

    return bytes(blake3.blake3(data_key, derive_key_context=f"pipetrail 2026 {purpose}").digest())


def _keyed(key: bytes, data: bytes) -> bytes:
    import blake3

    return bytes(blake3.blake3(data, key=key).digest())


def data_key_id(data_key: bytes) -> str:
    """The id of a project data key (16 hex digits; reveals nothing of the key)."""
    return digest_bytes(_derive(data_key, "data key id")).removeprefix("blake3:")[:_ID_LEN]


@dataclass(frozen=True)
class SealingKeys:
    """The project data keys, unwrapped: the current one seals, any of them opens.

    Attributes:
        current: the id of the data key new content is sealed with.
        data_keys: data key id -> the key (32 bytes).
        digest_key: the key of keyed digests, when the keyring keeps one apart from the
            data keys (after a re-encryption, docs/adr/0025-reencryption.md); None: it is
            derived from the current data key.
    """

    current: str
    data_keys: dict[str, bytes] = field(repr=False)
    digest_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def single(cls, data_key: bytes) -> SealingKeys:
        """Keys made of one data key."""
        kid = data_key_id(data_key)
        return cls(current=kid, data_keys={kid: data_key})

    def _key(self, kid: str) -> bytes:
        try:
            return self.data_keys[kid]
        except KeyError:
            raise StoreError(
                f"the project data key {kid} is not in the keyring; the object sealed with it "
                "cannot be read (nothing was decrypted)"
            ) from None

    def digest_key_bytes(self) -> bytes:
        """The key of keyed digests (kept apart, or derived from the current data key)."""
        if self.digest_key is not None:
            return self.digest_key
        return _derive(self._key(self.current), "keyed digest")

    def keyed_digest(self, plain_digest: str) -> str:
        """The digest the ledger records for content whose plain digest is ``plain_digest``."""
        key = self.digest_key_bytes()
        return "blake3:" + _keyed(key, plain_digest.encode("ascii")).hex()

    def seal(self, plain_digest: str) -> tuple[bytes, bytes, bytes]:
        """``(header, object key, nonce prefix)`` to seal content of ``plain_digest``."""
        from pipetrail.store.encryption import wrap_key

        data_key = self._key(self.current)
        object_key = _keyed(_derive(data_key, "object key"), plain_digest.encode("ascii"))
        wrapped = wrap_key(_derive(data_key, "object key wrap"), object_key)
        header = SEALED_MAGIC + self.current.encode("ascii") + wrapped
        return header, object_key, _keyed(object_key, b"nonce prefix")[:7]

    def open_header(self, header: bytes, *, what: str) -> bytes:
        """The object key a sealed object's header holds.

        Raises:
            IntegrityError: not a sealed object, or its key does not unwrap.
            StoreError: the data key it names is not in the keyring.
        """
        from pipetrail.store.encryption import unwrap_key

        if len(header) != _HEADER_LEN or not header.startswith(SEALED_MAGIC):
            raise IntegrityError(f"{what} is not a sealed (encrypted) object")
        kid = header[4 : 4 + _ID_LEN].decode("ascii", "replace")
        wrapping = _derive(self._key(kid), "object key wrap")
        return unwrap_key(wrapping, header[4 + _ID_LEN :], what=what)


def header_key_id(header: bytes) -> str | None:
    """The id of the data key a sealed object's header names (None: not a sealed header)."""
    if len(header) < len(SEALED_MAGIC) + _ID_LEN or not header.startswith(SEALED_MAGIC):
        return None
    return header[len(SEALED_MAGIC) : len(SEALED_MAGIC) + _ID_LEN].decode("ascii", "replace")


def is_sealed_object(data: bytes) -> bool:
    """Whether ``data`` starts like a sealed object."""
    return data[: len(SEALED_MAGIC)] == SEALED_MAGIC


def _what(digest: str) -> str:
    return f"sensitive artifact {digest[:19]}"


class SealedStore:
    """A content store view that seals what is put and opens what is read.

    Args:
        inner: the real store (holds ciphertext only).
        keys: the project's sealing keys.
        chunk_size: plaintext bytes per authenticated chunk.

    Attributes:
        plain_digests: sealed object digest -> the plain digest of its content, for the
            objects put through this view (to compute keyed digests of what was stored).
    """

    def __init__(
        self,
        inner: ContentStore,
        keys: SealingKeys,
        *,
        chunk_size: int | None = None,
        moved: Mapping[str, str] | None = None,
    ) -> None:
        from pipetrail.store.encryption import CHUNK_SIZE

        self._inner = inner
        self._keys = keys
        self._chunk_size = chunk_size or CHUNK_SIZE
        self._moved: Mapping[str, str] = moved or {}
        self.plain_digests: dict[str, str] = {}

    def _at(self, digest: str) -> str:
        """The object holding ``digest``'s content now (a re-encryption replaces objects)."""
        return self._moved.get(digest, digest)

    @property
    def keys(self) -> SealingKeys:
        """The sealing keys."""
        return self._keys

    def _sealing(self, plain: str) -> tuple[bytes, _Sealing]:
        """The key that seals the content of plain digest ``plain``, and how it is sealed.

        The sealed object's header goes first and is the encrypted stream's context.
        """
        header, key, prefix = self._keys.seal(plain)
        return key, _Sealing(chunk_size=self._chunk_size, nonce_prefix=prefix, before=header)

    def _encrypt(self, src: BinaryIO, dst: BinaryIO, plain: str) -> None:
        from pipetrail.store.encryption import encrypt_stream

        header, key, prefix = self._keys.seal(plain)
        dst.write(header)
        encrypt_stream(src, dst, key, header, chunk_size=self._chunk_size, nonce_prefix=prefix)

    def put_bytes(self, data: bytes) -> str:
        """Seal ``data`` and store it; return the sealed object's digest.

        The plaintext is hashed once (its digest gives the object key). Over a store
        that takes an object in parts (a local store's ``put_parts``), from 2 MiB the
        ciphertext is then made part by part and hashed and written by the store as it
        comes, in the same pass; otherwise it is sealed into one buffer the store takes
        whole. Both give the same bytes.
        """
        from pipetrail.store.encryption import encrypt_buffer, iter_sealed, sealed_size

        plain = digest_of(data)
        key, how = self._sealing(plain)
        put_parts = getattr(self._inner, "put_parts", None)
        if put_parts is not None and len(data) >= _STREAM_FROM:
            # Sealed part by part into two reused buffers while the store hashes and
            # writes the previous part on another thread: one pass, bounded memory.
            parts = iter_sealed(memoryview(data), key, how["before"], **how)
            size = len(how["before"]) + sealed_size(len(data), chunk_size=self._chunk_size)
            digest = cast("str", put_parts(parts, size))
            self.plain_digests[digest] = plain
            return digest
        # Each chunk is sealed straight into its place in one buffer: no copies.
        sealed = encrypt_buffer(memoryview(data), key, how["before"], **how)
        try:
            digest = self._inner.put_bytes(cast("bytes", sealed))
        finally:
            if isinstance(sealed, mmap.mmap):
                sealed.close()  # stores copy or write what they keep
        self.plain_digests[digest] = plain
        return digest

    def put_file(self, path: Path, *, digest: str | None = None) -> tuple[str, int]:
        """Seal a file's content into the store; return the sealed object's digest and size.

        Raises:
            IntegrityError: ``digest`` is given and the file's content does not match it.
        """
        hasher = Hasher()
        with open(path, "rb") as first:
            while block := first.read(_READ):
                hasher.update(block)
        plain = hasher.digest()
        if digest is not None and plain != digest:
            raise IntegrityError(
                f"{path} changed while it was stored: it no longer hashes to {digest}"
            )
        put_parts = getattr(self._inner, "put_parts", None)
        with open(path, "rb") as raw:
            if put_parts is not None and hasher.size >= _STREAM_FROM:
                return self._seal_parts(
                    put_parts, cast("BinaryIO", raw), plain, hasher.size, str(path)
                )
            stored, size = self._put_stream(cast("BinaryIO", raw), plain, what=str(path))
        return stored, size

    def _seal_parts(
        self, put_parts: Callable[..., str], raw: BinaryIO, plain: str, size: int, what: str
    ) -> tuple[str, int]:
        """Seal ``size`` bytes ``raw`` yields into a store's ``put_parts`` in one pass.

        ``raw`` is hashed again as it is sealed; the object is named only if it still
        hashes to ``plain`` (else IntegrityError, and nothing is stored).
        """
        from pipetrail.store.encryption import iter_sealed_file, sealed_size

        key, how = self._sealing(plain)
        again = HashingReader(raw)

        def unchanged() -> None:
            if again.hasher.digest() != plain:
                raise IntegrityError(f"{what} changed while it was sealed into the store")

        parts = iter_sealed_file(cast("BinaryIO", again), key, how["before"], **how)
        total = len(how["before"]) + sealed_size(size, chunk_size=self._chunk_size)
        stored = put_parts(parts, total, unchanged)
        self.plain_digests[stored] = plain
        return stored, total

    def _put_stream(self, raw: BinaryIO, plain: str, *, what: str) -> tuple[str, int]:
        """Seal what ``raw`` yields (of plain digest ``plain``) through a ciphertext temp file."""
        import tempfile  # imports shutil: only when a stream is sealed

        fd, tmp = tempfile.mkstemp(prefix="pipetrail-sealed-")
        try:
            with os.fdopen(fd, "wb") as out:
                # Hashed again while it is encrypted: content that changed in between is
                # caught without a third read.
                again = HashingReader(raw)
                self._encrypt(cast("BinaryIO", again), out, plain)
            if again.hasher.digest() != plain:
                raise IntegrityError(f"{what} changed while it was sealed into the store")
            stored, size = self._inner.put_file(Path(tmp))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.plain_digests[stored] = plain
        return stored, size

    def reseal(self, blob: str, opener: SealingKeys) -> tuple[str, int]:
        """Seal again, with this view's keys, the sealed object ``blob`` that ``opener`` opens.

        Bounded memory: a large object is decrypted twice (to hash its plaintext while
        its ciphertext is verified, then to seal it again through a ciphertext temp
        file). Plaintext never reaches disk.

        Returns:
            The new sealed object's digest and size.

        Raises:
            NotFoundError: no such object.
            IntegrityError: it does not decrypt (changed, or a wrong key).
            StoreError: its data key is not among ``opener``'s.
        """
        old = SealedStore(self._inner, opener, chunk_size=self._chunk_size)
        if self._inner.size(blob) <= _IN_MEMORY:
            data = old.get_bytes(blob)
            stored = self.put_bytes(data)
            return stored, self._inner.size(stored)
        plain = old._each_chunk(blob, plain_digest)  # verified alongside, where it can be
        with old.open(blob) as reader:
            return self._put_stream(reader, plain, what=_what(blob))

    def put_files(
        self, items: Sequence[tuple[str | os.PathLike[str], str | None]]
    ) -> list[tuple[str, int]]:
        """Seal many files, one by one (see :meth:`put_file`)."""
        return [self.put_file(Path(path), digest=digest) for path, digest in items]

    def sync(self) -> None:
        """Make the sealed objects durable."""
        self._inner.sync()

    def _open_sealed(self, digest: str) -> tuple[BinaryIO, Iterator[bytes]]:
        from pipetrail.store.encryption import iter_decrypted

        what = _what(digest)
        raw = self._inner.open(self._at(digest))
        try:
            header = raw.read(_HEADER_LEN)
            key = self._keys.open_header(header, what=what)
            return raw, iter_decrypted(raw, key, header, what=what)
        except BaseException:
            raw.close()
            raise

    def get_bytes(self, digest: str) -> bytes:
        """The plaintext of a sealed object, once it is verified and every chunk authenticates.

        Over a store that can hand its bytes to a reader while it hashes them (a local
        store's ``read_with``), one pass: the object file is decrypted chunk by chunk
        into the result while another thread hashes the ciphertext, and the plaintext is
        returned only once both the ciphertext's digest and every chunk check out.
        Otherwise the store verifies the object when it is opened, and it is then read
        into one buffer and decrypted there. Either way: one allocation, as a plain read
        makes, and nothing is returned that was not verified.

        Raises:
            NotFoundError: no such object.
            IntegrityError: the object was changed, is not sealed, or the key is wrong.
            StoreError: its data key is not in the keyring.
        """
        from pipetrail.store.encryption import decrypt_in_place

        what = _what(digest)
        blob = self._at(digest)
        read_with = getattr(self._inner, "read_with", None)
        if read_with is not None:
            return cast("bytes", read_with(blob, functools.partial(self._decrypt, what=what)))
        with self._inner.open(blob) as raw:
            holder = filled(raw, what)
        with holder.getbuffer() as view:
            header = bytes(view[:_HEADER_LEN])
            key = self._keys.open_header(header, what=what)
            size = decrypt_in_place(view, _HEADER_LEN, key, header, what=what)
        holder.truncate(size)
        # CPython hands over BytesIO's own buffer when nothing else shares it: no copy.
        return holder.getvalue()

    def _decrypt(self, raw: BinaryIO, size: int, *, what: str) -> bytes:
        """The plaintext of the ``size``-byte sealed object ``raw`` holds, authenticated."""
        from pipetrail.store.encryption import decrypt_file

        header = raw.read(_HEADER_LEN)
        key = self._keys.open_header(header, what=what)
        return decrypt_file(raw, size - _HEADER_LEN, key, header, what=what)

    def open(self, digest: str) -> BinaryIO:
        """A stream of the plaintext, authenticated chunk by chunk as it is read."""
        raw, chunks = self._open_sealed(digest)
        return cast("BinaryIO", io.BufferedReader(Decrypting(raw, chunks), buffer_size=_READ))

    def local_path(self, digest: str) -> Path | None:
        """Always None: a sealed object has no plaintext on disk."""
        if not self._inner.exists(self._at(digest)):
            raise NotFoundError(f"no object {digest} in the store")
        return None

    def exists(self, digest: str) -> bool:
        """Whether the sealed object is stored."""
        return self._inner.exists(self._at(digest))

    def size(self, digest: str) -> int:
        """The sealed object's size in bytes."""
        return self._inner.size(self._at(digest))

    def iter_digests(self) -> Iterator[str]:
        """The digests of every stored object."""
        return self._inner.iter_digests()

    def verify(self, digest: str) -> bool:
        """Re-hash the sealed object (no key needed)."""
        return self._inner.verify(self._at(digest))

    def check_sealed(self, digest: str) -> None:
        """Decrypt the object to nowhere, authenticating every chunk.

        In one pass where the store can hash alongside (``read_with``), as
        :meth:`get_bytes` reads.

        Raises:
            IntegrityError: the object is corrupt, a chunk does not authenticate, or the
                key is wrong.
        """
        self._each_chunk(digest, drain)

    def _each_chunk(self, digest: str, use: Callable[[Iterator[bytes]], T]) -> T:
        """``use(the authenticated plaintext chunks)``, returned once the object is verified.

        Over a store with ``read_with`` the ciphertext is hashed while ``use`` runs, and
        its result comes back only if the digest matched: ``use`` keeps what it sees to
        itself (a digest, a count). Otherwise the store verifies the object first.
        """
        from pipetrail.store.encryption import iter_decrypted

        what = _what(digest)

        def reader(raw: BinaryIO, size: int) -> T:
            del size
            header = raw.read(_HEADER_LEN)
            key = self._keys.open_header(header, what=what)
            return use(iter_decrypted(raw, key, header, what=what))

        read_with = getattr(self._inner, "read_with", None)
        if read_with is not None:
            return cast("T", read_with(self._at(digest), reader))
        with self._inner.open(self._at(digest)) as raw:
            return reader(raw, 0)
