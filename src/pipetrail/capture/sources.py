"""Observe sources: the raw files and folders a pipeline reads from outside, at run start.

Owns :func:`observe_source`, its result :class:`SourceObservation`, the folder manifest
format and :class:`SourceChangedError`. An observation records:

* **What and when**: digest, size and mtime of what was read, and when reading began.
* **Folders**: a manifest mapping each file's path relative to the folder (POSIX) to
  ``{"digest", "size"}``, encoded as the canonical JSON (the exact bytes of
  :func:`pipetrail.hashing.canonical_json`, UTF-8) of ``{"files": manifest, "kind":
  "pipetrail.folder_manifest", "version": 1}``. The folder's digest is
  ``digest_bytes(manifest_bytes)``, so the manifest stored as a blob is named by the
  source's digest, and any change to any file (content, name, added, removed) changes it.
  Only files count: an empty folder's manifest is ``{}``; empty sub-folders do not appear.
* **Symlinks** inside a folder that point inside it are followed and recorded under the
  *link's* path; cycles are refused.
* **Confinement**: ``..``, absolute paths outside the project root, and symlinks pointing
  outside the root (or, inside a folder, outside the folder) raise
  :class:`~pipetrail.errors.DefinitionError` unless ``allow_outside=True``. Sockets,
  FIFOs and devices are always refused.
* **Stability**: each file is stat-ed before and after it is hashed; a change of size,
  mtime, inode or device, or a byte count other than the size, raises
  :class:`SourceChangedError` naming the file. Digests are of the bytes actually read,
  and never through a memory map (a file truncated while mapped kills the process).

With a :class:`~pipetrail.capture.statcache.StatCache` only new, changed or doubtful
(racy) files are hashed. Content reaches the store through the caller's
``store_files(batch)`` callback, called with lists of ``(path, digest)`` pairs so that a
store can make a whole batch durable at once (``ContentStore.put_files`` fits); for new
and changed files the digest is ``None`` and the store hashes them while copying them.

The parts: :mod:`pipetrail.capture.source_checks` (confinement, special files, the
errors, :class:`SourceChangedError`) and :mod:`pipetrail.capture.source_walk` (finding,
digesting and batching files). This module and those import only ``pipetrail.core``,
``pipetrail.hashing``, ``pipetrail.errors``, ``pipetrail.capture.statcache`` and the
standard library; never ``store``, ``ledger`` or ``execution``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipetrail.capture.source_checks import (
    SourceChangedError,
    resolve_source,
    special_file_error,
    unreadable_error,
)
from pipetrail.capture.source_walk import SourceWalk
from pipetrail.core.clock import format_ts, utcnow
from pipetrail.errors import DefinitionError
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Future, ThreadPoolExecutor

    from pipetrail.capture.source_walk import StoredSizes, StoreFiles
    from pipetrail.capture.statcache import StatCache

__all__ = [
    "MANIFEST_KIND",
    "MANIFEST_VERSION",
    "SOURCE_RECORD_SCHEMA_VERSION",
    "SourceChangedError",  # defined in pipetrail.capture.source_checks
    "SourceObservation",
    "observe_source",
]

SOURCE_RECORD_SCHEMA_VERSION = 1
MANIFEST_KIND = "pipetrail.folder_manifest"
MANIFEST_VERSION = 1
_RECORD_FIELDS = "path location kind digest size mtime_ns observed_at by_reference file_count"
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class SourceObservation:
    """What one observation of a source found.

    Attributes:
        path: the source's path as declared (POSIX separators).
        location: the absolute path that was read, symlinks resolved.
        kind: ``"file"`` or ``"folder"``.
        digest: the file's digest, or the folder's (the digest of ``manifest_bytes``).
        size: bytes read (for a folder, the sum over its files).
        mtime_ns: the file's modification time; for a folder the newest among the
            folder, its sub-folders and its files.
        observed_at: when the observation began, ISO-8601 UTC (``...Z``).
        by_reference: whether only digests were recorded (no content copied).
        file_count: 1 for a file; the number of files in a folder's manifest.
        manifest_bytes: a folder's manifest document, canonical JSON; ``None`` for a file.
            Store it as a blob: its digest is ``digest``.
        hashed_files: files read and hashed by this observation (or, for small new
            files, by ``store_files`` while copying them).
        hashed_bytes: bytes read and hashed by this observation.
        cached_files: files whose digest came from the stat cache (not read).
        stored_files: distinct digests handed to ``store_files`` or computed by it, or
            found in the store by ``stored_sizes``.
    """

    path: str
    location: str
    kind: Literal["file", "folder"]
    digest: str
    size: int
    mtime_ns: int
    observed_at: str
    by_reference: bool
    file_count: int
    manifest_bytes: bytes | None = None
    hashed_files: int = 0
    hashed_bytes: int = 0
    cached_files: int = 0
    stored_files: int = 0

    @property
    def manifest(self) -> dict[str, dict[str, Any]] | None:
        """A folder's ``{relative path: {"digest", "size"}}`` (parsed on each access)."""
        if self.manifest_bytes is None:
            return None
        files: dict[str, dict[str, Any]] = json.loads(self.manifest_bytes)["files"]
        return files

    def to_record(self) -> dict[str, Any]:
        """Return the JSON-able facts for a ``source.observed`` event (no manifest body).

        The counters are left out: they describe this process's work, not the source.
        """
        facts = {name: getattr(self, name) for name in _RECORD_FIELDS.split()}
        return {"schema_version": SOURCE_RECORD_SCHEMA_VERSION, **facts}


