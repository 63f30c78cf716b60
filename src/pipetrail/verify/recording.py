"""Store a verification report and append the event that records its outcome."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipetrail.execution.records import blob_artifact
from pipetrail.ledger import EventDraft, EventKind

if TYPE_CHECKING:
    from pipetrail.execution.project import Project

__all__ = ["record_report"]


def record_report(
    project: Project,
    report: dict[str, Any],
    *,
    role: str,
    run_id: str,
    kind: EventKind,
    payload: dict[str, Any],
) -> str:
    """Store ``report`` as a JSON artifact of ``run_id`` and append a ``kind`` event.

    The event's payload is ``payload`` plus ``report`` (the artifact's digest). Both go
    in one ledger transaction, after the report is durable in the store.

    Returns:
        The report's digest.
    """
    data = json.dumps(report, sort_keys=True, indent=2).encode("utf-8")
    digest = project.store.put_bytes(data)
    project.store.sync()
    drafts = []
    if digest not in project.ledger.reader().known_artifacts([digest]):
        artifact = blob_artifact(digest, len(data), "bytes", role, {})
        drafts.append(
            EventDraft(
                EventKind.ARTIFACT_RECORDED,
                {**artifact.to_dict(), "role": role, "run_id": run_id, "step_run_id": None},
                run_id=run_id,
            )
        )
    drafts.append(EventDraft(kind, {**payload, "report": digest}, run_id=run_id))
    project.ledger.append(drafts)
    return digest
