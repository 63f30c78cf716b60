"""The walk of one source observation: find files, digest them, hand them to the store.

Owns :class:`SourceWalk`, the state and hot loop behind
:func:`~pipetrail.capture.sources.observe_source`:

* **Finding**: ``os.scandir`` depth first; symlinks inside the folder that point inside it
  are followed (recorded under the link's path), cycles and escapes refused, and so are
  links into a protected folder (pipetrail's state), whatever ``allow_outside`` says.
* **Digesting**: from the :class:`~pipetrail.capture.statcache.StatCache` when a file's
  signature matches a trusted entry; else read and hashed, by plain reads and never a
  memory map (a file truncated while mapped kills the process). Each file is stat-ed
  before and after it is read: a change of size, mtime, inode or device, or a byte count
  other than the size, raises :class:`~pipetrail.capture.source_checks.SourceChangedError`.
* **Storing**: batches of ``(path, digest)`` for the caller's ``store_files``. New and
  changed files go with ``None``: the store hashes them while copying them (one read
  instead of two), and the walk stats them again afterwards like any file it read.
  Files of 1 MiB or more go to a thread pool, so their copies overlap the walk. Files
  the stat cache vouches for are, with the caller's ``stored_sizes``, asked about in one
  call at the end of the walk, and only those the store lacks (or holds with another
  size) go to ``store_files``: a re-run over unchanged data costs one lookup, not one
  existence check per file. With the store's generation (ADR 0032), not even that: an
  entry that saw its content in the store at the generation the store still has needs
  no lookup, and entries found there now are marked with that generation.

Imports only ``pipetrail.capture.{source_checks,statcache}``, ``pipetrail.hashing``,
``pipetrail.errors`` and the standard library.
"""

from __future__ import annotations

import operator
import os
import stat
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from pipetrail.capture.source_checks import (
    ALLOW_OUTSIDE_HINT,
    SourceChangedError,
    refuse_protected,
    special_file_error,
    unreadable_error,
    within,
)
from pipetrail.capture.statcache import ENTRY_SIZE, SIGNATURE_SIZE, signature
from pipetrail.errors import DefinitionError
from pipetrail.hashing import digest_file
from pipetrail.hashing.digest import DIGEST_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from concurrent.futures import Future

    from pipetrail.capture.statcache import StatCache

    class Pool(Protocol):
        """What the walk needs of a thread pool (``ThreadPoolExecutor`` fits)."""

        def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
            """Run ``fn(*args)`` on one of the pool's threads."""

    class _Listing(Protocol):
        """What ``os.scandir`` returns: an iterator of entries that is a context manager."""

        def __iter__(self) -> Iterator[os.DirEntry[str]]: ...
        def __enter__(self) -> _Listing: ...
        def __exit__(self, *exc: object) -> None: ...

    # The store callback: (absolute path, digest or None) pairs in, (digest, size) out.
    StoreFiles = Callable[[list[tuple[str, str | None]]], Sequence[tuple[str, int]]]
    # The store's bulk lookup: digests in, {digest: stored size} for those it holds out.
    StoredSizes = Callable[[list[str]], Mapping[str, int]]
    _Batch = list[tuple[str, str | None]]
    # Files of a batch the store hashes: (index in the batch, name, stat, signature).
    _Deferred = list[tuple[int, str, os.stat_result, bytes]]

__all__ = ["SourceWalk"]

# What must not move while a file is hashed (ctime may: a chmod does not change content).
_identity = operator.attrgetter("st_size", "st_mtime_ns", "st_ino", "st_dev")
# A batch costs the store one flush (a syncfs: 0.1-3 ms idle, more with data), so batches
# are large (copying 100,000 files of 1 KiB: 8.7-9.0 s in batches of 8,192 against
# 9.6-10.2 s for 1,024); the byte bound keeps big files from waiting behind each other.
# Files from _POOL_MIN_SIZE on are stored on the pool (see SourceWalk.store).
_BATCH_FILES, _BATCH_BYTES, _IN_FLIGHT = 8192, 64 * 1024 * 1024, 8
_POOL_MIN_SIZE = 1024 * 1024
# Listing an open folder (where the platform can) lets each entry's stat look up its name
# in that folder instead of resolving the whole path again: about 14% less time for the
# walk of 2,010 files (stat of unchanged files is most of a settled observation).
_SCANDIR_FD = os.scandir in os.supports_fd
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)


