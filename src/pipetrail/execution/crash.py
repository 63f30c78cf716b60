"""Unfinished runs: how a run that did not complete is closed, and how a crash is found.

A run that ends without completing says what became of its steps. Its closing event
(``run.failed``, ``run.interrupted`` or ``run.crashed``) carries:

* ``closed_steps``: step run id -> the status a step run still ``running`` ends with:
  ``failed`` (the run failed while the step was under way, for instance because its
  input could not be loaded), ``interrupted`` (SIGINT or SIGTERM) or ``crashed``;
* ``not_run``: the nodes that never started, in pipeline order (shown as ``not run``).

:func:`closing_fields` computes both, for the runner when a run ends and for
:func:`reconcile_crashed_runs`; the projection closes the listed step runs (see
:mod:`pipetrail.ledger.projections`).

Crashes: a run records its host and process identity (pid plus the process start time,
so a recycled pid is not mistaken for the run). When that process no longer exists on
this host, the run has crashed. Readers compute this on the fly
(:func:`effective_status`, :func:`effective_step_status`); writers also append a
``run.crashed`` event so the ledger itself says so. Runs of other hosts are judged by
their own host the next time it writes.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from pipetrail.capture import current_host, identity_is_alive
from pipetrail.core.clock import format_ts, utcnow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from pipetrail.ledger.ledger import Ledger

__all__ = [
    "CRASH_ERROR",
    "NOT_RUN",
    "closing_fields",
    "effective_status",
    "effective_step_status",
    "not_run_nodes",
    "reconcile_crashed_runs",
]

#: The status ``show`` gives a node of an ended run that never started.
NOT_RUN = "not run"
CRASH_ERROR = "the process running it ended without recording an outcome (killed or lost power)"
# Run status -> the status its step runs still running end with.
_STEP_END = {"failed": "failed", "crashed": "crashed", "interrupted": "interrupted"}


def _is_dead(run: dict[str, Any], host: str) -> bool:
    return run["host"] == host and not identity_is_alive(run["process"])


def effective_status(run: dict[str, Any]) -> str:
    """Return a run's status, reporting ``crashed`` for a dead ``running`` run."""
    if run["status"] == "running" and _is_dead(run, current_host()):
        return "crashed"
    return str(run["status"])


def effective_step_status(run_status: str, step_status: str) -> str:
    """Return a step run's status as its run's end decides it.

    A step run still ``running`` in a run that ended otherwise (a crash seen only by
    readers so far, or a run recorded before runs closed their steps) ends with its run:
    ``failed``, ``crashed`` or ``interrupted``.
    """
    if step_status == "running":
        return _STEP_END.get(run_status, step_status)
    return step_status


def closing_fields(
    nodes: Iterable[str], steps: Iterable[Mapping[str, Any]], run_status: str
) -> dict[str, Any]:
    """Return ``closed_steps`` and ``not_run`` for a run ending with ``run_status``.

    Args:
        nodes: every node id of the run, in pipeline order.
        steps: the run's step runs so far (``step_run_id``, ``node_id``, ``status``).
        run_status: ``failed``, ``crashed`` or ``interrupted``.
    """
    end = _STEP_END[run_status]
    rows = list(steps)
    seen = {row["node_id"] for row in rows}
    return {
        "closed_steps": {row["step_run_id"]: end for row in rows if row["status"] == "running"},
        "not_run": [node for node in nodes if node not in seen],
    }


def not_run_nodes(run: Mapping[str, Any], steps: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return the nodes of an ended run that have no step run, in pipeline order.

    Empty while the run is ``running``. The order comes from the nodes and their
    upstream nodes recorded in ``run.started`` (``record["nodes"]``).
    """
    if run["status"] == "running":
        return []
    nodes = (run.get("record") or {}).get("nodes") or {}
    seen = {row["node_id"] for row in steps}
    return [node for node in _pipeline_order(nodes) if node not in seen]


def _pipeline_order(nodes: Mapping[str, Any]) -> list[str]:
    """Node ids with every node after its upstream nodes (ties in recorded order)."""
    index = {node: i for i, node in enumerate(nodes)}
    waiting = {
        node: {up for up in (info or {}).get("upstream") or [] if up in index and up != node}
        for node, info in nodes.items()
    }
    downstream: dict[str, list[str]] = {}
    for node, upstream in waiting.items():
        for up in upstream:
            downstream.setdefault(up, []).append(node)
    ready = [(index[node], node) for node, upstream in waiting.items() if not upstream]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        ordered.append(node)
        for down in downstream.get(node, []):
            waiting[down].discard(node)
            if not waiting[down]:
                heapq.heappush(ready, (index[down], down))
    placed = set(ordered)
    # A recorded graph has no cycles; if one were edited in, its nodes still show.
    return ordered + [node for node in nodes if node not in placed]


def reconcile_crashed_runs(ledger: Ledger) -> list[str]:
    """Append ``run.crashed`` for every running run of this host whose process is gone.

    Each event closes the run's unfinished step runs as ``crashed`` and lists the
    nodes that never started (see the module docstring).
    """
    host = current_host()
    reader = ledger.reader()
    dead = [run for run in reader.running_runs() if _is_dead(run, host)]
    if dead:
        # Imported here: the readers of a status (`pipetrail runs`, `show`) write no
        # event, and the events module brings in the hashing package.
        from pipetrail.ledger import EventDraft, EventKind

        now = format_ts(utcnow())
        drafts = []
        for run in dead:
            crashed = {**run, "status": "crashed"}
            steps = reader.step_runs(run["run_id"])
            payload = {"run_id": run["run_id"], "ended_at": now, "error": CRASH_ERROR}
            payload.update(closing_fields(not_run_nodes(crashed, []), steps, "crashed"))
            drafts.append(EventDraft(EventKind.RUN_CRASHED, payload, run_id=run["run_id"]))
        ledger.append(drafts)
    return [run["run_id"] for run in dead]
