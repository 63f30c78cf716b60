"""A content store in an S3-compatible object store (AWS S3, SeaweedFS, MinIO...).

Objects live under ``PREFIX/objects/ab/cdef...`` (the digest's hex, split after two
characters), written create-only: a put is a conditional request that fails when the
name exists, so no writer ever overwrites an object, and two writers of the same bytes
both succeed (the second finds the first's object and checks it). Large files go up in
parallel multipart uploads, hashed while they are read, and are deleted again when what
was uploaded does not hash to the digest the caller expected.

Reads are verified (ADR 0011): :meth:`S3Store.get_bytes` hashes what it downloaded;
:meth:`S3Store.open` and :meth:`S3Store.local_path` serve a file of the local read cache
(``cache_dir``, bounded by ``cache_bytes``, least recently used files evicted), written
only once its bytes hash to the digest and re-hashed before a new process trusts it. A
corrupt object is copied to ``PREFIX/quarantine/`` and removed from its name, and a put of
the right bytes stores them again.

A put that finds an object already stored checks it without downloading it when it can:
the object's ETag, which the server computes and no client can set, is compared with
the ETag of the last time this process verified or wrote that object; otherwise the
object is read and hashed once. The client library is obstore (the Rust ``object_store``
crate; docs/adr/0021-s3-store.md says why), imported when a store is opened.

The parts: :mod:`pipetrail.store.s3_objects` (the requests and transfers, and the ETag
memo), :mod:`pipetrail.store.s3_cache` (the read cache), :mod:`pipetrail.store.s3_client`
(the client's settings and one-line failures) and :mod:`pipetrail.store.s3_gc` (garbage
collection and its markers).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.hashing import is_digest
from pipetrail.store.s3_cache import ReadCache
from pipetrail.store.s3_client import make_client
from pipetrail.store.s3_objects import MULTIPART_FROM, S3Objects
from pipetrail.store.verified import changed_error, corrupt_error, digest_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from pipetrail.store.s3_gc import S3Control

__all__ = ["S3Store", "parse_s3_url"]

_DEFAULT_CACHE_BYTES = 2 * 1024**3
_THREADS = 8  # requests in flight for batches of objects


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into the bucket and the prefix (no slashes at its ends).

    Raises:
        StoreError: not an ``s3://`` URL with a bucket.
    """
    if not url.startswith("s3://"):
        raise StoreError(f"{url!r} is not an S3 store URL; write s3://BUCKET[/PREFIX]")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise StoreError(f"{url!r} names no bucket; write s3://BUCKET[/PREFIX]")
    return bucket, prefix.strip("/")