class SourceWalk:
    """One observation's state: files found, counters, and the stat-cache bookkeeping."""

    def __init__(
        self,
        label: str,
        location: str,
        store_files: StoreFiles | None,
        allow_outside: bool,
        stored_sizes: StoredSizes | None = None,
        protected: Sequence[str] = (),
        generation: str | None = None,
    ) -> None:
        self.label, self.location = label, location
        self.store_files, self.allow_outside = store_files, allow_outside
        self.stored_sizes = stored_sizes
        # The store's generation token, raw (empty: none, so no entry is vouched for).
        self.generation = (
            bytes.fromhex(generation) if generation and store_files is not None else b""
        )
        # Cache entries whose content is in the store once every batch is stored, not
        # yet marked with this generation: (path, entry as loaded).
        self.unconfirmed: list[tuple[str, bytes]] = []
        self.settled = False  # every batch handed to store_files has been stored
        # Files the cache vouches for, to look up in the store at once: (path, digest, size).
        self.known: list[tuple[str, str, int]] = []
        # Real absolute paths of folders no symlink may lead into (or to a parent of).
        self.protected = tuple(protected)
        self.cache: StatCache | None = None
        self.use_cache = False
        self.trusted: dict[str, bytes] = {}  # popped as files are seen: leftovers are gone
        self.racy: list[str] = []
        self.files: dict[str, tuple[str, int]] = {}  # relative path -> (digest, size)
        self.new_entries: list[tuple[str, bytes, str, int]] = []
        self.stored: set[str] = set()
        self.pool: Pool | None = None
        # Batches in flight on the pool, with their files the store hashes.
        self.pending: deque[tuple[Future[Sequence[tuple[str, int]]], _Batch, _Deferred]]
        self.pending = deque()
        self.pooled: _Batch = []  # for the pool
        self.inline: _Batch = []  # for this thread
        self.pooled_bytes = self.inline_bytes = 0
        # Files of each batch that the store hashes: (index, name, stat, signature).
        self.deferred: _Deferred = []
        self.pooled_deferred: _Deferred = []
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
        gen = self.generation
        confirm = [(path, entry[:ENTRY_SIZE] + gen) for path, entry in self.unconfirmed]
        self.cache.update(
            self.new_entries,
            cached_ns=started_ns,
            remove=stale,
            # With store_files, new entries are of files it stored (see record()).
            stored_at=gen,
            confirm=confirm if gen and self.settled else (),
        )

    def hash_file(self, file: str, before: os.stat_result) -> str:
        """Hash one file, checking that it did not change or vanish meanwhile."""
        try:
            digest, read = digest_file(file)
        except FileNotFoundError:
            raise self.vanished(file) from None
        except OSError as exc:
            raise unreadable_error(self.label, file, exc) from exc
        self.check_unchanged(file, before, read)
        return digest

    def check_unchanged(self, file: str, before: os.stat_result, read: int) -> None:
        """Stat a file just read again; raise if it changed or vanished, else count it."""
        try:
            after = os.stat(file)
        except FileNotFoundError:
            raise self.vanished(file) from None
        except OSError as exc:
            raise unreadable_error(self.label, file, exc) from exc
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

        The hot loop of an observation: one dictionary lookup per unchanged file, and
        for a file whose content the store held at its current generation, nothing more.
        """
        pop, use_cache, files, stored = self.trusted.pop, self.use_cache, self.files, self.stored
        new_entries, store_files, cached, total = self.new_entries, self.store_files, 0, 0
        gen, unconfirmed = self.generation, self.unconfirmed
        for name, file, st in found:
            sig = signature(st)
            hit = pop(file, None)
            known = use_cache and hit is not None and hit.startswith(sig)
            if known and hit is not None:
                digest = DIGEST_PREFIX + hit[SIGNATURE_SIZE:ENTRY_SIZE].hex()
                cached += 1
                if gen:
                    if hit[ENTRY_SIZE:] == gen:  # in the store then, so still there
                        stored.add(digest)
                        files[name] = (digest, st.st_size)
                        total += st.st_size
                        continue
                    unconfirmed.append((file, hit))
            elif store_files is not None:
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
        """Add a file whose digest is known to this thread's batch for ``store_files``.

        Files the cache knows are most likely stored already. With ``stored_sizes`` they
        wait for :meth:`check_known` (one lookup for all of them); otherwise the store
        checks that each exists, a few short system calls, cheapest from this thread.
        """
        if known and self.stored_sizes is not None:
            self.known.append((file, digest, size))
            return
        self.add_inline(file, digest, size)

    def check_known(self) -> None:
        """Look up the files the cache vouched for; hand over those the store lacks.

        A file whose object is missing (never stored, or moved aside since) or stored
        with another size goes to ``store_files`` like any file with a known digest,
        which copies it, or raises when the digest is wrong.
        """
        known, self.known = self.known, []
        if not known or self.stored_sizes is None:
            return
        sizes = self.stored_sizes([digest for _, digest, _ in known])
        for file, digest, size in known:
            if sizes.get(digest) != size:
                self.add_inline(file, digest, size)

    def flush(self) -> None:
        """Hand over the batches gathered so far, keeping a bounded number in flight."""
        store_files = self.store_files
        if store_files is None:
            return
        if self.pooled and self.pool is not None:
            batch, deferred = self.pooled, self.pooled_deferred
            self.pooled, self.pooled_deferred, self.pooled_bytes = [], [], 0
            self.pending.append((self.pool.submit(store_files, batch), batch, deferred))
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
        """Have the store hash a new file while it copies it (digest ``None``).

        Files of ``_POOL_MIN_SIZE`` or more go to the pool: copying and hashing them is
        made of long system calls and BLAKE3 work that release the GIL, so they overlap
        the walk and each other. A small file's store is a handful of short calls (~10 us
        each), and a pool thread waiting for the GIL after each one made a 100,000-file
        copy slower than storing from this thread (17 s against 13 s, measured).
        """
        size = st.st_size
        if size < _POOL_MIN_SIZE or self.pool is None:
            self.deferred.append((len(self.inline), name, st, sig))
            self.add_inline(file, None, size)
            return
        self.pooled_deferred.append((len(self.pooled), name, st, sig))
        self.pooled.append((file, None))
        self.pooled_bytes += size
        if len(self.pooled) >= _BATCH_FILES or self.pooled_bytes >= _BATCH_BYTES:
            self.flush()

    def record(
        self, batch: _Batch, deferred: _Deferred, results: Sequence[tuple[str, int]]
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

    def explain(self, batch: _Batch, deferred: _Deferred, exc: BaseException) -> None:
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
        """Wait for batches in flight until at most ``keep`` remain; re-raise their errors.

        Runs on the walk's thread, so recording the digests the store computed needs
        no lock.
        """
        while len(self.pending) > keep:
            future, batch, deferred = self.pending.popleft()
            try:
                results = future.result()
            except Exception as exc:
                self.explain(batch, deferred, exc)
                raise
            self.record(batch, deferred, results)

    def cancel(self) -> None:
        """Cancel the batches in flight that have not started (after an error)."""
        for future, _, _ in self.pending:
            future.cancel()

    def follow(self, link: str) -> os.stat_result:
        """Stat what a symlink inside the folder points to, refusing escapes and dangling.

        A link into a protected folder (pipetrail's own state), or to a folder holding
        one, is refused even when ``allow_outside`` lets links leave the folder.
        """
        target = os.path.realpath(link)
        for folder in self.protected:
            refuse_protected(self.label, target, folder, link=link)
        if not self.allow_outside and not within(target, self.location):
            raise DefinitionError(
                f"source {self.label!r}: {link} is a symlink to {target}, outside the folder "
                f"{self.location}; copy what it points to into the folder, {ALLOW_OUTSIDE_HINT}"
            )
        try:
            st = os.stat(target)
        except FileNotFoundError:
            raise DefinitionError(
                f"source {self.label!r}: {link} is a broken symlink ({target} does not "
                "exist); remove it or point it at a file"
            ) from None
        except OSError as exc:
            raise unreadable_error(self.label, link, exc) from exc
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            raise special_file_error(self.label, link, st.st_mode)
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
            base = folder if folder.endswith(os.sep) else folder + os.sep
            try:
                fd, entries = _list_folder(folder)
            except FileNotFoundError:
                raise SourceChangedError(
                    f"source {label!r}: folder {folder} vanished while it was being read",
                    file=folder,
                ) from None
            except OSError as exc:
                raise unreadable_error(label, folder, exc) from exc
            try:
                with entries:
                    for entry in entries:
                        name = entry.name
                        if entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                        elif entry.is_symlink():
                            st = self.follow(base + name)
                        elif entry.is_dir(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                        else:
                            raise special_file_error(
                                label, base + name, entry.stat(follow_symlinks=False).st_mode
                            )
                        if st.st_mtime_ns > self.newest:
                            self.newest = st.st_mtime_ns
                        if not stat.S_ISDIR(st.st_mode):
                            yield prefix + name, base + name, st
                            continue
                        key = (st.st_dev, st.st_ino)
                        if key in chain:
                            raise DefinitionError(
                                f"source {label!r}: {base + name} is a symlink to one of its "
                                "own parent folders, so the folder would be infinite; remove it"
                            )
                        stack.append((base + name, f"{prefix}{name}/", (*chain, key)))
            finally:
                if fd is not None:
                    os.close(fd)


def _list_folder(folder: str) -> tuple[int | None, _Listing]:
    """Open a folder's listing: ``(fd to close after it, or None; the scandir iterator)``."""
    if not _SCANDIR_FD:
        return None, os.scandir(folder)
    fd = os.open(folder, _FOLDER_FLAGS)
    try:
        return fd, os.scandir(fd)
    except BaseException:
        os.close(fd)
        raise
