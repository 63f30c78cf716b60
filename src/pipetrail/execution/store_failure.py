"""Record a run whose artifact store failed before the run itself was recorded.

A run stores its sources, git diff and environment before it appends ``run.started``;
when the store cannot be used then (an unreachable S3 endpoint, wrong credentials, a
bucket that does not exist), the run is still recorded, as failed with the store's
message: ``run.started`` without the blobs it could not store (no environment, no
sources), then ``run.failed``. The ledger never names a blob the store does not hold.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from pipetrail.ledger.events import EventDraft, EventKind

if TYPE_CHECKING:
    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.errors import StoreError
    from pipetrail.execution.run_state import RunOptions, RunState

__all__ = ["record_store_failure"]


def record_store_failure(
    state: RunState,
    definition: PipelineDefinition,
    params: dict[str, Any],
    pipeline_fp: str,
    options: RunOptions,
    exc: StoreError,
) -> None:
    """Append ``run.started`` (without stored blobs) and ``run.failed`` naming ``exc``."""
    from pipetrail.execution.project import Project
    from pipetrail.execution.run_events import end_run, run_started_events
    from pipetrail.store import MemoryStore

    real = state.project
    # The start event is described against a throwaway store; the blobs it would name
    # (git diff, environment, params files) are dropped from the record below.
    offline = Project(real.config, store=MemoryStore(), ledger=real.ledger, registry=real.registry)
    scratch = dataclasses.replace(state, project=offline)
    drafts = run_started_events(scratch, definition, params, pipeline_fp, options)
    started = next(d for d in drafts if d.kind == EventKind.RUN_STARTED)
    # A new draft of the changed payload: the one made may carry its text encoded already.
    payload = {k: v for k, v in started.payload.items() if k != "params_files"}
    payload["environment"] = None
    real.ledger.append([EventDraft(EventKind.RUN_STARTED, payload, run_id=started.run_id)])
    end_run(scratch, EventKind.RUN_FAILED, error=str(exc))
