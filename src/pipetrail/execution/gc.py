"""Garbage collection: remove the stored objects no kept run needs any more.

Owns :func:`collect_garbage` (what ``pipetrail gc`` calls) and :func:`reachable_digests`
(also used by ``store verify`` to tell collected objects from lost ones). The ledger
says what kept runs need (:func:`pipetrail.ledger.references.scan_references`); the store
finds and removes the rest (:mod:`pipetrail.store.gc`). The decisions, and why, are in
docs/adr/0014-deleting-runs-and-gc.md; the user's view in docs/gc.md:

* reachable = every digest the events of runs that are not deleted name, closed over
  artifact descriptions and folder manifests; everything else is garbage once it is
  older than the grace period (``gc_grace``, one hour by default);
* a collection that removes objects holds the store's writers lock exclusively
  (:mod:`pipetrail.store.gc_lock`): it never runs while a run writes, and the grace
  period covers writers that are not runs;
* before anything is removed, a ``store.collected`` event records what goes (counts and
  bytes by kind, and the digest of a stored list of every removed digest), so the audit
  trail explains each missing object.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.ledger.events import EventDraft, EventKind
from pipetrail.ledger.references import References, digests_in, scan_references

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

    from pipetrail.execution.project import Project
    from pipetrail.ledger.queries import Reader
    from pipetrail.store import ContentStore, LocalStore
    from pipetrail.store.gc import Garbage
    from pipetrail.store.s3 import S3Store

__all__ = ["collect_garbage", "estimate_freed", "find_unneeded", "reachable_digests"]


def reachable_digests(
    reader: Reader,
    store: ContentStore,
    *,
    strict: bool = True,
    also_deleted: Collection[str] = (),
    content_purged: Mapping[str, Collection[str]] | None = None,
) -> tuple[set[str], References]:
    """Every digest a kept run needs, and the scan it came from.

    Folder manifests a kept run needs are opened (verified) to add the files they list.

    Args:
        reader: the ledger to scan.
        store: where the manifests are.
        strict: refuse when a manifest cannot be read (a collection must); otherwise
            skip it (``store verify`` reports it missing or corrupt on its own).
        also_deleted: runs to count as deleted although they are not (yet): what a
            retention policy would delete (see :func:`estimate_freed`).
        content_purged: run id -> content classes (``step_outputs``, ``sources``) a
            retention rule removes from runs that stay, besides those recorded.

    Raises:
        StoreError: with ``strict``, a manifest a kept run needs is missing or corrupt:
            which files it lists cannot be known, so nothing may be collected until it
            is restored.
    """
    refs = scan_references(reader, also_deleted=also_deleted, content_purged=content_purged)
    return refs.reachable(_manifests(store, strict=strict)), refs


def _manifests(store: ContentStore, *, strict: bool) -> Callable[[str], list[str]]:
    """What opens a folder manifest: the digests it lists (cached per digest)."""
    opened: dict[str, list[str]] = {}

    def expand(digest: str) -> list[str]:
        if digest in opened:
            return opened[digest]
        try:
            found = digests_in(store.get_bytes(digest).decode("utf-8", "replace"))
        except (NotFoundError, IntegrityError) as exc:
            if not strict:
                return []
            raise StoreError(
                f"folder manifest {digest}, which a kept run needs, cannot be read ({exc}); "
                "garbage collection cannot tell which files it lists, so it removes "
                "nothing. Run `pipetrail store verify` and restore the object from a backup"
            ) from exc
        opened[digest] = found
        return found

    return expand


def estimate_freed(
    project: Project,
    runs: Collection[str],
    *,
    grace: float,
    content: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Any]:
    """What a collection would free once ``runs`` are deleted too; changes nothing.

    Counts only objects no kept run (nor any run outside ``runs`` not yet deleted)
    still names, older than ``grace`` seconds and present in the store.

    Args:
        project: the project.
        runs: the runs a policy would delete.
        grace: seconds; younger objects stay.
        content: run id -> content classes a policy would remove from runs that stay.

    Returns:
        ``objects``, ``bytes``, ``kinds`` (by loose / packed / segment, or s3),
        ``young``, ``by_run`` (run id -> ``{"objects", "bytes"}``: the freed objects
        that run names, or for ``content``, the freed content, counted for every such
        run that names one), ``shared`` (freed
        objects more than one of ``runs`` name) and ``earlier`` (``{"objects",
        "bytes"}`` only runs deleted before name).

    Raises:
        StoreBusyError: another collection runs (a local store).
        StoreError: the store cannot be read, or a manifest a kept run needs is lost.
    """
    store = _open_kind(project.store)
    with _hold(store, dry_run=True, wait=0.0):
        keep, refs = reachable_digests(
            project.reader(), store, also_deleted=runs, content_purged=content
        )
        garbage = find_unneeded(store, keep, grace=grace)
    sizes = garbage.sizes()
    expand = _manifests(store, strict=False)
    by_run: dict[str, dict[str, int]] = {}
    named_by: dict[str, int] = {}
    named = {run_id: refs.dropped_by_run.get(run_id, set()) for run_id in runs}
    named.update({run_id: refs.purged_by_run.get(run_id, set()) for run_id in content or {}})
    for run_id, seeds in named.items():
        own = [d for d in refs.closure(seeds, expand) if d in sizes]
        for digest in own:
            named_by[digest] = named_by.get(digest, 0) + 1
        by_run[run_id] = {"objects": len(own), "bytes": sum(sizes[d] for d in own)}
    earlier = [d for d in sizes if d not in named_by]
    kinds = garbage.by_kind()
    return {
        "objects": len(sizes),
        "bytes": sum(kind["bytes"] for kind in kinds.values()),
        "kinds": kinds,
        "young": garbage.young,
        "by_run": by_run,
        "shared": sum(1 for n in named_by.values() if n > 1),
        "earlier": {"objects": len(earlier), "bytes": sum(sizes[d] for d in earlier)},
        "grace_seconds": grace,
    }


def _open_kind(store: ContentStore) -> LocalStore | S3Store:
    """``store`` as the kind garbage collection knows (a local or an S3 store)."""
    from pipetrail.store import LocalStore

    if isinstance(store, LocalStore):
        return store
    from pipetrail.store.s3 import S3Store  # only for a store that is not local

    if isinstance(store, S3Store):
        return store
    raise StoreError(
        f"garbage collection works on a local or an S3 store; {store!r} is neither. Remove "
        "objects from other stores with their own tools"
    )


def _hold(
    store: LocalStore | S3Store, *, dry_run: bool, wait: float
) -> contextlib.AbstractContextManager[Any]:
    """The collector's hold on ``store`` (writers excluded unless ``dry_run``)."""
    from pipetrail.store import LocalStore

    if isinstance(store, LocalStore):
        from pipetrail.store.gc_lock import collector_lock

        return collector_lock(store.root, exclude_writers=not dry_run, wait=wait)
    if dry_run:
        return contextlib.nullcontext()  # a dry run reads only: it writes no marker
    from pipetrail.store.s3_gc import s3_collector_lock

    return s3_collector_lock(store, exclude_writers=True, wait=wait)