def observe_source(
    path: str | os.PathLike[str],
    *,
    root: Path,
    cache: StatCache | None = None,
    store_files: StoreFiles | None = None,
    by_reference: bool = False,
    rehash: bool = False,
    allow_outside: bool = False,
    store_threads: int = 4,
    protected: Sequence[str | os.PathLike[str]] = (),
    stored_sizes: StoredSizes | None = None,
    store_generation: str | None = None,
) -> SourceObservation:
    """Observe a file or folder: digest it, and have its content stored unless by reference.

    Args:
        path: the source, relative to ``root`` or absolute.
        root: the project root; sources must stay inside it unless ``allow_outside``.
        cache: stat cache that lets unchanged files skip hashing; ``None`` hashes all.
        store_files: copies content into the store; ``store.put_files`` fits. Called
            with lists of ``(absolute path, digest)`` pairs (plain strings: a ``Path``
            per file would cost ~7 us) and returns ``(digest, size)`` for each, in
            order. A digest the cache vouches for is handed over once per observation
            (the store skips those it holds); a new or changed file comes with
            ``None``, for the store to hash while copying it (one read), and is then
            stat-ed again like any file read. Files of 1 MiB or more go to up to
            ``store_threads`` threads at once while the walk goes on, so it must be
            thread-safe (stores are). Every call has returned before ``observe_source``
            does. Required unless ``by_reference``. Its first error propagates
            unchanged, unless a file it was given changed or vanished meanwhile
            (:class:`SourceChangedError`, chained to it).
        by_reference: record digests only; ``store_files`` is never called.
        rehash: hash every file, ignoring the cache's entries (which are refreshed).
        allow_outside: accept paths and symlinks leading outside the root or folder.
        store_threads: threads calling ``store_files``; they overlap the store's copies
            and flushes with the walk (see benchmarks/sources.py, rows ``first.copy*``).
            1 calls it from the calling thread only.
        protected: folders the source may neither be in nor hold, whatever the path
            leading there (the project's state folder and its artifact store), nor hold
            a symlink into.
        stored_sizes: the store's bulk lookup (``LocalStore.stored_sizes`` fits): called
            once, with the digests of the files the cache vouches for, it returns
            ``{digest: size}`` for those the store holds. Only the others are handed to
            ``store_files``; without it, every file goes to ``store_files``.
        store_generation: the store's generation token (``LocalStore.generation()``),
            read before this call (ADR 0032). A cache entry that saw its content in the
            store at this same generation skips the ``stored_sizes`` lookup: nothing
            left the store since. Files found or stored now are marked with it. ``None``
            marks nothing and trusts no mark.

    Returns:
        The observation; see :class:`SourceObservation`.

    Raises:
        DefinitionError: the source is an object URI, does not exist, escapes the root, is
            or contains a special file or a symlink cycle, or cannot be read.
        SourceChangedError: a file changed or vanished while it was being read.
        ValueError: ``store_files`` is missing while ``by_reference`` is false.
    """
    text = os.fspath(path)
    if not by_reference and store_files is None:
        raise ValueError("observe_source needs store_files unless by_reference=True")
    if _URI_RE.match(text):
        raise DefinitionError(
            f"source {text!r} is an object URI; object sources need the S3 store, which is "
            "not available yet. Download the object into the project and declare its path."
        )
    if not text:
        raise DefinitionError("source() needs a non-empty path")
    label = Path(text).as_posix()
    location = resolve_source(label, root, allow_outside=allow_outside, protected=protected)
    started_ns = time.time_ns()  # before any stat: the racy-entry reference (see statcache)
    observed_at = format_ts(utcnow())
    try:
        st = os.stat(location)
    except FileNotFoundError:
        raise DefinitionError(f"source {label!r} does not exist; looked at {location}") from None
    except OSError as exc:
        raise unreadable_error(label, location, exc) from exc
    is_dir = stat.S_ISDIR(st.st_mode)
    if not is_dir and not stat.S_ISREG(st.st_mode):
        raise special_file_error(label, location, st.st_mode)
    walk = SourceWalk(
        label,
        location,
        None if by_reference else store_files,
        allow_outside,
        stored_sizes,
        protected=[os.path.realpath(folder) for folder in protected],
        generation=store_generation,
    )
    walk.load(cache, tree=is_dir, rehash=rehash)
    threads = store_threads if walk.store_files is not None and is_dir else 1
    with _thread_pool(threads) as pool:
        walk.pool = pool
        try:
            walk.observe(walk.scan(st) if is_dir else [("", location, st)])
            walk.check_known()
            walk.flush()
            walk.drain(0)
            walk.settled = True
        finally:
            walk.save(started_ns)
            walk.cancel()
    manifest_bytes = _encode_manifest(label, walk.files) if is_dir else None
    if manifest_bytes is not None:
        digest, size, mtime_ns = digest_bytes(manifest_bytes), walk.total, walk.newest
    else:
        (digest, size), mtime_ns = walk.files[""], st.st_mtime_ns
    return SourceObservation(
        path=label,
        location=location,
        kind="folder" if is_dir else "file",
        digest=digest,
        size=size,
        mtime_ns=mtime_ns,
        observed_at=observed_at,
        by_reference=by_reference,
        file_count=len(walk.files),
        manifest_bytes=manifest_bytes,
        hashed_files=walk.hashed_files,
        hashed_bytes=walk.hashed_bytes,
        cached_files=walk.cached_files,
        stored_files=len(walk.stored),
    )


