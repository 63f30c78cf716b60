"""Copying files into a local store: ``LocalStore.put_file`` and ``put_files`` behind the scenes.

Owns :class:`FileCopier`, which decides where each file goes and checks what it copies:

* files up to the store's small-object limit (16 KiB by default) are read whole, hashed
  and added to the small-object pack, a batch's in one SQLite transaction
  (:class:`~pipetrail.store.pack.PackBatch`; ADR 0006);
* in batches of 8 files or more, files up to 1 MiB are appended to the batch's segment
  file (:class:`~pipetrail.store.segments.SegmentWriter`; ADR 0009);
* larger files become loose object files (:class:`~pipetrail.store.loose.LooseObjects`),
  written past the page cache when durable (:mod:`pipetrail.store.direct_io`).

Durability of a batch (``put_files``), with ``fsync=True``:

1. Each new loose object is copied to its own temp file in ``tmp/``, verified against its
   digest while copying, made read-only and closed, without fsync. Each new packed object
   is read, verified and queued in memory (written early, inside the still-open
   transaction, past 32 MiB). Each new medium object is appended to the segment.
2. The temp files are made durable at once: ``syncfs(2)`` on the store's filesystem
   (Linux 5.8+, where it reports writeback errors to a descriptor opened before the first
   write, as here). Elsewhere, and for batches of fewer than 8 items (nothing to
   amortize, and syncfs would wait for other writers' dirty pages too), each temp file
   is fsynced before it is closed; if syncfs fails, each one is reopened and fsynced.
   The segment is written to its end and fsynced, with its folder.
3. The pack transaction commits, with the segment's index rows: those objects are then
   wholly stored, and durable at the next ``sync()`` (a checkpoint), like every packed
   object. The segment's lock is released only now (``clean_tmp`` skips locked ones).
4. Each temp file is renamed to its final name. A power loss at any point leaves final
   names only on complete objects and pack rows only whole; a killed process, at most
   temp files. The renames are made durable at the next ``sync()``.

An error before step 3 stores nothing of the batch (its segment is removed); a rename
failing in step 4 leaves the objects renamed before it (each complete).

An object already stored under a digest is not trusted blindly (ADR 0011): where a write
would be skipped because the name is taken, the stored object is checked (its size, then
its bytes) and a corrupt one is quarantined and written anew; a file copied to learn its
digest replaces a loose object already there (a rename: free, and a repair if that one
was corrupt). The exception is ``put_files`` with a digest given (the stat-cache path
of source observation): the store compares sizes only, since hashing every stored copy
of every unchanged source file on every run would cost as much as the observation
itself. Such a copy is verified when it is read, and once quarantined the next
observation copies the file again. Trade-off:
syncfs writes back every dirty page of the filesystem, other processes' included: cheap
when the store is the main writer, slower than per-file fsync when another process
keeps gigabytes dirty there.

Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and ``pipetrail.store``'s
``loose``, ``local_files``, ``pack``, ``segments``, ``verified`` and ``os_errors``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from pipetrail.errors import IntegrityError, StoreError
from pipetrail.hashing import digest_bytes, digest_file, is_digest
from pipetrail.hashing.digest import DIGEST_PREFIX
from pipetrail.store.local_files import READ_FLAGS
from pipetrail.store.loose import LooseBatch
from pipetrail.store.os_errors import map_os_errors, store_error
from pipetrail.store.segments import SEGMENT_OBJECT_LIMIT as _SEGMENT_LIMIT
from pipetrail.store.segments import SegmentWriter
from pipetrail.store.verified import changed_error

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pipetrail.store.loose import LooseObjects
    from pipetrail.store.loose_read import LooseReader
    from pipetrail.store.pack import PackBatch, SmallObjectPack

__all__ = ["FileCopier"]

_log = logging.getLogger(__name__)

# Batches of fewer items fsync each new object file instead of one syncfs for all,
# and keep their medium-sized objects loose (nothing to share a segment with).
_SYNCFS_MIN_ITEMS = _SEGMENT_MIN_ITEMS = 8


class FileCopier:
    """Copies files into a local store's loose files and pack; safe to share between threads.

    Args:
        loose: the store's loose files.
        pack: the store's small-object pack.
        small_limit: files up to this size go to the pack; 0 keeps every file loose.
    """

    def __init__(
        self,
        loose: LooseObjects,
        pack: SmallObjectPack,
        *,
        small_limit: int,
        reader: LooseReader,
        packed_intact: Callable[[str], bool],
    ) -> None:
        self.loose, self.pack, self.small_limit = loose, pack, small_limit
        self.reader, self.packed_intact = reader, packed_intact

    def _intact(self, digest: str, size: int | None = None) -> bool:
        """Whether an object is stored intact; a corrupt one is quarantined (then False)."""
        loose = self.reader.intact(digest, size)
        if loose is not None:
            return loose
        return (size is None or size <= _SEGMENT_LIMIT) and self.packed_intact(digest)

    def put_file(self, src: str, digest: str | None) -> tuple[str, int]:
        """Hash ``src`` unless ``digest`` is given, then copy it verified; see ``LocalStore``."""
        loose, root = self.loose, self.loose.root
        digest, size = self._file_digest(src, digest)
        final = loose.final(digest)
        # Stored already: checked, since the copy is skipped. With the file's own digest
        # a stored object of another size is corrupt; with a given one, maybe the file.
        if self._intact(digest, size):
            stored = self.pack.size(digest) if not os.path.exists(final) else None
            return digest, self._check_stored_size(src, size, digest, final, stored=stored)
        with map_os_errors(f"store file as object {digest}", src, root):
            src_fd = os.open(src, READ_FLAGS)
            try:
                data, src_size = self._read_small(src_fd)
                if data is not None:
                    replaced = self.pack.put(self._checked_digest(src, data, digest), data)
                    if replaced is not None:
                        loose.quarantine_bytes(digest, replaced)
                    return digest, len(data)
                tmp, _, copied = loose.copy_to_tmp(src, src_fd, src_size, digest, fsync=loose.fsync)
            finally:
                os.close(src_fd)
            try:
                shard = loose.rename(tmp, final)
            except BaseException:
                loose.discard(tmp)
                raise
        loose.note_renamed([shard])
        return digest, copied

    def put_files(
        self, items: Sequence[tuple[str | os.PathLike[str], str | None]]
    ) -> list[tuple[str, int]]:
        """Copy a batch with one flush; see ``LocalStore.put_files`` and the module docstring."""
        loose, root = self.loose, self.loose.root
        results: list[tuple[str, int]] = []
        batch = LooseBatch()
        sizes: dict[str, int] = {}  # digest -> size, for the batch's new objects
        packed = self.pack.batch() if self.small_limit > 0 else None
        # Objects above the pack limit and up to 1 MiB share one segment file (ADR 0009).
        segment = (
            SegmentWriter(self.pack.segments, durable=loose.fsync)
            if packed is not None and len(items) >= _SEGMENT_MIN_ITEMS
            else None
        )
        committed = False
        fs_fd: int | None = None  # opened before the first write: see open_fs_handle
        per_file_fsync = loose.fsync
        # A short batch fsyncs its own files: syncfs would also wait for every other
        # writer's dirty pages on the filesystem, for nothing to amortize.
        opened = not loose.fsync or len(items) < _SYNCFS_MIN_ITEMS
        # One query for the given digests the pack holds, instead of one per file.
        in_pack = self.pack.sizes(given for _, given in items if given is not None)
        try:
            for path, given in items:
                src = os.fspath(path)
                if given is not None:
                    digest, size = self._file_digest(src, given)
                    final = loose.final(digest)
                    stored = sizes.get(digest)
                    if stored is None:
                        stored = in_pack.get(digest)
                    if stored is not None or os.path.exists(final):
                        try:
                            size = self._check_stored_size(src, size, digest, final, stored=stored)
                        except IntegrityError:
                            # Who is wrong, the file or the stored copy? Only the latter
                            # is copied again (now quarantined).
                            if digest in sizes or self._intact(digest):
                                raise
                        else:
                            results.append((digest, size))
                            continue
                try:
                    src_fd = os.open(src, READ_FLAGS)
                    try:
                        data, size = self._read_small(src_fd)
                        if data is not None and packed is not None:
                            digest = self._checked_digest(src, data, given)
                            results.append((digest, len(data)))
                            if digest not in sizes:
                                sizes[digest] = len(data)
                                packed.add(digest, data)
                            continue
                        if segment is not None and packed is not None and size <= _SEGMENT_LIMIT:
                            appended = self._append(src, src_fd, given, segment, sizes, packed)
                            if appended is not None:
                                results.append(appended)
                                continue
                            os.lseek(src_fd, 0, os.SEEK_SET)  # it grew: copied loose below
                        if not opened:
                            fs_fd, opened = loose.open_fs_handle(), True
                            per_file_fsync = fs_fd is None
                        tmp, digest, copied = loose.copy_to_tmp(
                            src, src_fd, size, given, fsync=per_file_fsync
                        )
                    finally:
                        os.close(src_fd)
                except OSError as exc:
                    what = "store file" if given is None else f"store file as object {given}"
                    raise store_error(what, src, root, exc) from exc
                final = loose.final(digest)
                if given is None and digest in sizes:
                    loose.discard(tmp)  # read to learn its digest: in this batch already
                    results.append((digest, copied))
                    continue
                # A loose object stored already under this digest is replaced by the
                # fresh copy (one rename): if it was corrupt, it is repaired.
                batch.entries.append((digest, tmp, final))
                sizes[digest] = copied
                results.append((digest, copied))
            if segment is not None and not segment.finish():
                segment = None  # every object of it was stored already: removed
            if fs_fd is not None and batch.entries:
                loose.make_durable(fs_fd, [tmp for _, tmp, _ in batch.entries])
            if packed is not None:
                packed.commit()
            committed = True
            for digest, corrupt in packed.replaced if packed is not None else ():
                loose.quarantine_bytes(digest, corrupt)
            loose.rename_batch(batch)
        except BaseException:
            if not committed:
                self._undo(packed, segment)
            for _, tmp, _ in batch.entries[batch.renamed :]:
                loose.discard(tmp)
            raise
        finally:
            if fs_fd is not None:
                os.close(fs_fd)
            if segment is not None:
                segment.close()  # its rows are committed (or it was removed): unlock
        return results

    def _undo(self, packed: PackBatch | None, segment: SegmentWriter | None) -> None:
        """Drop what a failed batch wrote before its commit, keeping the first error."""
        if packed is not None:
            try:
                packed.rollback()
            except StoreError as exc:
                _log.warning("%s", exc)
        if segment is None:
            return
        try:
            # An interrupt that lands just after the commit must not remove a segment
            # that rows point into; when in doubt, keep it (clean_tmp removes orphans).
            keep = self.pack.segment_in_use(segment.name)
        except StoreError:
            keep = True
        if keep:
            return
        try:
            segment.abort()
        except OSError as exc:
            _log.warning("could not remove segment %s of a failed batch: %s", segment.path, exc)

    def _append(
        self,
        src: str,
        src_fd: int,
        given: str | None,
        segment: SegmentWriter,
        sizes: dict[str, int],
        packed: PackBatch,
    ) -> tuple[str, int] | None:
        """Append a medium-sized file to the batch's segment; return its digest and size.

        Returns None when the file grew past the segment limit while it was read (the
        caller rewinds it and copies it loose).
        """
        appended = segment.append(src_fd, limit=_SEGMENT_LIMIT)
        if appended is None:
            return None
        digest, start, size = appended
        if given is not None and digest != given:
            raise changed_error(src, digest, given)
        if digest in sizes or (given is None and self._intact(digest, size)):
            segment.undo_last()  # stored already: read only to learn its digest
        else:
            sizes[digest] = size
            packed.add_segment(digest, segment.name, start, size)
        return digest, size

    def _read_small(self, src_fd: int) -> tuple[bytes | None, int]:
        """Read a whole file that fits the pack; return ``(None, size)`` for larger ones.

        One ``read`` of one byte more than ``fstat`` reported: a file that grew meanwhile
        is rewound and copied loose; one that shrank is stored as read (what is stored is
        what is hashed, and callers comparing sizes see the difference).
        """
        size = os.fstat(src_fd).st_size
        if size > self.small_limit or self.small_limit <= 0:
            return None, size
        data = os.read(src_fd, size + 1)
        if len(data) > size:
            os.lseek(src_fd, 0, os.SEEK_SET)
            return None, size
        return data, size

    @staticmethod
    def _checked_digest(src: str, data: bytes, digest: str | None) -> str:
        """Return the digest of bytes read from ``src``; raise if it is not ``digest``."""
        actual = digest_bytes(data)
        if digest is not None and actual != digest:
            raise changed_error(src, actual, digest)
        return actual

    def _file_digest(self, src: str, digest: str | None) -> tuple[str, int | None]:
        """Return the file's digest, hashing it when not given, and its size if read."""
        if digest is not None:
            if not is_digest(digest):
                raise StoreError(
                    f"put_file({src!r}) got digest={digest!r}, which is not a digest; pass "
                    f"'{DIGEST_PREFIX}<64 lowercase hex>' or omit it to have the file hashed."
                )
            return digest, None
        with map_os_errors("read the file to store", src, self.loose.root):
            return digest_file(src)

    def _check_stored_size(
        self, src: str, size: int | None, digest: str, final: str, *, stored: int | None = None
    ) -> int:
        """Return the file's size; raise IntegrityError if the stored object's differs."""
        with map_os_errors("read the file to store", src, self.loose.root):
            if size is None:
                size = os.stat(src).st_size
            if stored is None:
                stored = os.stat(final).st_size
        if stored != size:
            raise IntegrityError(
                f"File {src} has {size} bytes but object {digest} has {stored}; the "
                "digest passed for it is wrong, or the file changed while being read. "
                "Re-hash the file (or omit digest=) and store it again."
            )
        return size
