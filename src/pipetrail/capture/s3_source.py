"""Sources that are S3 objects: ``source("s3://bucket/path/")`` (a prefix) or one object.

Owns :func:`observe_s3_source` and :class:`ObjectDigestCache`. A prefix is a folder of
objects: it is recorded like a local folder source, by a manifest of every object's
BLAKE3 digest and size (the same document, so its digest and snapshots work alike), and
one object like a file. Each object new to this checkout is streamed once: hashed while
it is written to a temp file, then stored in the project's content store. Its digest is
then remembered under (bucket, key, ETag, size) in ``.pipetrail/cache/s3-objects.db``, so
a later run re-observes an unchanged object from one listing request, without reading it;
a changed object has another ETag (the server computes it, no client can set it) and is
read again. The step receives a local path: the objects materialized from the content
store under ``.pipetrail/cache/s3-sources/`` (a folder for a prefix, a file for one object).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.capture.sources import SourceObservation, _encode_manifest
from pipetrail.core.clock import format_ts, utcnow
from pipetrail.errors import DefinitionError
from pipetrail.hashing import Hasher, digest_bytes
from pipetrail.hashing.digest import hex_of
from pipetrail.store.s3 import parse_s3_url
from pipetrail.store.s3_client import make_client, store_failure

if TYPE_CHECKING:
    from pipetrail.store import ContentStore

__all__ = ["ObjectDigestCache", "is_s3_source", "observe_s3_source"]

_THREADS = 8


def is_s3_source(path: str) -> bool:
    """Whether a declared source path is an S3 URL."""
    return path.startswith("s3://")


class ObjectDigestCache:
    """Digests of S3 objects by (bucket, key, ETag, size), in one SQLite file.

    Args:
        path: the database file (created with its folder when needed).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS objects (bucket TEXT, key TEXT, etag TEXT, "
                "size INTEGER, digest TEXT, PRIMARY KEY (bucket, key))"
            )

    def get(self, bucket: str, key: str, etag: str, size: int) -> str | None:
        """The digest recorded for this very object version, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT digest FROM objects WHERE bucket=? AND key=? AND etag=? AND size=?",
                (bucket, key, etag, size),
            ).fetchone()
        return None if row is None else str(row[0])

    def put(self, bucket: str, key: str, etag: str, size: int, digest: str) -> None:
        """Remember ``digest`` for this object version."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                (bucket, key, etag, size, digest),
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def observe_s3_source(
    url: str,
    *,
    store: ContentStore,
    state_dir: Path,
    settings: dict[str, Any] | None = None,
    rehash: bool = False,
) -> SourceObservation:
    """Observe an S3 prefix or object: digest it, store its objects, materialize it.

    Args:
        url: ``s3://bucket/prefix/`` (every object under it) or ``s3://bucket/key``.
        store: the project's content store (receives every object's bytes).
        state_dir: the project's ``.pipetrail`` folder (caches and materialized copies).
        settings: endpoint, region and credentials (``make_client`` arguments); None
            takes them from the ``AWS_*`` variables.
        rehash: read every object again, ignoring the digest cache.

    Raises:
        DefinitionError: nothing exists at the URL.
        StoreError: the bucket cannot be read (the message names endpoint and bucket).
    """
    import obstore as obs
    from obstore.exceptions import BaseError

    bucket, key = parse_s3_url(url)
    options = {k: v for k, v in (settings or {}).items() if k != "cache_bytes"}
    endpoint = options.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL")
    client = make_client(
        bucket,
        endpoint=endpoint,
        region=options.get("region"),
        access_key_id=options.get("access_key_id"),
        secret_access_key=options.get("secret_access_key"),
    )
    observed_at = format_ts(utcnow())
    prefix = f"{key}/" if key else ""
    try:
        metas = [m for batch in obs.list(client, prefix=prefix or None) for m in batch]
        single = not url.endswith("/") and key and not metas
        if single:
            metas = [obs.head(client, key)]
    except FileNotFoundError:
        metas = []
    except BaseError as exc:
        if "NotFound" in type(exc).__name__:
            metas = []
        else:
            raise store_failure(bucket, endpoint, "read the source " + url, exc) from exc
    if not metas:
        raise DefinitionError(
            f"source {url!r}: no object at or under it in bucket {bucket!r}; check the URL"
        )
    cache = ObjectDigestCache(state_dir / "cache" / "s3-objects.db")
    try:
        digests, hashed = _digests(client, bucket, endpoint, metas, store, cache, rehash)
    finally:
        cache.close()
    names = {str(m["path"])[len(prefix) :] if not single else "": m for m in metas}
    size = sum(int(m["size"]) for m in metas)
    mtime_ns = max(int(m["last_modified"].timestamp() * 1e9) for m in metas)
    common: dict[str, Any] = {
        "path": url,
        "size": size,
        "mtime_ns": mtime_ns,
        "observed_at": observed_at,
        "by_reference": False,
        "hashed_files": hashed,
        "hashed_bytes": 0,
        "cached_files": len(metas) - hashed,
        "stored_files": len(set(digests.values())),
    }
    if single:
        digest = digests[str(metas[0]["path"])]
        location = _materialize_file(store, state_dir, digest)
        return SourceObservation(
            location=str(location), kind="file", digest=digest, file_count=1, **common
        )
    # The full digest, as a local folder's manifest holds it: the same objects give the
    # same manifest, and a snapshot of it restores like a local folder's.
    files = {name: (digests[str(m["path"])], int(m["size"])) for name, m in names.items()}
    manifest = _encode_manifest(url, files)
    digest = digest_bytes(manifest)
    location = _materialize_folder(store, state_dir, digest, files)
    return SourceObservation(
        location=str(location),
        kind="folder",
        digest=digest,
        file_count=len(files),
        manifest_bytes=manifest,
        **common,
    )


