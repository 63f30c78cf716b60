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

from typing import TYPE_CHECKING, Any

from pipetrail.errors import IntegrityError, NotFoundError, StoreError
from pipetrail.ledger.events import EventDraft, EventKind
from pipetrail.ledger.references import References, digests_in, scan_references

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from pipetrail.execution.project import Project
    from pipetrail.ledger.queries import Reader
    from pipetrail.store import ContentStore

__all__ = ["collect_garbage", "reachable_digests"]


def reachable_digests(
    reader: Reader, store: ContentStore, *, strict: bool = True
) -> tuple[set[str], References]:
    """Every digest a kept run needs, and the scan it came from.

    Folder manifests a kept run needs are opened (verified) to add the files they list.

    Args:
        reader: the ledger to scan.
        store: where the manifests are.
        strict: refuse when a manifest cannot be read (a collection must); otherwise
            skip it (``store verify`` reports it missing or corrupt on its own).

    Raises:
        StoreError: with ``strict``, a manifest a kept run needs is missing or corrupt:
            which files it lists cannot be known, so nothing may be collected until it
            is restored.
    """
    refs = scan_references(reader)

    def expand(digest: str) -> list[str]:
        try:
            return digests_in(store.get_bytes(digest).decode("utf-8", "replace"))
        except (NotFoundError, IntegrityError) as exc:
            if not strict:
                return []
            raise StoreError(
                f"folder manifest {digest}, which a kept run needs, cannot be read ({exc}); "
                "garbage collection cannot tell which files it lists, so it removes "
                "nothing. Run `pipetrail store verify` and restore the object from a backup"
            ) from exc

    return refs.reachable(expand), refs


def _local_root(store: ContentStore) -> Path:
    from pipetrail.store import LocalStore

    if not isinstance(store, LocalStore):
        raise StoreError(
            f"garbage collection works on a local store; {store!r} is not one. Remove "
            "objects from other stores with their own tools"
        )
    return store.root


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

    Returns:
        A JSON-able report: ``dry_run``, ``objects`` and ``bytes`` freed, ``kinds`` (the
        same by loose / packed / segment), ``young`` (unreachable but within the grace
        period), ``segments_dropped``, ``segments_rewritten``, ``segment_bytes_freed``,
        ``pack_bytes_freed``, ``reachable``, ``deleted_runs``, ``grace_seconds``,
        ``event_seq`` (the ``store.collected`` event, or None), ``artifacts``.

    Raises:
        StoreBusyError: a run writes to the store, or another collection runs.
        StoreError: the store is not local, or a manifest a kept run needs is lost.
    """
    from pipetrail.store.gc import find_garbage, remove_garbage
    from pipetrail.store.gc_lock import collector_lock

    store = project.store
    root = _local_root(store)
    seconds = project.config.gc_grace if grace is None else grace
    with collector_lock(root, exclude_writers=not dry_run, wait=wait):
        tombstone = prepare() if prepare is not None and not dry_run else None
        reader = project.reader() if dry_run else project.ledger.reader()
        keep, refs = reachable_digests(reader, store)
        garbage = find_garbage(root, keep, grace=seconds)
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
            remove_garbage(root, garbage)
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
        "artifacts": str(root),
    }
