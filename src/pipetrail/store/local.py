"""A content store in a local folder: loose object files, and a pack for small objects.

Owns :class:`LocalStore`, the :class:`~pipetrail.store.base.ContentStore` over one folder:

```
root/
  ab/cdef...        object whose digest is blake3:abcdef... (2 hex chars shard, 62 in the name)
  pack.db           objects up to 16 KiB, as SQLite rows (ADR 0006), and the index of
                    segments/ (ADR 0009)
  segments/         objects of 16 KiB to 1 MiB copied in batches, appended to shared files
  tmp/              writers' temp files (same filesystem, so the final rename is atomic)
  quarantine/       objects that failed verification, moved aside (never deleted)
  generation        a token that changes whenever objects may have left (ADR 0032)
```

An object's digest does not depend on where it lives; every read looks in each place.
Every read hands out only bytes that hash to the digest asked for (ADR 0011): a corrupt
object is quarantined and :class:`~pipetrail.errors.IntegrityError` raised, and writing
an object whose name holds corrupt bytes replaces them.
The parts: :mod:`pipetrail.store.loose` (object files and the atomic-write protocol),
:mod:`pipetrail.store.loose_read` (reading them back verified),
:mod:`pipetrail.store.pack` (the pack and the segment index),
:mod:`pipetrail.store.segments` (segment files), :mod:`pipetrail.store.local_put` (copying files
in, one file or a batch made durable with one flush) and :mod:`pipetrail.store.os_errors`
(every ``OSError`` becomes a :class:`~pipetrail.errors.StoreError` with the path and a
fix, or :class:`~pipetrail.errors.NotFoundError`).

Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and ``pipetrail.store``'s own
modules; never ``ledger``, ``execution``, ``capture`` or ``cli``.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar, cast

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.hashing import is_digest
from pipetrail.hashing.digest import DIGEST_PREFIX
from pipetrail.store.generation import read_generation
from pipetrail.store.local_put import FileCopier
from pipetrail.store.loose import LooseObjects
from pipetrail.store.loose_read import LooseReader
from pipetrail.store.loose_stream import store_parts
from pipetrail.store.os_errors import map_os_errors
from pipetrail.store.pack import SMALL_OBJECT_LIMIT, SmallObjectPack
from pipetrail.store.segments import SEGMENT_OBJECT_LIMIT
from pipetrail.store.verified import corrupt_error, digest_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

__all__ = ["LocalStore"]

T = TypeVar("T")
R = TypeVar("R")

_PREFIX_LEN = len(DIGEST_PREFIX)
_TMP_STALE_SECONDS = 3600.0


class LocalStore:
    """Content store in a local folder (implements :class:`~pipetrail.store.base.ContentStore`).

    Safe to share between threads and processes: writers never touch each other's temp
    files, the final rename is atomic, and pack writes are SQLite transactions. Object
    files are read-only (mode ``0o444``).

    Reads are verified (ADR 0011): :meth:`get_bytes` hashes the bytes it returns,
    :meth:`open` and :meth:`local_path` hash the file before handing it out (streaming),
    except a loose file this store verified earlier in this process whose stat signature
    is unchanged. A corrupt object is moved to ``quarantine/`` and
    :class:`~pipetrail.errors.IntegrityError` raised, naming its digest. Writes check an
    object already stored under the name (size first, then its bytes) and replace it when
    it is corrupt; :meth:`put_files` with a digest given checks only the size (see there).

    Args:
        root: the store's folder; created if missing (unless ``create`` is false).
        fsync: make each new object durable before it is renamed into place (default),
            and its shard folder at the next :meth:`sync`. ``False`` keeps writes atomic against
            a crashed or killed process but not against a power loss or kernel crash; use
            it only for scratch stores.
        small_objects: objects up to this many bytes go to the pack (ADR 0006); 0 keeps
            every object in its own file.
        create: create the folder and its ``tmp/`` when the store is opened (default).
            ``False`` opens it as it is, for commands that only read (``store verify``):
            nothing is created until something is written or quarantined, and a missing
            folder is an empty store.

    Durability: an object file's bytes are on disk before its final name exists, so no
    power loss can leave partial content under a final name (:meth:`put_files` gets there
    for a whole batch with one ``syncfs``). The rename itself is made durable by fsyncing
    the shard folders at :meth:`sync`, once per folder however many objects landed in it;
    packed objects are written in transactions, durable at the checkpoint :meth:`sync`
    forces. Callers that record references to objects (the runner) call ``sync`` before
    the run's record is final. A power loss between a put and the next ``sync`` can lose
    an object (it is then reported missing), never leave it partial.

    Example:
        >>> store = LocalStore(tmp_path / "objects")  # doctest: +SKIP
        >>> digest = store.put_bytes(b"hello")  # doctest: +SKIP
        >>> store.get_bytes(digest)  # doctest: +SKIP
        b'hello'
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        small_objects: int = SMALL_OBJECT_LIMIT,
        create: bool = True,
    ) -> None:
        self.root = Path(root)
        self._small_limit = small_objects
        self._root = os.fspath(self.root.absolute())
        self._loose = LooseObjects(self._root, fsync=fsync, create=create)
        self._reader = LooseReader(self._loose)
        # Objects up to `small_objects` bytes live in one SQLite pack (ADR 0006).
        self._pack = SmallObjectPack(Path(self._root) / "pack.db")
        self._copier = FileCopier(
            self._loose,
            self._pack,
            small_limit=small_objects,
            reader=self._reader,
            packed_intact=self._packed_intact,
        )

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    # -- paths -----------------------------------------------------------------------
    def _path(self, digest: str) -> str:
        """The object file's name; NotFoundError for something that is not a digest."""
        if not is_digest(digest):
            raise NotFoundError(
                f"{digest!r} is not a digest, so no object in {self._root} has it; "
                f"pass a full digest of the form '{DIGEST_PREFIX}<64 lowercase hex>'."
            )
        return self._loose.final(digest)

    def _not_found(self, digest: str) -> NotFoundError:
        return NotFoundError(
            f"Object {digest} is not in the local store {self._root}; store it first, or "
            "check that the run that produced it used this store."
        )

    # -- writing ---------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its digest; a no-op when it is already stored intact.

        An object already stored under the digest is checked first (its size, then its
        bytes); a corrupt one is quarantined and written anew.

        Raises:
            StoreError: the object could not be written (disk full, permissions...).
        """
        digest = digest_of(data)
        if self._reader.intact(digest, len(data)):
            return digest
        if len(data) <= self._small_limit:
            replaced = self._pack.put(digest, data)
            if replaced is not None:
                self._loose.quarantine_bytes(digest, replaced)
        elif len(data) <= SEGMENT_OBJECT_LIMIT and self._packed_intact(digest):
            return digest  # copied in by a batch, into a segment (ADR 0009)
        else:
            self._loose.write(digest, data)
        return digest

    def put_parts(
        self, parts: Iterable[memoryview], size: int, check: Callable[[], None] | None = None
    ) -> str:
        """Store the object made of ``parts`` (``size`` bytes in all); return its digest.

        For content made while it is stored (encrypted): from 1 MiB each part is hashed
        and written on another thread while the next is made (:mod:`.loose_stream`);
        smaller objects are joined and stored by :meth:`put_bytes`. ``parts`` may reuse
        two buffers in turn. ``check`` runs before the object is named (and its error
        leaves nothing stored). An intact object already stored is kept, a corrupt one
        quarantined and replaced, as by :meth:`put_bytes`.

        Raises:
            StoreError: the object could not be written, or ``parts`` made not ``size`` bytes.
        """
        if size > max(self._small_limit, SEGMENT_OBJECT_LIMIT):
            return store_parts(self._reader, parts, size, check)
        data = b"".join(bytes(part) for part in parts)
        if check is not None:
            check()
        if len(data) != size:
            raise StoreError(f"an object of {size} bytes was expected, {len(data)} were made")
        return self.put_bytes(data)

    def _packed_intact(self, digest: str) -> bool:
        """Return whether the pack holds the object intact (a corrupt one is quarantined)."""
        if not self._pack.exists(digest):
            return False
        try:
            self._packed(digest)
        except (IntegrityError, NotFoundError):
            return False
        return True

    def put_file(self, path: Path, *, digest: str | None = None) -> tuple[str, int]:
        """Copy a file into the store and return ``(digest, size)``.

        Args:
            path: the file to copy; it is not modified.
            digest: the file's digest when the caller already knows it. If an object with
                this digest exists, nothing is read. Otherwise the copy is verified
                against it.

        Raises:
            IntegrityError: the bytes copied do not hash to ``digest`` (or to the digest
                computed just before copying): the file changed while being read.
            StoreError: the file could not be read or the object could not be written.
        """
        return self._copier.put_file(os.fspath(path), digest)

    def put_files(
        self, items: Sequence[tuple[str | os.PathLike[str], str | None]]
    ) -> list[tuple[str, int]]:
        """Copy many files into the store with one flush; return ``(digest, size)`` per item.

        Behaves like calling :meth:`put_file` on each item (same checks, same errors),
        but the new objects are made durable together: the object files with one
        ``syncfs(2)`` per call instead of one fsync each (measured on ext4: about 0.4 ms
        per fsync; a syncfs after 1,000 new objects of 1 KiB, 12 ms), and the small ones
        go to the pack in one transaction (100,000 files of 1 KiB: 4.3 s for a source
        folder's first copy, against 11.7 s as one file each). Files whose digest is given
        and already stored, or repeated in the batch, are not copied. The steps and the
        durability argument are in :mod:`pipetrail.store.local_put`.

        Args:
            items: ``(path, digest)`` pairs. With ``digest=None`` the file is read once,
                hashed while it is copied, and stored under the digest of what was read
                (``put_file`` reads it twice); the copy is dropped if that object is
                stored already.

        Returns:
            ``(digest, size)`` for each item, in the order given.

        Raises:
            IntegrityError: a file's bytes do not hash to the digest given for it (it
                changed while being read) or do not have the size of the object already
                stored under it. Nothing the batch copied is then stored.
            StoreError: a file could not be read or an object could not be written. New
                object files renamed into place before the error stay (each complete);
                the others are not stored.
        """
        return self._copier.put_files(items)

    def hold_small_writes(self) -> None:
        """Keep small objects put from now on in memory until :meth:`commit_small_writes`.

        They read back at once through this store object; other processes see them once
        committed. The runner holds them during a run and commits them before appending
        the events that name them, so the small outputs of many steps share one pack
        transaction (see :mod:`pipetrail.store.pack`).
        """
        self._pack.hold()

    def take_small_writes(self) -> dict[str, bytes]:
        """Stop holding small writes; return them unwritten (``{digest: bytes}``).

        A worker process hands them to the coordinator, which commits them in its own
        batch (one writer of the pack instead of every worker contending for it).
        """
        return self._pack.take_held()

    def commit_small_writes(self, *, release: bool = False) -> None:
        """Write the small objects held in memory in one transaction; ``release`` stops holding.

        Raises:
            StoreError: they could not be written (they stay held).
        """
        for digest, corrupt in self._pack.commit_held(release=release):
            self._loose.quarantine_bytes(digest, corrupt)

    def sync(self) -> None:
        """Make every object stored so far durable: checkpoint the pack, fsync renames.

        Small objects held in memory (:meth:`hold_small_writes`) are committed first. See
        :meth:`pipetrail.store.loose.LooseObjects.sync` for how shard folders are flushed
        (one ``syncfs`` from 64 folders on).
        """
        self.commit_small_writes()
        self._pack.sync()
        self._loose.sync()

    # -- reading ---------------------------------------------------------------------
    def get_bytes(self, digest: str) -> bytes:
        """Return the bytes stored under ``digest``, once they hash to it.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: the object's bytes do not hash to ``digest``; it was moved to
                ``quarantine/`` (and is no longer stored).
            StoreError: the object exists but could not be read.
        """
        self._path(digest)  # NotFoundError for a non-digest
        data = self._from_loose(self._reader.read, digest)
        return data if data is not None else self._packed(digest)

    def _from_loose(self, read: Callable[[str], R | None], digest: str) -> R | None:
        """``read(digest)`` from the loose object file; None when there is none to read.

        None also when the loose file was corrupt (it is quarantined) but the pack holds
        the object: a loose copy made for a caller that needed a file (see
        :meth:`local_path`); the caller then reads the pack's, which is verified too.
        """
        try:
            return read(digest)
        except IntegrityError:
            if not self._pack.exists(digest):
                raise
            return None

    def _packed(self, digest: str) -> bytes:
        """Read a packed (or segment) object, verified; quarantine it when corrupt."""
        data = self._pack.get(digest)
        if data is None:
            raise self._not_found(digest)
        actual = digest_of(data)
        if actual != digest:
            where = self._pack.location(digest)
            self._loose.quarantine_bytes(digest, data)
            self._pack.remove_corrupt(digest, data)
            raise corrupt_error(digest, actual, where=where, quarantine=self._loose.quarantine)
        return data

    def read_with(self, digest: str, reader: Callable[[BinaryIO, int], T]) -> T:
        """Run ``reader(file, size)`` on the object's bytes while they are hashed.

        For a reader that turns the bytes into something else in one pass (decryption):
        a large object file is hashed on another thread while ``reader`` reads it, and
        what ``reader`` returns is handed back only once the bytes hash to ``digest``.
        ``reader`` must not let anything it read out before it returns.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: the object is corrupt (now quarantined), or ``reader``'s own.
        """
        self._path(digest)
        found = self._from_loose(lambda d: self._reader.read_with(d, reader), digest)
        if found is not None:
            return found[0]
        data = self._packed(digest)
        return reader(cast("BinaryIO", io.BytesIO(data)), len(data))

    def open(self, digest: str) -> BinaryIO:
        """Open the object for reading (binary), once verified; the caller closes it.

        A large object is hashed before it is opened (a streaming read of the file; no
        second hash while it is unchanged in this process), so nothing read from the
        file object can be corrupt.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: the object is corrupt (now quarantined).
        """
        self._path(digest)
        found = self._from_loose(self._reader.open, digest)
        return found if found is not None else io.BytesIO(self._packed(digest))

    def peek(self, digest: str, size: int) -> bytes:
        """The first ``size`` bytes of an object, NOT verified against its digest.

        Only to decide what to do with an object without reading it all (which data key
        a sealed object's header names); never to hand out its content, which every
        other read verifies.

        Raises:
            NotFoundError: no object has this digest.
            StoreError: the object could not be read.
        """
        path = self._path(digest)
        with map_os_errors(f"read object {digest}", path, self._root):
            try:
                with open(path, "rb") as f:
                    return f.read(size)
            except FileNotFoundError:
                pass
        data = self._pack.get(digest)
        if data is None:
            raise self._not_found(digest)
        return data[:size]

    def local_path(self, digest: str) -> Path:
        """Return the object's read-only file, once verified; do not modify it.

        The file is hashed before its path is returned (unless verified and unchanged
        since, in this process); what the caller reads from it later is not checked
        again: object files are read-only and nothing in pipetrail writes them.

        Raises:
            NotFoundError: no object has this digest.
            IntegrityError: the object is corrupt (now quarantined).
        """
        path = self._path(digest)
        if self._from_loose(self._reader.path, digest) is None:
            # A packed object gets a loose copy on demand: callers need a real file.
            self._loose.write(digest, self._packed(digest))
        return Path(path)

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored under ``digest`` (False for a non-digest)."""
        if not is_digest(digest):
            return False
        # The pack first: small objects, the most numerous, are there (one indexed
        # lookup); a large one costs that lookup before its file's ``stat``.
        return self._pack.exists(digest) or self._loose.exists(digest)

    def existing(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` stored here (a bulk :meth:`exists`; non-digests left out).

        One query answers for every packed object (found in the pack's index of
        digests, without reading the objects); each other one costs a ``stat``.

        Raises:
            StoreError: the pack could not be read.
        """
        wanted = [digest for digest in dict.fromkeys(digests) if is_digest(digest)]
        found = self._pack.existing(wanted)
        if len(found) < len(wanted):
            exists = self._loose.exists
            found.update(d for d in wanted if d not in found and exists(d))
        return found

    def stored_sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """Return ``{digest: size}`` for those of ``digests`` stored here (a bulk :meth:`size`).

        One query answers for every packed object; each other one costs a ``stat``. What
        a caller that knows a file's digest and size asks before :meth:`put_files` (source
        observation: files the stat cache vouches for). Non-digests are left out.

        Raises:
            StoreError: the pack or an object file could not be read.
        """
        wanted = [digest for digest in dict.fromkeys(digests) if is_digest(digest)]
        found = self._pack.sizes(wanted)
        for digest in wanted:
            if digest not in found:
                path = self._loose.final(digest)
                with (
                    map_os_errors(f"stat object {digest}", path, self._root),
                    contextlib.suppress(FileNotFoundError),
                ):
                    found[digest] = os.stat(path).st_size
        return found

    def generation(self) -> str | None:
        """Return the store's generation token: it changes whenever objects may have left.

        Read it before looking objects up: while a later read returns the same token,
        every object found then is still stored (ADR 0032,
        :mod:`pipetrail.store.generation`). ``None`` when the store folder does not exist
        yet or the token can be neither read nor written.
        """
        return read_generation(self._root)

    def size(self, digest: str) -> int:
        """Return the object's size in bytes.

        Raises:
            NotFoundError: no object has this digest.
        """
        path = self._path(digest)
        with map_os_errors(f"stat object {digest}", path, self._root):
            try:
                return os.stat(path).st_size
            except FileNotFoundError:
                pass
        packed = self._pack.size(digest)
        if packed is None:
            raise self._not_found(digest)
        return packed

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored object: files shard by shard, then the pack's."""
        yield from self._loose.iter_digests()
        for digest in self._pack.iter_digests():
            if not self._loose.exists(digest):  # listed above already
                yield digest

    # -- maintenance -----------------------------------------------------------------
    def verify(self, digest: str) -> bool:
        """Re-hash one object; when it is corrupt, move it to ``quarantine/`` and return False.

        Raises:
            NotFoundError: no object has this digest.
        """
        self._path(digest)  # NotFoundError for a non-digest
        intact = self._loose.verify(digest)
        if intact is not None:
            if not intact:
                self._reader.verified.forget(digest)
            return intact
        intact = self._pack.verify(digest)
        if intact is None:
            raise self._not_found(digest)
        if not intact:
            self._loose.quarantine_bytes(digest, self._pack.salvage(digest))
            self._pack.remove(digest)
        return intact

    def clean_tmp(self, *, older_than: float = _TMP_STALE_SECONDS) -> int:
        """Remove temp files and unreferenced segments left by killed writers; count them.

        Args:
            older_than: only remove files last modified this many seconds ago or earlier,
                so that writers still running are not disturbed.
        """
        removed = self._loose.clean_tmp(older_than=older_than)
        return removed + self._pack.clean_segments(older_than=older_than)
