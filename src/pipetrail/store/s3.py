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
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.hashing import Hasher, is_digest
from pipetrail.hashing.digest import hex_of
from pipetrail.store.s3_cache import ReadCache
from pipetrail.store.s3_client import make_client, store_failure
from pipetrail.store.verified import corrupt_error, digest_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from pipetrail.store.s3_gc import S3Control

__all__ = ["S3Store", "parse_s3_url"]

_CHUNK = 8 * 1024 * 1024
_PART = 16 * 1024 * 1024
_MULTIPART_FROM = 64 * 1024 * 1024
_DEFAULT_CACHE_BYTES = 2 * 1024**3
_THREADS = 8  # requests in flight for batches of objects
_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


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


def _check_digest(path: Path, actual: str, expected: str | None) -> None:
    if expected is not None and actual != expected:
        raise IntegrityError(
            f"File {os.fspath(path)} changed while being read: its bytes hash to {actual}, "
            f"not {expected}. Make sure nothing writes to it while it is stored (or pass the "
            "right digest=), then store it again."
        )


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
        self._etags: dict[str, str] = {}
        self._cache = ReadCache(self.cache_dir, cache_bytes)
        self._lock = threading.Lock()
        self._bucket_checked = client is not None
        if client is None:
            client = make_client(
                self.bucket,
                endpoint=self.endpoint,
                region=region,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
            )
        self._client_store = client

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    # -- names -------------------------------------------------------------------------
    def _key(self, digest: str) -> str:
        if not is_digest(digest):
            raise NotFoundError(f"{digest!r} is not a digest (blake3: and 64 hex digits)")
        hexed = hex_of(digest)
        return f"{self._prefix}objects/{hexed[:2]}/{hexed[2:]}"

    def _where(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self._key(digest)}"

    def _failure(self, action: str, exc: BaseException) -> StoreError:
        return store_failure(self.bucket, self.endpoint, action, exc)

    def _check_bucket(self) -> None:
        """Refuse a bucket that does not exist, once per store, before the first request.

        Some servers create a missing bucket on the first write; a typo in the store URL
        must not silently make a new, empty store.
        """
        import obstore as obs
        from obstore.exceptions import BaseError

        try:
            stream = obs.list(self._client_store, prefix=self._prefix or None, chunk_size=1)
            next(iter(stream), None)
        except (BaseError, OSError) as exc:
            raise self._failure("list the bucket", exc) from exc
        self._bucket_checked = True

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call; a failure other than "absent" or "exists" is a StoreError."""
        from obstore.exceptions import AlreadyExistsError, BaseError
        from obstore.exceptions import NotFoundError as Missing

        if not self._bucket_checked:
            self._check_bucket()
        try:
            return fn(*args, **kwargs)
        except (Missing, AlreadyExistsError, FileNotFoundError, FileExistsError):
            raise
        except (BaseError, OSError) as exc:
            raise self._failure(action, exc) from exc

    def _head(self, digest: str) -> dict[str, Any] | None:
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        try:
            meta: dict[str, Any] = self._call(
                "read an object's size", obs.head, self._client_store, self._key(digest)
            )
        except (Missing, FileNotFoundError):
            return None
        return meta

    # -- writing -------------------------------------------------------------------------
    def _create(self, digest: str, body: Any, *, size: int) -> bool:
        """Upload ``body`` as ``digest`` unless the name exists; return whether it did."""
        import obstore as obs
        from obstore.exceptions import AlreadyExistsError

        try:
            result = self._call(
                "write an object",
                obs.put,
                self._client_store,
                self._key(digest),
                body,
                mode="create",
                use_multipart=size >= _MULTIPART_FROM,
                chunk_size=_PART,
                max_concurrency=8,
            )
        except (AlreadyExistsError, FileExistsError):
            return False
        etag = result.get("e_tag") if isinstance(result, dict) else None
        if etag:
            with self._lock:
                self._etags[digest] = etag
        return True

    def _stored_intact(self, digest: str, size: int) -> bool | None:
        """Whether the stored object is intact: None when absent, False when corrupt."""
        meta = self._head(digest)
        if meta is None:
            return None
        if int(meta["size"]) != size:
            return False
        etag = meta.get("e_tag")
        with self._lock:
            known = self._etags.get(digest)
        if etag and known == etag:
            return True
        return self._hash_remote(digest) == digest

    def _hash_remote(self, digest: str) -> str | None:
        import obstore as obs
        from obstore.exceptions import BaseError
        from obstore.exceptions import NotFoundError as Missing

        hasher = Hasher()
        try:
            result = self._call("read an object", obs.get, self._client_store, self._key(digest))
            for chunk in result.stream(min_chunk_size=_CHUNK):
                hasher.update(chunk)
        except (Missing, FileNotFoundError):
            return None
        except BaseError as exc:
            raise self._failure("read an object", exc) from exc
        actual = hasher.digest()
        if actual == digest and result.meta.get("e_tag"):
            with self._lock:
                self._etags[digest] = result.meta["e_tag"]
        return actual

    def _replace_corrupt(self, digest: str) -> None:
        """Move a corrupt stored object to the quarantine prefix, freeing its name."""
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        stamp = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        target = f"{self._prefix}quarantine/{hex_of(digest)}.{stamp}"
        with contextlib.suppress(Missing, FileNotFoundError):
            self._call(
                "quarantine a corrupt object",
                obs.copy,
                self._client_store,
                self._key(digest),
                target,
            )
            self._call(
                "quarantine a corrupt object", obs.delete, self._client_store, self._key(digest)
            )
        with self._lock:
            self._etags.pop(digest, None)
        self._evict(digest)

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
            if self._create(digest, body, size=len(body)):
                return
        raise StoreError(f"could not store {digest} at {self._where(digest)}: it keeps changing")

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
            if os.stat(path).st_size < _MULTIPART_FROM:  # small: read once, hash, upload
                with open(path, "rb") as f:
                    data = f.read()
                actual, size = digest_of(data), len(data)
                _check_digest(path, actual, digest)
                self._put_data(actual, data)
                return actual, size
            actual, size = digest_file(path)
        except OSError as exc:
            raise StoreError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        _check_digest(path, actual, digest)
        state = self._stored_intact(actual, size)
        if state is True:
            return actual, size
        if state is False:
            self._replace_corrupt(actual)
        hasher = Hasher()
        try:
            with open(path, "rb") as f:

                def chunks() -> Iterator[bytes]:
                    while chunk := f.read(_PART):
                        hasher.update(chunk)
                        yield chunk

                created = self._create(actual, chunks(), size=size)
        except OSError as exc:
            raise StoreError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        if created and hasher.digest() != actual:
            import obstore as obs

            self._call("remove a bad upload", obs.delete, self._client_store, self._key(actual))
            with self._lock:
                self._etags.pop(actual, None)
            raise IntegrityError(
                f"File {os.fspath(path)} changed while it was uploaded (it now hashes to "
                f"{hasher.digest()}); the upload was removed; store it again."
            )
        if not created and self._stored_intact(actual, size) is not True:
            raise StoreError(f"could not store {actual} at {self._where(actual)}")
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
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        try:
            result = self._call("read an object", obs.get, self._client_store, self._key(digest))
            data = bytes(result.bytes())
        except (Missing, FileNotFoundError):
            raise self._not_found(digest) from None
        actual = digest_of(data)
        if actual != digest:
            self._replace_corrupt(digest)
            raise corrupt_error(
                digest, actual, where=self._where(digest), quarantine=self._quarantine_where
            )
        if result.meta.get("e_tag"):
            with self._lock:
                self._etags[digest] = result.meta["e_tag"]
        return data

    @property
    def _quarantine_where(self) -> str:
        return f"s3://{self.bucket}/{self._prefix}quarantine/"

    def _not_found(self, digest: str) -> NotFoundError:
        return NotFoundError(
            f"Object {digest} is not in the S3 store s3://{self.bucket}/{self._prefix}; it was "
            "never uploaded there, or was removed (run `pipetrail store verify`)."
        )

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
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        try:
            found = self._call(
                "read an object", obs.get_range, self._client_store, self._key(digest),
                start=0, length=size,
            )  # fmt: skip
        except (Missing, FileNotFoundError):
            raise self._not_found(digest) from None
        except StoreError:
            return self.get_bytes(digest)[:size]  # an empty object has no range to read
        return bytes(found)

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
        import obstore as obs
        from obstore.exceptions import BaseError
        from obstore.exceptions import NotFoundError as Missing

        def corrupt(actual: str) -> None:
            self._replace_corrupt(digest)
            raise corrupt_error(
                digest, actual, where=self._where(digest), quarantine=self._quarantine_where
            )

        try:
            result = self._call("read an object", obs.get, self._client_store, self._key(digest))
            return self._cache.fill(digest, result.stream(min_chunk_size=_CHUNK), corrupt)
        except (Missing, FileNotFoundError):
            raise self._not_found(digest) from None
        except BaseError as exc:
            raise self._failure("read an object", exc) from exc

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored under ``digest``."""
        return is_digest(digest) and self._head(digest) is not None

    def size(self, digest: str) -> int:
        """Return the object's size in bytes.

        Raises:
            NotFoundError: no object has this digest.
        """
        meta = self._head(digest)
        if meta is None:
            raise self._not_found(digest)
        return int(meta["size"])

    def iter_objects(self) -> Iterator[tuple[str, int, float]]:
        """Yield ``(digest, size, last_modified)`` of every stored object (POSIX seconds).

        Raises:
            StoreError: the bucket cannot be listed.
        """
        import obstore as obs
        from obstore.exceptions import BaseError

        base = f"{self._prefix}objects/"
        stream = self._call(
            "list objects", obs.list, self._client_store, prefix=base, chunk_size=1000
        )
        try:
            for batch in stream:
                for meta in batch:
                    rest = str(meta["path"])[len(base) :].replace("/", "")
                    digest = "blake3:" + rest
                    if is_digest(digest):
                        yield digest, int(meta["size"]), meta["last_modified"].timestamp()
        except (BaseError, OSError) as exc:
            raise self._failure("list objects", exc) from exc

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored object."""
        for digest, _, _ in self.iter_objects():
            yield digest

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
        import obstore as obs
        from obstore.exceptions import NotFoundError as Missing

        cutoff = time.time() - older_than
        removed = []
        for digest in sorted(set(digests)):
            meta = self._head(digest)
            if meta is None or meta["last_modified"].timestamp() > cutoff:
                continue
            with contextlib.suppress(Missing, FileNotFoundError):
                self._call("remove an object", obs.delete, self._client_store, self._key(digest))
            with self._lock:
                self._etags.pop(digest, None)
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
        import obstore as obs

        for start in range(0, len(digests), _DELETE_BATCH):
            batch = list(digests[start : start + _DELETE_BATCH])
            self._call(
                "remove objects",
                obs.delete,
                self._client_store,
                [self._key(digest) for digest in batch],
            )
            with self._lock:
                for digest in batch:
                    self._etags.pop(digest, None)
            for digest in batch:
                self._evict(digest)

    def control(self) -> S3Control:
        """The store's control objects (``PREFIX/control/``): the collector's and runs' markers."""
        from pipetrail.store.s3_gc import S3Control

        return S3Control(self._client_store, f"{self._prefix}control/", self._call)

    def verify(self, digest: str) -> bool:
        """Re-hash one object (downloading it); False, and quarantined, when corrupt.

        Raises:
            NotFoundError: no object has this digest.
        """
        with self._lock:
            self._etags.pop(digest, None)
        actual = self._hash_remote(digest)
        if actual is None:
            raise self._not_found(digest)
        if actual == digest:
            return True
        self._replace_corrupt(digest)
        return False
