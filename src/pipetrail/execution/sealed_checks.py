"""``store verify`` for sealed objects: every chunk authenticated with the project's keys.

The store re-hashes every object, sealed or not, without any key: a changed byte of a
sealed object is reported corrupt like any other. With the keys, :func:`check_sealed`
also decrypts each sealed object the ledger records (to nowhere: no plaintext is kept)
so a wrong key, or a sealed object that no longer opens, is reported by name. Without
the keys the sealed objects are reported as not decrypted, which is not a failure: an
auditor without keys can still check that the stored bytes are the recorded ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.errors import NotFoundError, StoreError
from pipetrail.ledger.event_reads import sealed_artifact_blobs
from pipetrail.store.sealed import SealedStore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.execution.project import Project

__all__ = ["check_sealed"]


def check_sealed(project: Project, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Decrypt every recorded sealed object (except ``skip``: already corrupt or missing).

    Returns:
        ``{"objects", "decrypted", "failed": [{"blob", "error"}], "keys": None or why
        the keys could not be opened}``.
    """
    skipped = set(skip)
    blobs = [b for b in sealed_artifact_blobs(project.reader()) if b not in skipped]
    report: dict[str, Any] = {"objects": len(blobs), "decrypted": 0, "failed": [], "keys": None}
    if not blobs:
        return report
    try:
        sealed = SealedStore(project.store, project.sealing_keys())
    except StoreError as exc:
        report["keys"] = str(exc)
        return report
    for blob in blobs:
        try:
            sealed.check_sealed(blob)
        except NotFoundError:
            continue
        except StoreError as exc:  # IntegrityError included
            report["failed"].append({"blob": blob, "error": str(exc)})
            continue
        report["decrypted"] += 1
    return report