class S3Store:
    """Content store in a bucket (implements :class:`~pipetrail.store.base.ContentStore`).

    Args:
        url: ``s3://bucket/prefix``.
        cache_dir: the local read cache folder.
        cache_bytes: the read cache's size limit.
        endpoint: the server's URL (``AWS_ENDPOINT_URL`` when None); ``http://`` allowed.
        region: the region (``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else ``us-east-1``).
        access_key_id: credentials (``AWS_ACCESS_KEY_ID`` when None).
        secret_access_key: credentials (``AWS_SECRET_ACCESS_KEY`` when None).
        client: an obstore store to use instead (tests).

    Raises:
        StoreError: the URL is malformed, or the bucket cannot be reached (the message
            names the endpoint, the bucket and the cause).
    """

    def __init__(
        self,
        url: str,
        *,
        cache_dir: Path,
        cache_bytes: int = _DEFAULT_CACHE_BYTES,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
    ) -> None:
        self.url = url
        self.bucket, prefix = parse_s3_url(url)
        self._prefix = f"{prefix}/" if prefix else ""
        self.cache_dir = Path(cache_dir)
        self.cache_bytes = cache_bytes
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
        self._cache = ReadCache(self.cache_dir, cache_bytes)
        checked = client is not None
        if client is None:
            client = make_client(
                self.bucket,
                endpoint=self.endpoint,
                region=region,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
            )
        self._client_store = client
        self._objects = S3Objects(client, self.bucket, self._prefix, self.endpoint, checked=checked)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    # -- names -------------------------------------------------------------------------
    def _key(self, digest: str) -> str:
        return self._objects.key(digest)

    def _not_found(self, digest: str) -> NotFoundError:
        return NotFoundError(
            f"Object {digest} is not in the S3 store s3://{self.bucket}/{self._prefix}; it was "
            "never uploaded there, or was removed (run `pipetrail store verify`)."
        )

    def _corrupt(self, digest: str, actual: str) -> IntegrityError:
        """Quarantine a corrupt object; return the error to raise."""
        self._replace_corrupt(digest)
        return corrupt_error(
            digest,
            actual,
            where=self._objects.where(digest),
            quarantine=self._objects.quarantine_where,
        )

    def _stored_intact(self, digest: str, size: int) -> bool | None:
        """Whether the stored object is intact: None when absent, False when corrupt."""
        meta = self._objects.head(digest)
        if meta is None:
            return None
        if int(meta["size"]) != size:
            return False
        if self._objects.known_etag(digest, meta.get("e_tag")):
            return True
        return self._objects.hash(digest) == digest

    def _replace_corrupt(self, digest: str) -> None:
        """Move a corrupt stored object to the quarantine prefix, freeing its name."""
        self._objects.quarantine(digest)
        self._evict(digest)

    # -- writing -------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its digest (a no-op when it is stored intact)."""
        digest = digest_of(data)
        self._put_data(digest, bytes(data))
        return digest

    def _put_data(self, digest: str, body: bytes) -> None:
        for _ in range(3):  # a concurrent writer may create or quarantine it meanwhile
            state = self._stored_intact(digest, len(body))
            if state is True:
                return
            if state is False:
                self._replace_corrupt(digest)
            if self._objects.create(digest, body, size=len(body)):
                return
        raise StoreError(
            f"could not store {digest} at {self._objects.where(digest)}: it keeps changing"
        )

    def put_file(self, path: Path, *, digest: str | None = None) -> tuple[str, int]:
        """Upload a file; return ``(digest, size)``.

        The file is hashed first (its name is its digest), then uploaded while being hashed
        again; if the second hash differs (the file changed meanwhile), the uploaded object
        is deleted and :class:`~pipetrail.errors.IntegrityError` raised.

        Raises:
            IntegrityError: the file's bytes do not hash to ``digest``, or changed.
            StoreError: the file cannot be read or the object not written.
        """
        from pipetrail.hashing import digest_file

        try:
            if os.stat(path).st_size < MULTIPART_FROM:  # small: read once, hash, upload
                with open(path, "rb") as f:
                    data = f.read()
                actual, size = digest_of(data), len(data)
                if digest is not None and actual != digest:
                    raise changed_error(os.fspath(path), actual, digest)
                self._put_data(actual, data)
                return actual, size
            actual, size = digest_file(path)
        except OSError as exc:
            raise StoreError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        if digest is not None and actual != digest:
            raise changed_error(os.fspath(path), actual, digest)
        state = self._stored_intact(actual, size)
        if state is True:
            return actual, size
        if state is False:
            self._replace_corrupt(actual)
        try:
            created, uploaded = self._objects.upload_file(path, actual, size=size)
        except OSError as exc:
            raise StoreError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        if created and uploaded != actual:
            self._objects.delete(actual, action="remove a bad upload")
            raise IntegrityError(
                f"File {os.fspath(path)} changed while it was uploaded (it now hashes to "
                f"{uploaded}); the upload was removed; store it again."
            )
        if not created and self._stored_intact(actual, size) is not True:
            raise StoreError(f"could not store {actual} at {self._objects.where(actual)}")
        return actual, size

    def put_files(
        self, items: Sequence[tuple[str | os.PathLike[str], str | None]]
    ) -> list[tuple[str, int]]:
        """Upload many files in parallel; ``(digest, size)`` per item, in order.

        Raises:
            IntegrityError: a file's bytes do not hash to its digest (others may be stored).
            StoreError: a file could not be read or an object not written.
        """
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            futures = [pool.submit(self.put_file, Path(p), digest=d) for p, d in items]
            return [f.result() for f in futures]

    def sync(self) -> None:
        """Nothing to do: an object is durable once its upload returned."""

    # -- reading -------------------------------------------------------------------------
    def get_bytes(self, digest: str) -> bytes:
        """Download the object; return it once it hashes to ``digest``.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: it is corrupt (now quarantined).
        """
        cached = self._cached(digest)
        if cached is not None:
            return cached.read_bytes()
        found = self._objects.get(digest)
        if found is None:
            raise self._not_found(digest)
        data, etag = found
        actual = digest_of(data)
        if actual != digest:
            raise self._corrupt(digest, actual)
        self._objects.remember_etag(digest, etag)
        return data

    def open(self, digest: str) -> BinaryIO:
        """Open the object's verified file in the local read cache (downloaded if needed).

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: it is corrupt (now quarantined).
        """
        return open(self.local_path(digest), "rb")

    def peek(self, digest: str, size: int) -> bytes:
        """The first ``size`` bytes of an object (one ranged read), NOT verified.

        Only to decide what to do with an object without downloading it all (which data
        key a sealed object's header names); never to hand out its content.

        Raises:
            NotFoundError: no object has this digest.
            StoreError: the object could not be read.
        """
        cached = self._cached(digest)
        if cached is not None:
            with open(cached, "rb") as f:
                return f.read(size)
        try:
            found = self._objects.get_range(digest, 0, size)
        except StoreError:
            return self.get_bytes(digest)[:size]  # an empty object has no range to read
        if found is None:
            raise self._not_found(digest)
        return found

    def local_path(self, digest: str) -> Path:
        """Return the object's verified file in the local read cache; do not modify it.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: it is corrupt (now quarantined).
        """
        cached = self._cached(digest)
        if cached is not None:
            return cached
        return self._download(digest)

    def local_paths(self, digests: Sequence[str]) -> list[Path]:
        """:meth:`local_path` of many objects, downloaded in parallel; in order.

        Raises:
            NotFoundError: an object is missing (others may have been downloaded).
            IntegrityError: an object is corrupt (now quarantined).
        """
        if len(digests) <= 1:
            return [self.local_path(d) for d in digests]
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            return list(pool.map(self.local_path, digests))

    def _cached(self, digest: str) -> Path | None:
        self._key(digest)  # NotFoundError for a non-digest
        return self._cache.get(digest)

    def _evict(self, digest: str) -> None:
        self._cache.evict(digest)

    def _download(self, digest: str) -> Path:
        def corrupt(actual: str) -> None:
            raise self._corrupt(digest, actual)

        found = self._objects.stream(
            digest, lambda chunks: self._cache.fill(digest, chunks, corrupt)
        )
        if found is None:
            raise self._not_found(digest)
        return found[0]

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored under ``digest``."""
        return is_digest(digest) and self._objects.head(digest) is not None

    def size(self, digest: str) -> int:
        """Return the object's size in bytes.

        Raises:
            NotFoundError: no object has this digest.
        """
        meta = self._objects.head(digest)
        if meta is None:
            raise self._not_found(digest)
        return int(meta["size"])

    def iter_objects(self) -> Iterator[tuple[str, int, float]]:
        """Yield ``(digest, size, last_modified)`` of every stored object (POSIX seconds).

        Raises:
            StoreError: the bucket cannot be listed.
        """
        return self._objects.listing()

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored object."""
        for digest, _, _ in self.iter_objects():
            yield digest

    # -- maintenance ---------------------------------------------------------------------
    def remove(self, digests: Iterable[str], *, older_than: float) -> list[str]:
        """Delete the objects named, except those written less than ``older_than`` s ago.

        The garbage collector's primitive: the caller decides which digests nothing
        references; this only keeps the grace period, judged by each object's
        LastModified on the server (so a run still uploading outputs it has not recorded
        yet keeps them), and forgets the objects in the local read cache.

        Returns:
            The digests removed, sorted (absent and too recent ones are not).

        Raises:
            StoreError: the server refused a request.
        """
        cutoff = time.time() - older_than
        removed = []
        for digest in sorted(set(digests)):
            meta = self._objects.head(digest)
            if meta is None or meta["last_modified"].timestamp() > cutoff:
                continue
            self._objects.delete(digest)
            self._evict(digest)
            removed.append(digest)
        return removed

    def delete_objects(self, digests: Sequence[str]) -> None:
        """Delete the objects named, batched (S3 DeleteObjects takes up to 1,000 a request).

        The garbage collector's primitive once it holds the store (:mod:`pipetrail.store.
        s3_gc`); an absent object is not an error. The local read cache forgets them.

        Raises:
            StoreError: the server refused a request; what went before stays deleted.
        """
        for batch in self._objects.delete_many(digests):
            for digest in batch:
                self._evict(digest)

    def control(self) -> S3Control:
        """The store's control objects (``PREFIX/control/``): the collector's and runs' markers."""
        return self._objects.control()

    def verify(self, digest: str) -> bool:
        """Re-hash one object (downloading it); False, and quarantined, when corrupt.

        Raises:
            NotFoundError: no object has this digest.
        """
        self._objects.forget([digest])
        actual = self._objects.hash(digest)
        if actual is None:
            raise self._not_found(digest)
        if actual == digest:
            return True
        self._replace_corrupt(digest)
        return False
