"""Reading run records back: run summaries (``show``) and cache explanations (``why``).

Everything returns plain JSON-able dicts so the CLI, the HTTP API and tests render or
compare the same data. Read-only: uses a :class:`~pipetrail.ledger.Reader` only.

``why`` compares a step run with its counterpart in the latest earlier run of the same
pipeline that ran the step: the node paired with it by
:func:`~pipetrail.execution.node_pairing.pair_nodes` (by name, then step, params and
wiring), not the node at the same call position. When no counterpart is certain, the
report says so (``pairing``) and compares with nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipetrail.execution.crash import effective_status, effective_step_status, not_run_nodes

if TYPE_CHECKING:
    from pipetrail.ledger import Reader

__all__ = ["explain_step", "list_runs", "run_summary"]

_STEP_EVENTS_SQL = (
    "SELECT payload FROM events WHERE run_id = :r "
    "AND kind IN ('step.completed', 'step.cached', 'step.failed') ORDER BY seq"
)
# The latest earlier run of a pipeline in which a step finished (not the run itself).
_PREVIOUS_RUN_SQL = (
    "SELECT run_id FROM step_runs WHERE pipeline = :p AND step = :s AND run_id <> :r "
    "AND first_seq < :seq AND status IN ('completed', 'cached', 'failed') "
    "AND components IS NOT NULL ORDER BY first_seq DESC LIMIT 1"
)


def list_runs(
    reader: Reader, *, limit: int = 50, pipeline: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Return run rows for listing, newest first, with crash-aware status."""
    rows = reader.list_runs(limit=limit, pipeline=pipeline, status=None)
    out = []
    for row in rows:
        row["status"] = effective_status(row)
        if status is None or row["status"] == status:
            out.append(_run_brief(row))
    return out


def _run_brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": row["run_id"],
        "pipeline": row["pipeline"],
        "status": row["status"],
        "owner": row["owner"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "params": row["params"],
        "seed": row["seed"],
        "steps_total": row["steps_total"],
        "steps_executed": row.get("steps_executed", 0),
        "steps_cached": row.get("steps_cached", 0),
        "steps_failed": row.get("steps_failed", 0),
        "git_commit": (row["git"] or {}).get("commit"),
        "git_dirty": (row["git"] or {}).get("dirty"),
    }


def _step_facts(
    reader: Reader, run_id: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, str]]]:
    """Read what only step events hold, per step run id.

    Returns:
        The samples and splits each recorded (``pipetrail.data``), and output name -> the
        format it is read in (``"bytes@1"``; see docs/adr/0013-how-an-output-is-read.md).
    """
    operations: dict[str, list[dict[str, Any]]] = {}
    formats: dict[str, dict[str, str]] = {}
    for row in reader.fetch(_STEP_EVENTS_SQL, {"r": run_id}):
        raw = row["payload"]
        payload = json.loads(raw) if isinstance(raw, str) else raw
        if payload.get("data_ops"):
            operations[payload["step_run_id"]] = payload["data_ops"]
        readings = payload.get("output_formats")
        if isinstance(readings, dict):
            formats[payload["step_run_id"]] = {
                name: str(reading.get("format")) if isinstance(reading, dict) else "?"
                for name, reading in readings.items()
            }
    return operations, formats


