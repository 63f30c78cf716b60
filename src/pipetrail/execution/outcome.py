"""How a run ended, read back for the line ``pipetrail run`` prints at its end.

:func:`~pipetrail.execution.explain.run_summary` reads everything recorded about a run
(contracts, metrics, labels, sources, notes); the end-of-run line shows only the run's
status and its steps' statuses. :func:`run_outcome` reads just those, through the
reader's own queries, so a cached run imports neither the read model nor the typed event
records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.execution.crash import effective_status, effective_step_status

if TYPE_CHECKING:
    from pipetrail.ledger import Reader

__all__ = ["run_outcome"]


def run_outcome(reader: Reader, ref: str) -> dict[str, Any]:
    """Return how one run ended (``ref``: id, prefix or ``latest``).

    Returns:
        ``run_id``, ``status``, ``steps_total`` and ``steps`` (each with ``node_id``,
        ``step`` and ``status``): the values :func:`~pipetrail.execution.explain.run_summary`
        gives under the same keys (a dead ``running`` run is ``crashed``, and so are its
        open steps).

    Raises:
        NotFoundError: no run matches ``ref``.
    """
    run_id = reader.resolve_run(ref)
    run = reader.get_run(run_id)
    status = effective_status(
        {"status": run["status"], "host": str(run["host"]), "process": str(run["process"])}
    )
    return {
        "run_id": run_id,
        "status": status,
        "steps_total": int(run["steps_total"]),
        "steps": [
            {
                "node_id": step["node_id"],
                "step": step["step"],
                "status": effective_step_status(status, str(step["status"])),
            }
            for step in reader.step_runs(run_id)
        ],
    }