# -- manifest ------------------------------------------------------------------------------
def _thread_pool(threads: int) -> AbstractContextManager[Any]:
    """A pool of ``threads`` storing threads, or nothing for one (then none is imported)."""
    if threads <= 1:
        return nullcontext()
    return _StorePool(threads)


class _StorePool:
    """A thread pool made on its first ``submit``.

    Re-observing a folder whose files the store holds submits nothing, so imports no
    ``concurrent.futures``. Used as :class:`~concurrent.futures.ThreadPoolExecutor` is:
    ``with`` waits for every submitted call on exit.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.executor: ThreadPoolExecutor | None = None

    def __enter__(self) -> _StorePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on one of the pool's threads."""
        if self.executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self.executor = ThreadPoolExecutor(self.threads, "pipetrail-store")
        return self.executor.submit(fn, *args)


def _encode_manifest(label: str, files: dict[str, tuple[str, int]]) -> bytes:
    """Return ``canonical_json`` of the manifest document, without its generic walk.

    Same bytes as ``canonical_json({"files": {path: {"digest": d, "size": n}}, "kind":
    MANIFEST_KIND, "version": MANIFEST_VERSION}).encode()`` (a unit test pins this), about
    four times faster: keys sorted by code point, ``json``'s own string escaping, no
    whitespace; digests are lowercase hex and sizes integers, so neither needs escaping.
    """
    enc = encode_basestring
    body = ",".join(
        f'{enc(name)}:{{"digest":"{digest}","size":{size}}}'
        for name, (digest, size) in sorted(files.items())  # names are unique: sorted by name
    )
    text = f'{{"files":{{{body}}},"kind":"{MANIFEST_KIND}","version":{MANIFEST_VERSION}}}'
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # os.fsdecode turns undecodable bytes into lone surrogates, which UTF-8 refuses.
        bad = next(n for n in sorted(files) if any("\ud800" <= c <= "\udfff" for c in n))
        raise DefinitionError(
            f"source {label!r}: the file name {bad!r} is not valid UTF-8, so the folder's "
            "manifest cannot record it; rename the file"
        ) from None
