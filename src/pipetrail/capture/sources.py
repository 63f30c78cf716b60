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
store can make a whole batch durable at once (``ContentStore.put_files`` fits); for small
new files the digest is ``None`` and the store hashes them while copying them. So this
module imports only ``pipetrail.core``, ``pipetrail.hashing``, ``pipetrail.errors``,
``pipetrail.capture.statcache`` and the standard library; never ``store``, ``ledger`` or
``execution``.
"""

from __future__ import annotations

import json
import mmap
import operator
import os
import re
import stat
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipetrail.capture.statcache import SIGNATURE_SIZE, signature
from pipetrail.core.clock import format_ts, utcnow
from pipetrail.errors import DefinitionError
from pipetrail.hashing import Hasher, digest_bytes, digest_file
from pipetrail.hashing.digest import DIGEST_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from pipetrail.capture.statcache import StatCache

    # The store callback: (absolute path, digest or None) pairs in, (digest, size) out.
    _StoreFiles = Callable[[list[tuple[str, str | None]]], Sequence[tuple[str, int]]]

__all__ = [
    "MANIFEST_KIND",
    "MANIFEST_VERSION",
    "SOURCE_RECORD_SCHEMA_VERSION",
    "SourceChangedError",
    "SourceObservation",
    "observe_source",
]

SOURCE_RECORD_SCHEMA_VERSION = 1
MANIFEST_KIND = "pipetrail.folder_manifest"
MANIFEST_VERSION = 1
_RECORD_FIELDS = "path location kind digest size mtime_ns observed_at by_reference file_count"
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# What must not move while a file is hashed (ctime may: a chmod does not change content).
_identity = operator.attrgetter("st_size", "st_mtime_ns", "st_ino", "st_dev")
_STREAM_SIZE, _CHUNK, _BUFFERS = 4 * 1024 * 1024, 1024 * 1024, threading.local()
# A batch costs the store one flush (a syncfs: 0.1-3 ms idle, more with data), so batches
# are large (copying 100,000 files of 1 KiB: 8.7-9.0 s in batches of 8,192 against
# 9.6-10.2 s for 1,024); the byte bound keeps big files from waiting behind each other.
# Files from _POOL_MIN_SIZE on are stored on the pool (see _Walk.store).
_BATCH_FILES, _BATCH_BYTES, _IN_FLIGHT = 8192, 64 * 1024 * 1024, 8
_POOL_MIN_SIZE = 1024 * 1024
_ALLOW = "or allow it explicitly with source(..., allow_outside=True)"


class SourceChangedError(DefinitionError):
    """A source file changed or vanished while it was being observed.

    Attributes:
        file: the absolute path of the file (or folder) concerned.
    """

    def __init__(self, message: str, *, file: str) -> None:
        super().__init__(message)
        self.file = file


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
        stored_files: distinct digests handed to ``store_files`` or computed by it.
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
    store_files: _StoreFiles | None = None,
    by_reference: bool = False,
    rehash: bool = False,
    allow_outside: bool = False,
    store_threads: int = 4,
) -> SourceObservation:
    """Observe a file or folder: digest it, and have its content stored unless by reference.

    Args:
        path: the source, relative to ``root`` or absolute.
        root: the project root; sources must stay inside it unless ``allow_outside``.
        cache: stat cache that lets unchanged files skip hashing; ``None`` hashes all.
        store_files: copies content into the store; ``store.put_files`` fits. Called
            with lists of ``(absolute path, digest)`` pairs (plain strings: a ``Path``
            per file would cost ~7 us) and returns ``(digest, size)`` for each, in
            order. A digest the walk knows is handed over once per observation (the
            store skips those it holds); a new file under ``_POOL_MIN_SIZE`` (1 MiB)
            comes with ``None``, for the store to hash while copying it, and is then
            stat-ed again like any file read. Files of 1 MiB or more go to up to
            ``store_threads`` threads at once while hashing goes on, so it must be
            thread-safe (stores are). Every call has returned before ``observe_source``
            does. Required unless ``by_reference``. Its first error propagates
            unchanged, unless a file it was given changed or vanished meanwhile
            (:class:`SourceChangedError`, chained to it).
        by_reference: record digests only; ``store_files`` is never called.
        rehash: hash every file, ignoring the cache's entries (which are refreshed).
        allow_outside: accept paths and symlinks leading outside the root or folder.
        store_threads: threads calling ``store_files``; they overlap the store's flushes
            with hashing (see benchmarks/sources.py, rows ``first.copy*``). 1 calls it
            from the calling thread only.

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
    location = _resolve(label, root, allow_outside=allow_outside)
    started_ns = time.time_ns()  # before any stat: the racy-entry reference (see statcache)
    observed_at = format_ts(utcnow())
    try:
        st = os.stat(location)
    except FileNotFoundError:
        raise DefinitionError(f"source {label!r} does not exist; looked at {location}") from None
    except OSError as exc:
        raise _unreadable(label, location, exc) from exc
    is_dir = stat.S_ISDIR(st.st_mode)
    if not is_dir and not stat.S_ISREG(st.st_mode):
        raise _special(label, location, st.st_mode)
    walk = _Walk(label, location, None if by_reference else store_files, allow_outside)
    walk.load(cache, tree=is_dir, rehash=rehash)
    threads = store_threads if walk.store_files is not None and is_dir else 1
    with ThreadPoolExecutor(threads, "pipetrail-store") if threads > 1 else nullcontext() as pool:
        walk.pool = pool
        try:
            walk.observe(walk.scan(st) if is_dir else [("", location, st)])
            walk.flush()
            walk.drain(0)
        finally:
            walk.save(started_ns)
            for future in walk.pending:
                future.cancel()
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


