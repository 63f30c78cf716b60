"""The requests behind :class:`~pipetrail.store.s3.S3Store`: one prefix's objects, over obstore.

Owns :class:`S3Objects`, the transfer layer of the S3 store:

* names: ``PREFIX/objects/ab/cdef...`` for an object, ``PREFIX/quarantine/`` for the
  corrupt ones moved aside;
* requests: the bucket is checked once before the first one (a server that creates a
  missing bucket on the first write must not turn a typo into a new, empty store), and
  every client failure other than "absent" or "exists" becomes a one-line
  :class:`~pipetrail.errors.StoreError` (:func:`~pipetrail.store.s3_client.store_failure`);
* transfers: create-only puts, multipart with parts sent in parallel from 64 MiB; a file
  uploaded while it is hashed; whole, streamed and ranged reads; the move to the
  quarantine (a copy, then a delete); deletes batched 1,000 keys a request; the listing,
  a page at a time;
* the ETag memo: the ETag each object had when this process wrote it or hashed it
  intact. The server computes ETags and no client can set one, so an object whose ETag
  is still that one need not be read again to be trusted.

What counts as intact, and what is quarantined when, is the store's decision; nothing
here hashes what it hands out. obstore is imported on first use.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

from pipetrail.errors import NotFoundError
from pipetrail.hashing import Hasher, is_digest
from pipetrail.hashing.digest import hex_of
from pipetrail.store.s3_client import store_failure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from pathlib import Path

    from pipetrail.errors import StoreError
    from pipetrail.store.s3_gc import S3Control

__all__ = ["MULTIPART_FROM", "S3Objects"]

T = TypeVar("T")

MULTIPART_FROM = 64 * 1024 * 1024  # objects from this size go up in parallel parts
_CHUNK = 8 * 1024 * 1024  # the smallest piece a streamed read hands over
_PART = 16 * 1024 * 1024
_PARTS_IN_FLIGHT = 8
_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


class S3Objects:
    """The objects of one store in a bucket, through an obstore client; thread-safe.

    Args:
        client: the obstore store of the bucket.
        bucket: the bucket's name, for messages.
        prefix: the store's key prefix, ``""`` or ending with ``/``.
        endpoint: the server's URL, for messages (None: the default AWS endpoint).
        checked: the bucket is known to exist (no listing before the first request).
    """

    def __init__(
        self, client: Any, bucket: str, prefix: str, endpoint: str | None, *, checked: bool
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self._checked = checked
        self._etags: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- names -------------------------------------------------------------------------
    def key(self, digest: str) -> str:
        """The object's key; NotFoundError for something that is not a digest."""
        if not is_digest(digest):
            raise NotFoundError(f"{digest!r} is not a digest (blake3: and 64 hex digits)")
        hexed = hex_of(digest)
        return f"{self.prefix}objects/{hexed[:2]}/{hexed[2:]}"

    def where(self, digest: str) -> str:
        """The object's ``s3://`` URL, for messages."""
        return f"s3://{self.bucket}/{self.key(digest)}"

    @property
    def quarantine_where(self) -> str:
        """The ``s3://`` URL of the quarantine prefix, for messages."""
        return f"s3://{self.bucket}/{self.prefix}quarantine/"

    # -- requests ----------------------------------------------------------------------
    def failure(self, action: str, exc: BaseException) -> StoreError:
        """The one-line error for a client call that failed while doing ``action``."""
        return store_failure(self.bucket, self.endpoint, action, exc)

    def _check_bucket(self) -> None:
        """Refuse a bucket that does not exist, once, before the first request.

        Some servers create a missing bucket on the first write; a typo in the store URL
        must not silently make a new, empty store.
        """
        import obstore as obs
        from obstore.exceptions import BaseError

        try:
            stream = obs.list(self.client, prefix=self.prefix or None, chunk_size=1)
            next(iter(stream), None)
        except (BaseError, OSError) as exc:
            raise self.failure("list the bucket", exc) from exc
        self._checked = True

    def call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call; a failure other than "absent" or "exists" is a StoreError."""
        from obstore.exceptions import AlreadyExistsError, BaseError
        from obstore.exceptions import NotFoundError as Missing

        if not self._checked:
            self._check_bucket()
        try:
            return fn(*args, **kwargs)
        except (Missing, AlreadyExistsError, FileNotFoundError, FileExistsError):
            raise
        except (BaseError, OSError) as exc:
            raise self.failure(action, exc) from exc

    def head(self, digest: str) -> dict[str, Any] | None:
        """The object's metadata (``size``, ``e_tag``, ``last_modified``); None if absent."""
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        try:
            meta: dict[str, Any] = self.call(
                "read an object's size", obs.head, self.client, self.key(digest)
            )
        except (Missing, FileNotFoundError):
            return None
        return meta

    def control(self) -> S3Control:
        """The control objects under ``PREFIX/control/`` (:mod:`pipetrail.store.s3_gc`)."""
        from pipetrail.store.s3_gc import S3Control

        return S3Control(self, f"{self.prefix}control/")

    # -- requests by key (objects, and the control objects) ----------------------------
    def put_new(self, key: str, body: Any, *, action: str, size: int = 0) -> tuple[bool, Any]:
        """Create ``key`` unless it exists: whether it did, and the server's answer.

        ``body`` is bytes or an iterator of chunks; from :data:`MULTIPART_FROM` bytes
        (``size``) on it goes up in parts, several in flight at once.
        """
        import obstore as obs
        from obstore.exceptions import AlreadyExistsError

        try:
            result = self.call(
                action,
                obs.put,
                self.client,
                key,
                body,
                mode="create",
                use_multipart=size >= MULTIPART_FROM,
                chunk_size=_PART,
                max_concurrency=_PARTS_IN_FLIGHT,
            )
        except (AlreadyExistsError, FileExistsError):
            return False, None
        return True, result

    def read_key(self, key: str, *, action: str) -> tuple[bytes, str | None] | None:
        """The bytes and ETag of ``key``, in one request; None if absent."""
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        try:
            result = self.call(action, obs.get, self.client, key)
            return bytes(result.bytes()), result.meta.get("e_tag")
        except (Missing, FileNotFoundError):
            return None

    def delete_key(self, key: str, *, action: str) -> None:
        """Delete ``key`` (absent: nothing to do)."""
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        with contextlib.suppress(Missing, FileNotFoundError):
            self.call(action, obs.delete, self.client, key)

    def list_keys(self, prefix: str, *, action: str) -> Iterator[dict[str, Any]]:
        """Yield the metadata (``path``, ``size``, ``last_modified``) of every key under ``prefix``.

        Listed a page of 1,000 keys at a time.

        Raises:
            StoreError: the bucket cannot be listed.
        """
        import obstore as obs
        from obstore.exceptions import BaseError

        stream = self.call(action, obs.list, self.client, prefix=prefix, chunk_size=1000)
        try:
            for batch in stream:
                yield from batch
        except (BaseError, OSError) as exc:
            raise self.failure(action, exc) from exc

    # -- the ETag memo -----------------------------------------------------------------
    def remember_etag(self, digest: str, etag: str | None) -> None:
        """Record the ETag of an object just written, or just hashed intact."""
        if etag:
            with self._lock:
                self._etags[digest] = etag

    def known_etag(self, digest: str, etag: str | None) -> bool:
        """Whether ``etag`` is the one the object had when it was last found intact here."""
        with self._lock:
            return bool(etag) and self._etags.get(digest) == etag

    def forget(self, digests: Iterable[str]) -> None:
        """Drop the ETags of objects removed, quarantined or about to be re-hashed."""
        with self._lock:
            for digest in digests:
                self._etags.pop(digest, None)

    # -- writing -----------------------------------------------------------------------
    def create(self, digest: str, body: Any, *, size: int) -> bool:
        """Upload ``body`` as ``digest`` unless the name exists; return whether it did."""
        created, result = self.put_new(self.key(digest), body, action="write an object", size=size)
        if created:
            self.remember_etag(digest, result.get("e_tag") if isinstance(result, dict) else None)
        return created

    def upload_file(self, path: Path, digest: str, *, size: int) -> tuple[bool, str]:
        """Upload a file as ``digest`` (unless the name exists), hashing it as it is read.

        Returns:
            Whether the object was created, and the digest of the bytes read (when it
            was not created, of those read before the server refused).

        Raises:
            OSError: the file could not be read.
            StoreError: the object could not be written.
        """
        hasher = Hasher()
        with open(path, "rb") as f:

            def chunks() -> Iterator[bytes]:
                while chunk := f.read(_PART):
                    hasher.update(chunk)
                    yield chunk

            created = self.create(digest, chunks(), size=size)
        return created, hasher.digest()

    def quarantine(self, digest: str) -> None:
        """Move the object to the quarantine prefix (a copy, then a delete), freeing its name."""
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        stamp = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        target = f"{self.prefix}quarantine/{hex_of(digest)}.{stamp}"
        action = "quarantine a corrupt object"
        with contextlib.suppress(Missing, FileNotFoundError):
            self.call(action, obs.copy, self.client, self.key(digest), target)
            self.delete_key(self.key(digest), action=action)
        self.forget([digest])

    def delete(self, digest: str, *, action: str = "remove an object") -> None:
        """Delete the object (absent: nothing to do)."""
        self.delete_key(self.key(digest), action=action)
        self.forget([digest])

    def delete_many(self, digests: Sequence[str]) -> Iterator[list[str]]:
        """Delete the objects, 1,000 keys a request; yield each batch once it is deleted.

        Raises:
            StoreError: the server refused a request; what went before stays deleted.
        """
        import obstore as obs

        for start in range(0, len(digests), _DELETE_BATCH):
            batch = list(digests[start : start + _DELETE_BATCH])
            self.call(
                "remove objects", obs.delete, self.client, [self.key(digest) for digest in batch]
            )
            self.forget(batch)
            yield batch

    # -- reading -----------------------------------------------------------------------
    def get(self, digest: str) -> tuple[bytes, str | None] | None:
        """The object's bytes and ETag, in one request; None if absent."""
        return self.read_key(self.key(digest), action="read an object")

    def stream(
        self, digest: str, consume: Callable[[Iterator[bytes]], T]
    ) -> tuple[T, str | None] | None:
        """``consume`` the object's bytes as they arrive; its result and the ETag, or None.

        Raises:
            StoreError: the object could not be read.
            Whatever ``consume`` raises.
        """
        import obstore as obs
        from obstore.exceptions import BaseError
        from obstore.exceptions import NotFoundError as Missing

        try:
            result = self.call("read an object", obs.get, self.client, self.key(digest))
            return consume(result.stream(min_chunk_size=_CHUNK)), result.meta.get("e_tag")
        except (Missing, FileNotFoundError):
            return None
        except BaseError as exc:
            raise self.failure("read an object", exc) from exc

    def hash(self, digest: str) -> str | None:
        """Download and hash the object; None if absent. Remembers its ETag when intact."""

        def hashed(chunks: Iterator[bytes]) -> str:
            hasher = Hasher()
            for chunk in chunks:
                hasher.update(chunk)
            return hasher.digest()

        found = self.stream(digest, hashed)
        if found is None:
            return None
        actual, etag = found
        if actual == digest:
            self.remember_etag(digest, etag)
        return actual

    def get_range(self, digest: str, start: int, length: int) -> bytes | None:
        """``length`` bytes of the object from ``start`` (one ranged read); None if absent.

        Raises:
            StoreError: the range could not be read (an empty object has none).
        """
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        try:
            found = self.call(
                "read an object", obs.get_range, self.client, self.key(digest),
                start=start, length=length,
            )  # fmt: skip
        except (Missing, FileNotFoundError):
            return None
        return bytes(found)

    def listing(self) -> Iterator[tuple[str, int, float]]:
        """Yield ``(digest, size, last_modified)`` of every object, a page at a time.

        Raises:
            StoreError: the bucket cannot be listed.
        """
        base = f"{self.prefix}objects/"
        for meta in self.list_keys(base, action="list objects"):
            digest = "blake3:" + str(meta["path"])[len(base) :].replace("/", "")
            if is_digest(digest):
                yield digest, int(meta["size"]), meta["last_modified"].timestamp()
