"""Deleting runs: mark them deleted in the ledger, with a reason; nothing is removed.

Owns :func:`delete_runs`, what ``pipetrail runs delete`` calls. A deleted run keeps its
events (the record stays auditable, ``show`` says when, by whom and why it was deleted);
it leaves the listings, ``latest`` and the cache, and what only deleted runs name becomes
garbage for :func:`pipetrail.execution.gc.collect_garbage`. Outputs a kept run reused
from a deleted run's cache stay: the kept run's own record names them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.errors import PipetrailError
from pipetrail.execution.crash import effective_status, reconcile_crashed_runs
from pipetrail.ledger.deletions import deleted_among, deletion_draft, reused_by, run_deletion

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pipetrail.execution.project import Project

__all__ = ["RunDeletionError", "delete_runs"]

_MAX_REASON = 2000


class RunDeletionError(PipetrailError):
    """A run cannot be deleted (still running, deleted already) or no reason was given."""


def delete_runs(project: Project, refs: Sequence[str], *, reason: str) -> list[dict[str, Any]]:
    """Mark the runs ``refs`` name (ids, prefixes or ``latest``) deleted, all or none.

    Args:
        project: the project whose ledger records the deletions.
        refs: what the user typed for each run.
        reason: why; recorded with each deletion and shown by ``show``.

    Returns:
        One entry per run deleted: ``run_id``, ``pipeline``, ``status``, ``reused_by``
        (kept runs that reused its outputs from the cache; those outputs stay).

    Raises:
        RunDeletionError: no run or no reason given, a run still running (a crashed one
            may be deleted), or a run deleted already. Nothing is recorded then.
        NotFoundError: a ref matches no run.
        AmbiguousPrefixError: a prefix matches several runs.
    """
    text = reason.strip()
    if not text:
        raise RunDeletionError(
            "a deletion needs a reason, recorded for auditors: pass --reason TEXT "
            '(for example --reason "trained on the wrong split")'
        )
    if len(text) > _MAX_REASON:
        raise RunDeletionError(
            f"the reason is {len(text)} characters long; keep it under {_MAX_REASON}"
        )
    if not refs:
        raise RunDeletionError("name at least one run to delete (an id, a prefix or 'latest')")
    ledger = project.ledger
    reconcile_crashed_runs(ledger)  # a run whose process is gone is recorded as crashed
    reader = ledger.reader()
    run_ids = list(dict.fromkeys(reader.resolve_run(ref) for ref in refs))
    runs = {run_id: reader.get_run(run_id) for run_id in run_ids}
    for run_id in sorted(deleted_among(reader, run_ids)):
        gone = run_deletion(reader, run_id) or {}
        raise RunDeletionError(
            f"run {run_id} was deleted already, on {gone.get('deleted_at')} by "
            f"{gone.get('deleted_by')} ({gone.get('reason')!r}); nothing was recorded"
        )
    for run_id, run in runs.items():
        if effective_status(run) == "running":
            raise RunDeletionError(
                f"run {run_id} is still running (process {run['process']} on {run['host']}); "
                "wait for it to end or stop it, then delete it; nothing was recorded"
            )
    ledger.append([deletion_draft(run_id, text) for run_id in run_ids])
    return [
        {
            "run_id": run_id,
            "pipeline": runs[run_id]["pipeline"],
            "status": effective_status(runs[run_id]),
            "reused_by": reused_by(reader, run_id),
        }
        for run_id in run_ids
    ]
