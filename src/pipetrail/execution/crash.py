"""Crashed runs: a run whose process died shows as ``crashed``, never ``running`` forever.

A run records its host and process identity (pid plus the process start time, so a
recycled pid is not mistaken for the run). When that process no longer exists on this
host, the run has crashed. Readers compute this on the fly (:func:`effective_status`);
writers also append a ``run.crashed`` event so the ledger itself says so. Runs of other
hosts are judged by their own host the next time it writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.capture import current_host, identity_is_alive
from pipetrail.core.clock import format_ts, utcnow
from pipetrail.ledger import EventDraft, EventKind

if TYPE_CHECKING:
    from pipetrail.ledger.ledger import Ledger

__all__ = ["effective_status", "reconcile_crashed_runs"]


def _is_dead(run: dict[str, Any], host: str) -> bool:
    return run["host"] == host and not identity_is_alive(run["process"])


def effective_status(run: dict[str, Any]) -> str:
    """Return a run's status, reporting ``crashed`` for a dead ``running`` run."""
    if run["status"] == "running" and _is_dead(run, current_host()):
        return "crashed"
    return str(run["status"])


def reconcile_crashed_runs(ledger: Ledger) -> list[str]:
    """Append ``run.crashed`` for every running run of this host whose process is gone."""
    host = current_host()
    dead = [r["run_id"] for r in ledger.reader().running_runs() if _is_dead(r, host)]
    if dead:
        now = format_ts(utcnow())
        ledger.append(
            [
                EventDraft(
                    EventKind.RUN_CRASHED,
                    {
                        "run_id": run_id,
                        "ended_at": now,
                        "error": "the process running it ended without recording an outcome "
                        "(killed or lost power)",
                    },
                    run_id=run_id,
                )
                for run_id in dead
            ]
        )
    return dead