def run_summary(reader: Reader, ref: str) -> dict[str, Any]:
    """Return everything recorded about one run (``ref``: id, prefix or ``latest``)."""
    # Imported by the functions that use them: `pipetrail runs` needs neither.
    from pipetrail.execution.contract_records import contract_results

    run_id = reader.resolve_run(ref)
    run = reader.get_run(run_id)
    run["status"] = effective_status(run)
    steps = []
    rows = reader.step_runs(run_id)
    for s in rows:
        steps.append(
            {
                "step_run_id": s["step_run_id"],
                "node_id": s["node_id"],
                "step": s["step"],
                "status": effective_step_status(run["status"], s["status"]),
                "cache_decision": s["cache_decision"],
                "cache_reason": s["cache_reason"],
                "reused_step_run_id": s["reused_step_run_id"],
                "cache_key": s["cache_key"],
                "code_digest": s["code_digest"],
                "inputs": s["inputs"] or {},
                "outputs": s["outputs"] or {},
                "resources": s["resources"] or {},
                "logs": s["logs"],
                "seed": s["seed"],
                "started_at": s["started_at"],
                "ended_at": s["ended_at"],
                "error": s["error"],
                "traceback": s["traceback"],
            }
        )
    checked = {found["step_run_id"]: found for found in contract_results(reader, run_id)}
    operations, formats = _step_facts(reader, run_id)
    for entry in steps:
        entry["contracts"] = checked.get(entry["step_run_id"])
        entry["data_ops"] = operations.get(entry["step_run_id"], [])
        # How each output is read (docs/adr/0013); empty for older records.
        entry["output_formats"] = formats.get(entry["step_run_id"], {})
    record = run["record"] or {}
    return {
        "run_id": run_id,
        "pipeline": run["pipeline"],
        "pipeline_fingerprint": run["pipeline_fingerprint"],
        "status": run["status"],
        "error": run["error"],
        "owner": run["owner"],
        "host": run["host"],
        "started_at": run["started_at"],
        "ended_at": run["ended_at"],
        "params": run["params"],
        "seed": run["seed"],
        "git": run["git"],
        "environment": run["environment"],
        "pipeline_file": record.get("pipeline_file"),
        "argv": record.get("argv"),
        "pipetrail_version": record.get("pipetrail_version"),
        "params_files": record.get("params_files", []),
        "parity": record.get("parity"),
        "cache": record.get("cache", True),
        "reproduces": record.get("reproduces"),
        "steps_total": run["steps_total"],
        "sources": reader.sources(run_id),
        "steps": steps,
        # Nodes of an ended run that never started (an upstream failed, or the run was
        # interrupted or crashed first), in pipeline order.
        "not_run": [
            {"node_id": node, "step": ((record.get("nodes") or {}).get(node) or {}).get("step")}
            for node in not_run_nodes(run, rows)
        ],
    }


def explain_step(reader: Reader, ref: str, step: str) -> dict[str, Any]:
    """Explain a step run's cache key: each component, and what changed since last time.

    The comparison is with the node paired with it (module docstring) in the latest
    earlier run of the same pipeline that ran the step; ``pairing`` says how it paired,
    or why nothing was compared.
    """
    from pipetrail.execution.cache import explain_change

    run_id = reader.resolve_run(ref)
    row = reader.find_step_run(run_id, step)
    components: dict[str, Any] = row["components"] or {}
    previous, pairing = _counterpart(reader, run_id, row)
    before = None if previous is None else previous["components"]
    changes = explain_change(components, before)
    return {
        "run_id": run_id,
        "node_id": row["node_id"],
        "step": row["step"],
        "status": row["status"],
        "cache_key": row["cache_key"],
        "cache_decision": row["cache_decision"],
        "cache_reason": row["cache_reason"],
        "reused_step_run_id": row["reused_step_run_id"],
        "previous": None
        if previous is None
        else {
            "run_id": previous["run_id"],
            "step_run_id": previous["step_run_id"],
            "cache_key": previous["cache_key"],
            "node_id": previous["node_id"],
        },
        "pairing": pairing,
        "components": [
            {
                "component": c.component,
                "changed": c.changed,
                "value": c.now,
                "previous": c.before,
                "detail": c.detail,
            }
            for c in changes
        ],
        "changed": [c.component for c in changes if c.changed and c.component != "code_parts"],
    }


def _counterpart(
    reader: Reader, run_id: str, row: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Return the step run ``row`` is compared with (or None), and how it was paired."""
    found = reader.fetch(
        _PREVIOUS_RUN_SQL,
        {"p": row["pipeline"], "s": row["step"], "r": run_id, "seq": row["first_seq"]},
    )
    if not found:
        return None, {"run_id": None, "by": None, "note": "no earlier run ran this step"}
    earlier = found[0]["run_id"]
    from pipetrail.execution.node_pairing import pair_nodes, recorded_nodes

    nodes_before, sources_before = recorded_nodes(reader, earlier)
    nodes_now, sources_now = recorded_nodes(reader, run_id)
    pairing = pair_nodes(nodes_before, nodes_now, sources_a=sources_before, sources_b=sources_now)
    node = row["node_id"]
    partner = pairing.a_of(node)
    if partner is not None:
        by = next(p.by for p in pairing.pairs if p.b == node)
        note = f"paired with {partner} of run {earlier} by {by}"
        return reader.find_step_run(earlier, partner), {"run_id": earlier, "by": by, "note": note}
    group = pairing.ambiguity_of(node, side="b")
    if group is not None:
        note = f"{node} could be any of {', '.join(group.a)} in run {earlier}: {group.reason}"
        return None, {
            "run_id": earlier,
            "by": None,
            "ambiguous": list(group.a),
            "note": note,
        }
    note = f"{node} has no counterpart in run {earlier} (added since)"
    return None, {"run_id": earlier, "by": None, "note": note}