def find_unneeded(store: ContentStore, keep: set[str], *, grace: float) -> Garbage:
    """The stored objects not in ``keep`` and older than ``grace`` seconds (any store).

    Raises:
        StoreError: the store could not be read, or is neither local nor S3.
    """
    from pipetrail.store import LocalStore

    known = _open_kind(store)
    if isinstance(known, LocalStore):
        from pipetrail.store.gc import find_garbage

        return find_garbage(known.root, keep, grace=grace)
    from pipetrail.store.s3_gc import find_s3_garbage

    return find_s3_garbage(known, keep, grace=grace)


def _remove(store: LocalStore | S3Store, garbage: Garbage) -> None:
    from pipetrail.store import LocalStore

    if isinstance(store, LocalStore):
        from pipetrail.store.gc import remove_garbage

        remove_garbage(store.root, garbage)
        return
    from pipetrail.store.s3_gc import remove_s3_garbage

    remove_s3_garbage(store, garbage)


def _where(store: LocalStore | S3Store) -> str:
    from pipetrail.store import LocalStore

    return str(store.root) if isinstance(store, LocalStore) else store.url


def collect_garbage(
    project: Project,
    *,
    dry_run: bool = False,
    grace: float | None = None,
    wait: float = 0.0,
    prepare: Callable[[], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Remove (or, with ``dry_run``, count) the objects no kept run needs.

    Args:
        project: the project whose ledger and store to use.
        dry_run: report what would be removed; change nothing, record nothing.
        grace: seconds; objects stored more recently stay. Default: the project's
            ``gc_grace`` setting.
        wait: seconds to wait for runs in progress to end (not in a dry run).
        prepare: called once the store is the collector's (not in a dry run), before
            anything is scanned: a retention policy or a purge deletes its runs there,
            so that a collection refused (a run writing) deletes nothing. It returns
            what the ``store.collected`` event adds (``policy``, ``reason``,
            ``purged_runs``: run id -> rule); when that is not empty the event is
            recorded even if no object goes, so every purged run has its tombstone.
            ``purged_content`` (run id -> content classes) removes that content of
            runs that stay (:func:`pipetrail.ledger.references.content_of`).

    Returns:
        A JSON-able report: ``dry_run``, ``objects`` and ``bytes`` freed, ``kinds`` (the
        same by loose / packed / segment), ``young`` (unreachable but within the grace
        period), ``segments_dropped``, ``segments_rewritten``, ``segment_bytes_freed``,
        ``pack_bytes_freed``, ``reachable``, ``deleted_runs``, ``grace_seconds``,
        ``event_seq`` (the ``store.collected`` event, or None), ``artifacts``.

    Raises:
        StoreBusyError: a run writes to the store, or another collection runs.
        StoreError: the store is neither local nor S3, or a manifest a kept run needs
            is lost.
    """
    store = _open_kind(project.store)
    seconds = project.config.gc_grace if grace is None else grace
    with _hold(store, dry_run=dry_run, wait=wait):
        tombstone = prepare() if prepare is not None and not dry_run else None
        reader = project.reader() if dry_run else project.ledger.reader()
        purging = (tombstone or {}).get("purged_content")
        keep, refs = reachable_digests(reader, store, content_purged=purging)
        garbage = find_unneeded(store, keep, grace=seconds)
        kinds = garbage.by_kind()
        removed = list(garbage.digests())
        event_seq = None
        if not dry_run and (removed or tombstone):
            listing = "".join(f"{digest}\n" for digest in sorted(removed)).encode()
            payload = {
                "objects": len(removed),
                "bytes": sum(kind["bytes"] for kind in kinds.values()),
                "kinds": kinds,
                "removed_list": store.put_bytes(listing),
                "grace_seconds": seconds,
                "deleted_runs": len(refs.deleted_runs),
                **(tombstone or {}),
            }
            store.sync()
            # Recorded before anything goes: an interrupted sweep leaves objects the
            # record calls removed (harmless), never a removal the record does not explain.
            event = project.ledger.append([EventDraft(EventKind.STORE_COLLECTED, payload)])
            event_seq = event[0].seq
            _remove(store, garbage)
    return {
        "dry_run": dry_run,
        "objects": len(removed),
        "bytes": sum(kind["bytes"] for kind in kinds.values()),
        "kinds": kinds,
        "young": garbage.young,
        "segments_dropped": garbage.segments_dropped,
        "segments_rewritten": garbage.segments_rewritten,
        "segment_bytes_freed": garbage.segment_bytes_freed,
        "pack_bytes_freed": garbage.pack_bytes_freed,
        "reachable": len(keep),
        "deleted_runs": len(refs.deleted_runs),
        "grace_seconds": seconds,
        "event_seq": event_seq,
        "artifacts": _where(store),
    }
