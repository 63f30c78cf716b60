"""Integrity checks a project owner or auditor runs: the ledger and the stored objects."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pipetrail.config import redact_url

if TYPE_CHECKING:
    from pipetrail.execution.project import Project
    from pipetrail.ledger.audit import Meanwhile

__all__ = ["clean_store", "rebuild_ledger", "verify_artifacts", "verify_ledger"]


def verify_ledger(project: Project, meanwhile: Meanwhile[Any] | None = None) -> dict[str, Any]:
    """Re-hash the ledger chain and compare the derived tables with the events.

    ``meanwhile``: a check run in the audit's snapshot once the chain verified (see
    :class:`~pipetrail.ledger.audit.Meanwhile`).

    Returns:
        A JSON-able report: ``ok``, ``checked`` (events), ``first_bad_seq`` and ``reason``
        (the chain), ``derived_checked``, ``derived_rows`` and ``derived`` (one entry per
        derived row that disagrees with the events: table, key, problem, columns,
        message), ``metadata`` (the store, credentials hidden).
    """
    report = project.ledger.verify(meanwhile=meanwhile)
    return {
        "ok": report.ok,
        "checked": report.checked,
        "first_bad_seq": report.first_bad_seq,
        "reason": report.reason,
        "derived_checked": report.derived_checked,
        "derived_rows": report.derived_rows,
        "derived": [problem.to_dict() for problem in report.derived],
        "metadata": redact_url(project.config.metadata_url),
    }


def rebuild_ledger(project: Project) -> dict[str, Any]:
    """Rebuild the derived tables from the events (after verifying the chain).

    Returns:
        A JSON-able report: ``events`` replayed, ``rows`` the events project, ``changed``
        (each row rewritten, added or removed, as it was before), ``metadata``.

    Raises:
        TamperedLedgerError: the chain is broken; nothing was changed.
    """
    report = project.ledger.rebuild_projections()
    return {
        "ok": True,
        "events": report.events,
        "rows": report.rows,
        "changed": [problem.to_dict() for problem in report.changed],
        "metadata": redact_url(project.config.metadata_url),
    }


def verify_artifacts(project: Project) -> dict[str, Any]:
    """Re-hash every stored object; report corrupt ones and recorded ones that are missing.

    A recorded object that is absent but needed by no kept run (only deleted runs name
    it: garbage collection removed it) is listed under ``collected``, not ``missing``,
    and does not make the report fail. Recorded objects are the artifacts' blobs and the
    files of every folder source that was copied into the store (listed by its
    manifest), so a file of a snapshot lost to quarantine is reported missing on the next
    check too.
    """
    from pipetrail.execution.store_open import store_location
    from pipetrail.store import verify_store

    expected = set(project.reader().artifact_blobs())
    expected.update(_copied_folder_files(project))
    report = verify_store(project.store, sorted(expected))
    data = asdict(report)
    data["collected"] = []
    if report.missing:
        # An object only deleted runs name was removed on purpose by `pipetrail gc` (the
        # store.collected events list each one): reported as collected, not as lost.
        from pipetrail.execution.gc import reachable_digests

        keep, _ = reachable_digests(project.reader(), project.store, strict=False)
        data["collected"] = [digest for digest in report.missing if digest not in keep]
        data["missing"] = [digest for digest in report.missing if digest in keep]
    from pipetrail.execution.sealed_checks import check_sealed

    # Sensitive objects: decrypted and authenticated when the keys are at hand.
    data["sealed"] = check_sealed(project, skip=[*report.corrupt, *report.missing])
    data["ok"] = not report.corrupt and not data["missing"] and not data["sealed"]["failed"]
    data["artifacts"] = store_location(project.config)
    return data


def clean_store(project: Project, *, older_than: float) -> dict[str, Any]:
    """Remove what killed writers left in the artifact store: temp files, unused segments.

    Only files last modified ``older_than`` seconds ago or earlier are candidates, so that
    writers still running are not disturbed (segments being written are locked and kept
    whatever their age). Stored objects are never touched.
    """
    from pipetrail.execution.store_open import store_location
    from pipetrail.store import LocalStore

    store = project.store
    removed = store.clean_tmp(older_than=older_than) if isinstance(store, LocalStore) else 0
    return {
        "removed": removed,
        "older_than_seconds": older_than,
        "artifacts": store_location(project.config),
    }


def _copied_folder_files(project: Project) -> set[str]:
    """The digests of the files of every folder source copied into the store."""
    import json

    from pipetrail.errors import NotFoundError, StoreError
    from pipetrail.ledger.event_reads import source_observations

    manifests = set()
    for event in source_observations(project.reader()):
        if event.source_kind == "folder" and not event.by_reference:
            manifests.add(event.digest)
    found: set[str] = set()
    for digest in manifests:
        try:
            manifest = json.loads(project.store.get_bytes(digest))
        except (NotFoundError, StoreError, ValueError):
            continue  # the manifest itself is an artifact: reported on its own
        found.update(entry["digest"] for entry in manifest.get("files", {}).values())
    return found
