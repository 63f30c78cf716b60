"""Integrity checks a project owner or auditor runs: the ledger chain and the stored objects."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pipetrail.config import redact_url

if TYPE_CHECKING:
    from pipetrail.execution.project import Project

__all__ = ["clean_store", "verify_artifacts", "verify_ledger"]


def verify_ledger(project: Project) -> dict[str, Any]:
    """Re-hash the ledger chain; return a JSON-able report (``ok``, ``first_bad_seq``...)."""
    report = project.ledger.verify()
    return {
        "ok": report.ok,
        "checked": report.checked,
        "first_bad_seq": report.first_bad_seq,
        "reason": report.reason,
        "metadata": redact_url(project.config.metadata_url),
    }


def verify_artifacts(project: Project) -> dict[str, Any]:
    """Re-hash every stored object; report corrupt ones and recorded ones that are missing."""
    from pipetrail.store import verify_store

    expected = project.reader().artifact_blobs()
    report = verify_store(project.store, expected)
    data = asdict(report)
    data["ok"] = report.ok
    data["artifacts"] = str(project.config.artifacts)
    return data


def clean_store(project: Project, *, older_than: float) -> dict[str, Any]:
    """Remove what killed writers left in the artifact store: temp files, unused segments.

    Only files last modified ``older_than`` seconds ago or earlier are candidates, so that
    writers still running are not disturbed (segments being written are locked and kept
    whatever their age). Stored objects are never touched.
    """
    from pipetrail.store import LocalStore

    store = project.store
    removed = store.clean_tmp(older_than=older_than) if isinstance(store, LocalStore) else 0
    return {
        "removed": removed,
        "older_than_seconds": older_than,
        "artifacts": str(project.config.artifacts),
    }