def _digests(
    client: Any,
    bucket: str,
    endpoint: str | None,
    metas: list[Any],
    store: ContentStore,
    cache: ObjectDigestCache,
    rehash: bool,
) -> tuple[dict[str, str], int]:
    """Each object's digest (from the cache, or by streaming it into the store)."""
    import obstore as obs
    from obstore.exceptions import BaseError

    digests: dict[str, str] = {}
    todo = []
    for meta in metas:
        key, etag, size = str(meta["path"]), str(meta.get("e_tag") or ""), int(meta["size"])
        known = None if rehash or not etag else cache.get(bucket, key, etag, size)
        if known is not None and store.exists(known):
            digests[key] = known
        else:
            todo.append(meta)

    def fetch(meta: Any) -> tuple[str, str]:
        key = str(meta["path"])
        folder = Path(_tmp_root())
        tmp = folder / f"pipetrail-s3src-{secrets.token_hex(6)}"
        hasher = Hasher()
        try:
            try:
                result = obs.get(client, key)
                etag = str(result.meta.get("e_tag") or "")
                with open(tmp, "xb") as out:
                    for chunk in result.stream(min_chunk_size=8 * 1024 * 1024):
                        hasher.update(chunk)
                        out.write(chunk)
            except BaseError as exc:
                raise store_failure(bucket, endpoint, f"read s3://{bucket}/{key}", exc) from exc
            digest, _ = store.put_file(tmp, digest=hasher.digest())
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if etag:
            cache.put(bucket, key, etag, int(result.meta["size"]), digest)
        return key, digest

    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        for key, digest in pool.map(fetch, todo):
            digests[key] = digest
    return digests, len(todo)


def _tmp_root() -> str:
    import tempfile

    return tempfile.gettempdir()


def _materialize_file(store: ContentStore, state_dir: Path, digest: str) -> Path:
    target = state_dir / "cache" / "s3-sources" / hex_of(digest)
    if not target.is_file():
        _copy_out(store, digest, target)
    return target


def _materialize_folder(
    store: ContentStore, state_dir: Path, digest: str, files: dict[str, tuple[str, int]]
) -> Path:
    """The folder of the manifest's files (made once per manifest digest)."""
    target = state_dir / "cache" / "s3-sources" / hex_of(digest)
    done = target.with_name(target.name + ".complete")
    if done.is_file() and target.is_dir():
        return target
    staging = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
    for name, (object_digest, _) in files.items():
        if name.startswith("/") or ".." in Path(name).parts:
            raise DefinitionError(f"source object name {name!r} leaves its folder; rename it")
        _copy_out(store, object_digest, staging / name)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staging, target)
    except OSError:  # another process made it first
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    done.write_text("")
    return target


def _copy_out(store: ContentStore, digest: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    with store.open(digest) as src, open(tmp, "wb") as out:
        while chunk := src.read(8 * 1024 * 1024):
            out.write(chunk)
    os.replace(tmp, target)