# -- paths, errors, manifest ---------------------------------------------------------------
def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(os.path.join(parent, ""))


def _resolve(label: str, root: Path, *, allow_outside: bool) -> str:
    """Return the real absolute path of a source, refusing escapes from the root."""
    root_abs = os.path.abspath(root)
    given = os.path.join(root_abs, label)  # an absolute label replaces root_abs
    if not allow_outside and not _within(os.path.normpath(given), root_abs):
        raise DefinitionError(
            f"source {label!r} is outside the project root {root_abs}; sources must stay "
            f"inside the project so runs can be reproduced from it: move the data in, {_ALLOW}"
        )
    real = os.path.realpath(given)
    if not allow_outside and not _within(real, os.path.realpath(root_abs)):
        raise DefinitionError(
            f"source {label!r} goes through a symlink to {real}, outside the project root "
            f"{root_abs}; copy the data into the project, {_ALLOW}"
        )
    return real


_SPECIAL = {stat.S_IFSOCK: "a socket", stat.S_IFIFO: "a named pipe (FIFO)"}
_SPECIAL |= {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def _special(label: str, file: str, mode: int) -> DefinitionError:
    what = _SPECIAL.get(stat.S_IFMT(mode), "a special file")
    return DefinitionError(
        f"source {label!r}: {file} is {what}, not a regular file or folder; sources may "
        "hold only files and folders, so move it out of the source"
    )


def _unreadable(label: str, file: str, exc: OSError) -> DefinitionError:
    return DefinitionError(
        f"source {label!r}: {file} could not be read ({exc.strerror or exc}); give the "
        "current user read access to it"
    )


def _encode_manifest(label: str, files: dict[str, tuple[str, int]]) -> bytes:
    """Return ``canonical_json`` of the manifest document, without its generic walk.

    Same bytes as ``canonical_json({"files": {path: {"digest": d, "size": n}}, "kind":
    MANIFEST_KIND, "version": MANIFEST_VERSION}).encode()`` (a unit test pins this), about
    four times faster: keys sorted by code point, ``json``'s own string escaping, no
    whitespace; digests are lowercase hex and sizes integers, so neither needs escaping.
    """
    enc = encode_basestring
    body = ",".join(
        f'{enc(name)}:{{"digest":"{files[name][0]}","size":{files[name][1]}}}'
        for name in sorted(files)
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


def _digest_stream(file: str) -> tuple[str, int]:
    """Digest a large file by plain reads into a reused page-aligned buffer.

    ``digest_file`` memory-maps files of 4 MiB or more; a source truncated while mapped
    kills the process with SIGBUS (measured), where a read just returns fewer bytes and the
    change is reported. Costs about 30% over the mapping on 100 MiB files.
    """
    view: memoryview | None = getattr(_BUFFERS, "view", None)
    if view is None:
        view = _BUFFERS.view = memoryview(mmap.mmap(-1, _CHUNK))
    hasher = Hasher()
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        while n := os.readv(fd, [view]):
            hasher.update(view[:n])
    finally:
        os.close(fd)
    return hasher.digest(), hasher.size


# -- the walk ------------------------------------------------------------------------------
class _Walk:
    """One observation's state: files found, counters, and the stat-cache bookkeeping."""

    def __init__(
        self,
        label: str,
        location: str,
        store_files: _StoreFiles | None,
        allow_outside: bool,
    ) -> None:
        self.label, self.location = label, location
        self.store_files, self.allow_outside = store_files, allow_outside
        self.cache: StatCache | None = None
        self.use_cache = False
        self.trusted: dict[str, bytes] = {}  # popped as files are seen: leftovers are gone
        self.racy: list[str] = []
        self.files: dict[str, tuple[str, int]] = {}  # relative path -> (digest, size)
        self.new_entries: list[tuple[str, bytes, str, int]] = []
        self.stored: set[str] = set()
        self.pool: ThreadPoolExecutor | None = None
        self.pending: deque[Future[object]] = deque()
        self.pooled: list[tuple[str, str | None]] = []  # for the pool
        self.inline: list[tuple[str, str | None]] = []  # for this thread
        self.pooled_bytes = self.inline_bytes = 0
        # Files in ``inline`` that the store hashes: (index, name, stat, signature).
        self.deferred: list[tuple[int, str, os.stat_result, bytes]] = []
        self.hashed_files = self.hashed_bytes = self.cached_files = self.total = self.newest = 0
        self.complete = False

    def load(self, cache: StatCache | None, *, tree: bool, rehash: bool) -> None:
        """Read the cache's entries for the source (``tree``: for every file under it)."""
        self.cache, self.use_cache = cache, not rehash
        if cache is not None:
            self.trusted, self.racy = cache.load(self.location, tree=tree)

    def save(self, started_ns: int) -> None:
        """Write new entries; after a complete walk, also forget files that are gone.

        Entries are kept even when the walk failed: each one was verified on its own.
        """
        if self.cache is None:
            return
        stale: list[str] = []
        if self.complete:
            cut = len(os.path.join(self.location, ""))
            stale = [*self.trusted, *(k for k in self.racy if k[cut:] not in self.files)]
        self.cache.update(self.new_entries, cached_ns=started_ns, remove=stale)

    def hash_file(self, file: str, before: os.stat_result) -> str:
        """Hash one file, checking that it did not change or vanish meanwhile."""
        try:
            digest, read = (
                _digest_stream(file) if before.st_size >= _STREAM_SIZE else digest_file(file)
            )
        except FileNotFoundError:
            raise self.vanished(file) from None
        except OSError as exc:
            raise _unreadable(self.label, file, exc) from exc
        self.check_unchanged(file, before, read)
        return digest

    def check_unchanged(self, file: str, before: os.stat_result, read: int) -> None:
        """Stat a file just read again; raise if it changed or vanished, else count it."""
        try:
            after = os.stat(file)
        except FileNotFoundError:
            raise self.vanished(file) from None
        except OSError as exc:
            raise _unreadable(self.label, file, exc) from exc
        if read != before.st_size or _identity(after) != _identity(before):
            raise SourceChangedError(
                f"source {self.label!r}: file {file} changed while it was being read "
                f"({before.st_size} bytes before, {read} read, {after.st_size} after); run "
                "again once nothing writes to it",
                file=file,
            )
        self.hashed_files += 1
        self.hashed_bytes += read

    def vanished(self, file: str) -> SourceChangedError:
        """The error for a file that disappeared while it was being observed."""
        return SourceChangedError(
            f"source {self.label!r}: file {file} vanished while it was being read; run "
            "again once nothing moves or deletes files in the source",
            file=file,
        )

    def observe(self, found: Iterable[tuple[str, str, os.stat_result]]) -> None:
        """Digest each ``(name, absolute path, stat)`` found, from the cache when possible.

        The hot loop of an observation: one dictionary lookup per unchanged file.
        """
        pop, use_cache, files, stored = self.trusted.pop, self.use_cache, self.files, self.stored
        new_entries, store_files, cached, total = self.new_entries, self.store_files, 0, 0
        for name, file, st in found:
            sig = signature(st)
            hit = pop(file, None)
            known = use_cache and hit is not None and hit.startswith(sig)
            if known and hit is not None:
                digest = DIGEST_PREFIX + hit[SIGNATURE_SIZE:].hex()
                cached += 1
            elif store_files is not None and st.st_size < _POOL_MIN_SIZE:
                # The store hashes it while copying it, one read instead of two (about
                # 10% of a first copy of many small files); recorded by record().
                total += st.st_size
                self.defer(name, file, st, sig)
                continue
            else:
                digest = self.hash_file(file, st)
                new_entries.append((file, sig, digest, max(st.st_mtime_ns, st.st_ctime_ns)))
            files[name] = (digest, st.st_size)
            total += st.st_size
            if store_files is not None and digest not in stored:
                stored.add(digest)
                self.store(file, digest, st.st_size, known=known)
        self.cached_files, self.total = cached, total
        self.complete = True

    def store(self, file: str, digest: str, size: int, *, known: bool) -> None:
        """Add a file to a batch for ``store_files``; hand the batch over once it is full.

        Only files of ``_POOL_MIN_SIZE`` or more go to the pool: storing them is made of
        long system calls that release the GIL, so it overlaps hashing. A small file's
        store is a handful of short ones (~10 us each), and a pool thread waiting for the
        GIL after each one made a 100,000-file copy slower than storing from this thread
        (17 s against 13 s, measured). Files the cache knows are most likely stored
        already: the store only checks that they exist.
        """
        if known or size < _POOL_MIN_SIZE or self.pool is None:
            self.add_inline(file, digest, size)
            return
        self.pooled.append((file, digest))
        self.pooled_bytes += size
        if len(self.pooled) >= _BATCH_FILES or self.pooled_bytes >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Hand over the batches gathered so far, keeping a bounded number in flight."""
        store_files = self.store_files
        if store_files is None:
            return
        if self.pooled and self.pool is not None:
            batch, self.pooled, self.pooled_bytes = self.pooled, [], 0
            self.pending.append(self.pool.submit(store_files, batch))
            self.drain(_IN_FLIGHT)
        if self.inline:
            batch, deferred = self.inline, self.deferred
            self.inline, self.deferred, self.inline_bytes = [], [], 0
            try:
                results = store_files(batch)
            except Exception as exc:
                self.explain(batch, deferred, exc)
                raise
            if deferred:
                self.record(batch, deferred, results)

    def add_inline(self, file: str, digest: str | None, size: int) -> None:
        """Add a file to this thread's batch; hand the batch over once it is full."""
        self.inline.append((file, digest))
        self.inline_bytes += size
        if len(self.inline) >= _BATCH_FILES or self.inline_bytes >= _BATCH_BYTES:
            self.flush()

    def defer(self, name: str, file: str, st: os.stat_result, sig: bytes) -> None:
        """Have the store hash a small new file while it copies it (digest ``None``)."""
        self.deferred.append((len(self.inline), name, st, sig))
        self.add_inline(file, None, st.st_size)

    def record(
        self,
        batch: list[tuple[str, str | None]],
        deferred: list[tuple[int, str, os.stat_result, bytes]],
        results: Sequence[tuple[str, int]],
    ) -> None:
        """Take the digests the store computed for deferred files, once each is checked."""
        if results is None or len(results) != len(batch):
            raise TypeError(
                f"store_files returned {results!r:.80} for {len(batch)} files; it must return "
                "one (digest, size) per file, in order, as ContentStore.put_files does"
            )
        for index, name, st, sig in deferred:
            file = batch[index][0]
            digest, read = results[index]
            self.check_unchanged(file, st, read)
            self.files[name] = (digest, st.st_size)
            self.new_entries.append((file, sig, digest, max(st.st_mtime_ns, st.st_ctime_ns)))
            self.stored.add(digest)

    def explain(
        self,
        batch: list[tuple[str, str | None]],
        deferred: list[tuple[int, str, os.stat_result, bytes]],
        exc: Exception,
    ) -> None:
        """When the store failed on a deferred file that changed or vanished, say so."""
        for index, _, st, _ in deferred:
            file = batch[index][0]
            try:
                after = os.stat(file)
            except FileNotFoundError:
                raise self.vanished(file) from exc
            except OSError:
                continue
            if _identity(after) != _identity(st):
                raise SourceChangedError(
                    f"source {self.label!r}: file {file} changed while it was being read "
                    f"({st.st_size} bytes before, {after.st_size} after); run again once "
                    "nothing writes to it",
                    file=file,
                ) from exc

    def drain(self, keep: int) -> None:
        """Wait for batches in flight until at most ``keep`` remain; re-raise their errors."""
        while len(self.pending) > keep:
            self.pending.popleft().result()

    def follow(self, link: str) -> os.stat_result:
        """Stat what a symlink inside the folder points to, refusing escapes and dangling."""
        target = os.path.realpath(link)
        if not self.allow_outside and not _within(target, self.location):
            raise DefinitionError(
                f"source {self.label!r}: {link} is a symlink to {target}, outside the folder "
                f"{self.location}; copy what it points to into the folder, {_ALLOW}"
            )
        try:
            st = os.stat(target)
        except FileNotFoundError:
            raise DefinitionError(
                f"source {self.label!r}: {link} is a broken symlink ({target} does not "
                "exist); remove it or point it at a file"
            ) from None
        except OSError as exc:
            raise _unreadable(self.label, link, exc) from exc
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            raise _special(self.label, link, st.st_mode)
        return st

    def scan(self, top: os.stat_result) -> Iterator[tuple[str, str, os.stat_result]]:
        """Yield ``(relative name, absolute path, stat)`` of every file, walking with scandir."""
        label = self.label
        self.newest = top.st_mtime_ns
        # Each pending folder carries the (device, inode) of its ancestors, to find cycles.
        stack: list[tuple[str, str, tuple[tuple[int, int], ...]]] = [
            (self.location, "", ((top.st_dev, top.st_ino),))
        ]
        while stack:
            folder, prefix, chain = stack.pop()
            try:
                entries = os.scandir(folder)
            except FileNotFoundError:
                raise SourceChangedError(
                    f"source {label!r}: folder {folder} vanished while it was being read",
                    file=folder,
                ) from None
            except OSError as exc:
                raise _unreadable(label, folder, exc) from exc
            with entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                    elif entry.is_symlink():
                        st = self.follow(entry.path)
                    elif entry.is_dir(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                    else:
                        raise _special(label, entry.path, entry.stat(follow_symlinks=False).st_mode)
                    if st.st_mtime_ns > self.newest:
                        self.newest = st.st_mtime_ns
                    if not stat.S_ISDIR(st.st_mode):
                        yield prefix + entry.name, entry.path, st
                        continue
                    key = (st.st_dev, st.st_ino)
                    if key in chain:
                        raise DefinitionError(
                            f"source {label!r}: {entry.path} is a symlink to one of its own "
                            "parent folders, so the folder would be infinite; remove it"
                        )
                    stack.append((entry.path, f"{prefix}{entry.name}/", (*chain, key)))
