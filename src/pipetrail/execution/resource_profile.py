"""Flagging, in the run's record, steps whose resource use deviates from their history.

When a run completes, each step it executed (cache hits used nothing) is compared with
the same node's executions in the pipeline's last ``deviation_runs`` completed ordinary
runs, and ``run.completed`` lists what deviates under ``resource_deviations`` (the key
is absent when nothing does, so other runs' events keep their shape):

* ``"kind": "slower"``: its wall time is at least ``deviation_factor`` times the median
  of its history and at least ``deviation_min_seconds`` more (the rule of the
  ``resource.deviation`` alert, with the same ``[alerts]`` settings and defaults);
* ``"kind": "memory-over-request"``: it requested ``memory`` and its process's peak
  resident memory went above it.

A step with no earlier execution has nothing to deviate from. The comparison reads two
small queries (:mod:`pipetrail.ledger.quota_reads`), only for runs that executed a step
that took at least ``deviation_min_seconds``: a faster one cannot be flagged as slower
whatever its history (the median of earlier wall times is positive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.ledger.quota_reads import recent_step_resources

if TYPE_CHECKING:
    from pipetrail.execution.run_state import RunState

__all__ = ["DEFAULTS", "resource_deviations"]

#: ``deviation_factor``, ``deviation_runs`` and ``deviation_min_seconds`` when
#: ``[alerts]`` sets none (the alerts' own defaults).
DEFAULTS: dict[str, float] = {
    "deviation_factor": 3.0,
    "deviation_runs": 10,
    "deviation_min_seconds": 1.0,
}


def _settings(state: RunState) -> dict[str, float]:
    from pipetrail.config_tables import CONFIG_FILE, project_table
    from pipetrail.errors import ProjectError

    root = state.project.root
    try:
        table = project_table(root, "alerts")
        if not isinstance(table, dict) or not any(k.startswith("deviation_") for k in table):
            return DEFAULTS
        from pipetrail.config_model import validate_alerts

        alerts = validate_alerts(root / CONFIG_FILE, table)
    except (ProjectError, ValueError):
        return DEFAULTS  # a broken table is reported by the alerts; the run stands
    return {key: float(alerts[key]) for key in DEFAULTS}


def _executed(state: RunState) -> list[dict[str, Any]]:
    """What the ``step.completed`` events of the run's executed steps say of their resources.

    Kept by the run as each step completed (``RunState.executed``, in start order): the
    run's step runs are not read back from the ledger.
    """
    return [found for found in state.executed.values() if found is not None]


def _wall(resources: Any) -> float | None:
    wall = resources.get("wall_ns") if isinstance(resources, dict) else None
    return None if wall is None else float(wall) / 1e9


def _may_be_slower(payload: dict[str, Any], settings: dict[str, float]) -> bool:
    """Whether some history could flag this step as slower.

    Flagged means ``seconds - median >= deviation_min_seconds`` with a median of
    positive wall times: impossible unless the step took at least that minimum.
    """
    seconds = _wall(payload.get("resources"))
    return seconds is not None and seconds >= settings["deviation_min_seconds"]


def resource_deviations(state: RunState) -> list[dict[str, Any]]:
    """What of ``state``'s completed run deviates (module docstring), in start order."""
    steps = _executed(state)
    if not steps:
        return []
    import statistics  # here: a run of cache hits ends without it (about 5 ms of imports)

    found: list[dict[str, Any]] = []
    for payload in steps:
        node = state.graph.nodes.get(str(payload["node_id"]))
        declared = dict(node.step.options.resources) if node is not None else {}
        requested = (payload.get("resource_requests") or declared).get("memory")
        peak = (payload.get("resources") or {}).get("peak_rss_bytes")
        if requested and isinstance(peak, int) and peak > requested:
            found.append(
                {
                    "kind": "memory-over-request",
                    "node_id": payload["node_id"],
                    "step": payload["step"],
                    "peak_rss_bytes": peak,
                    "requested_bytes": requested,
                }
            )
    settings = _settings(state)
    if not any(_may_be_slower(p, settings) for p in steps):
        return found  # no history could make these steps slower: it is not read
    history = recent_step_resources(
        state.project.ledger.reader(),
        state.graph.name,
        state.run_id,
        [str(p["node_id"]) for p in steps],
        int(settings["deviation_runs"]),
    )
    for payload in steps:
        seconds = _wall(payload.get("resources"))
        usual = [w for w in (_wall(r) for r in history.get(payload["node_id"], ())) if w and w > 0]
        if seconds is None or not usual:
            continue
        median = statistics.median(usual)
        if (
            seconds >= settings["deviation_factor"] * median
            and seconds - median >= settings["deviation_min_seconds"]
        ):
            found.append(
                {
                    "kind": "slower",
                    "node_id": payload["node_id"],
                    "step": payload["step"],
                    "seconds": round(seconds, 3),
                    "median_seconds": round(median, 3),
                    "factor": round(seconds / median, 1),
                    "runs": len(usual),
                }
            )
    return found
