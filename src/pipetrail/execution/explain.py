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

from typing import TYPE_CHECKING, Any

from pipetrail.execution.crash import effective_status, effective_step_status, not_run_nodes
from pipetrail.ledger.deletions import run_deletion
from pipetrail.ledger.read_model import (
    RunFilter,
    RunRecord,
    StepCounts,
    StepRunRecord,
    find_runs,
    run_metric_values,
    run_notes,
    run_record,
    step_counts,
    step_run_records,
)
from pipetrail.ledger.run_query import field_values

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pipetrail.ledger import Reader

__all__ = ["explain_step", "list_runs", "run_metrics", "run_summary"]


def list_runs(
    reader: Reader,
    *,
    limit: int = 50,
    pipeline: str | None = None,
    status: str | None = None,
    query: RunFilter | None = None,
    columns: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Return run rows for listing, with crash-aware status and step counts.

    ``query`` selects and orders the runs (every filter in SQL; newest first by
    default); ``pipeline``, ``status`` and ``limit`` are shorthands for its fields.
    ``columns`` (``params.X``, ``metrics.X``, ``tags.X``) adds a ``columns`` entry to
    each row with those values. A run recorded as running whose process is gone is
    listed (and filtered) as crashed.
    """
    base = query or RunFilter(pipeline=pipeline, status=status, limit=limit)
    wanted = base.status
    records = find_runs(reader, base)
    ids = [record.run_id for record in records]
    counts = step_counts(reader, ids)
    values = field_values(reader, ids, columns)
    out = []
    for record in records:
        status = _status(record)
        if wanted is not None and status != wanted:
            continue
        brief = _run_brief(record, status, counts.get(record.run_id, StepCounts()))
        if columns:
            brief["columns"] = {c: values[record.run_id].get(c) for c in columns}
        out.append(brief)
    return out


def _status(record: RunRecord) -> str:
    """The run's status, ``crashed`` for a ``running`` run whose process is gone."""
    return effective_status(
        {"status": record.status, "host": record.host, "process": record.process}
    )


def _run_brief(record: RunRecord, status: str, counts: StepCounts) -> dict[str, Any]:
    git = record.git or {}
    return {
        "run_id": record.run_id,
        "name": record.name,
        "purpose": record.purpose,
        "tags": dict(record.tags),
        "pipeline": record.pipeline,
        "status": status,
        "owner": record.owner,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "params": record.params,
        "seed": record.seed,
        "steps_total": record.steps_total,
        "steps_executed": counts.executed,
        "steps_cached": counts.cached,
        "steps_failed": counts.failed,
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
    }


def _step_facts(
    reader: Reader, run_id: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, str]], dict[str, dict[str, Any]]]:
    """Read what only step events hold, per step run id.

    Returns:
        The samples and splits each recorded (``pipetrail.data``); output name -> the
        format it is read in (``"bytes@1"``; see docs/adr/0013-how-an-output-is-read.md);
        and ``NODE.NAME`` -> the summary (count, min, max, last) of each logged series.
    """
    operations: dict[str, list[dict[str, Any]]] = {}
    formats: dict[str, dict[str, str]] = {}
    series: dict[str, dict[str, Any]] = {}
    # Imported here: the typed event records cost tens of milliseconds to import, and a
    # listing of runs (`pipetrail runs`) needs none of them.
    from pipetrail.ledger.event_reads import closing_step_events

    for event in closing_step_events(reader, run_id):
        for name, summary in event.metrics.items():
            if isinstance(summary, dict):
                series[f"{event.node_id}.{name}"] = summary
        if event.data_ops:
            operations[event.step_run_id] = event.data_ops
        readings = event.output_formats
        if isinstance(readings, dict):
            formats[event.step_run_id] = {
                name: str(reading.get("format")) if isinstance(reading, dict) else "?"
                for name, reading in readings.items()
            }
    return operations, formats, series


def _with_series(
    values: list[dict[str, Any]], series: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add a logged series' count, min and max to its metric entry."""
    for found in values:
        summary = series.get(found["name"]) if found["origin"] == "logged" else None
        if summary is not None:
            found.update({k: summary.get(k) for k in ("count", "min", "max")})
    return values


def run_metrics(reader: Reader, run_id: str, *, prefix: str = "") -> list[dict[str, Any]]:
    """A run's metrics (as ``run_summary`` lists them), ordered by name.

    Only those whose name within its step, or whose ``NODE.NAME``, starts with ``prefix``.
    """
    values = [
        m
        for m in run_metric_values(reader, run_id)
        if m["key"].startswith(prefix) or m["name"].startswith(prefix)
    ]
    return _with_series(values, _step_facts(reader, run_id)[2]) if values else []


def run_summary(reader: Reader, ref: str) -> dict[str, Any]:
    """Return everything recorded about one run (``ref``: id, prefix or ``latest``)."""
    # Imported by the functions that use them: `pipetrail runs` needs neither.
    from pipetrail.execution.contract_records import contract_results
    from pipetrail.ledger.retention_reads import run_purge

    run_id = reader.resolve_run(ref)
    run = run_record(reader, run_id)
    status = _status(run)
    rows = step_run_records(reader, run_id)
    steps: list[dict[str, Any]] = [
        {
            "step_run_id": s.step_run_id,
            "node_id": s.node_id,
            "step": s.step,
            "status": effective_step_status(status, s.status),
            "cache_decision": s.cache_decision,
            "cache_reason": s.cache_reason,
            "reused_step_run_id": s.reused_step_run_id,
            "cache_key": s.cache_key,
            "code_digest": s.code_digest,
            "inputs": s.inputs,
            "outputs": s.outputs,
            "resources": s.resources or {},
            "resource_requests": s.resource_requests or {},
            "logs": s.logs,
            "seed": s.seed,
            "started_at": s.started_at,
            "ended_at": s.ended_at,
            "error": s.error,
            "traceback": s.traceback,
        }
        for s in rows
    ]
    checked = {found["step_run_id"]: found for found in contract_results(reader, run_id)}
    operations, formats, series = _step_facts(reader, run_id)
    metrics = _with_series(run_metric_values(reader, run_id), series)
    from pipetrail.execution.run_privacy import recorded_labels

    labelled, source_labels = recorded_labels(reader, run_id)
    for entry in steps:
        # Labels (docs/data-handling.md): only labelled steps have them.
        entry.update(labelled.get(entry["step_run_id"], {}))
        entry["contracts"] = checked.get(entry["step_run_id"])
        entry["data_ops"] = operations.get(entry["step_run_id"], [])
        # How each output is read (docs/adr/0013); empty for older records.
        entry["output_formats"] = formats.get(entry["step_run_id"], {})
    record = run.record
    return {
        "run_id": run_id,
        "name": run.name,
        "purpose": run.purpose,
        "tags": dict(run.tags),
        "notes": [
            {"text": n.text, "actor": n.actor, "noted_at": n.noted_at}
            for n in run_notes(reader, run_id)
        ],
        "pipeline": run.pipeline,
        "pipeline_fingerprint": run.pipeline_fingerprint,
        "status": status,
        "error": run.error,
        "owner": run.owner,
        "host": run.host,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "params": run.params,
        "seed": run.seed,
        "git": run.git,
        "environment": run.environment,
        "pipeline_file": record.get("pipeline_file"),
        "argv": record.get("argv"),
        "pipetrail_version": record.get("pipetrail_version"),
        "params_files": record.get("params_files", []),
        "parity": record.get("parity"),
        "cache": record.get("cache", True),
        "reproduces": record.get("reproduces"),
        "trace_id": record.get("trace_id"),
        "steps_total": run.steps_total,
        "deleted": run_deletion(reader, run_id),
        "purged": run_purge(reader, run_id),
        "sources": [
            {
                **src,
                **(
                    {"classification": source_labels[src["path"]]}
                    if src["path"] in source_labels
                    else {}
                ),
            }
            for src in reader.sources(run_id)
        ],
        "steps": steps,
        # Each step's metrics: a logged series (last value, with count, min and max) or a
        # number it returned in a dict.
        "metrics": metrics,
        # Nodes of an ended run that never started (an upstream failed, or the run was
        # interrupted or crashed first), in pipeline order.
        "not_run": [
            {"node_id": node, "step": ((record.get("nodes") or {}).get(node) or {}).get("step")}
            for node in not_run_nodes(
                {"status": status, "record": record}, [{"node_id": s.node_id} for s in rows]
            )
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
    row = StepRunRecord.from_row(reader.find_step_run(run_id, step))
    previous, pairing = _counterpart(reader, run_id, row)
    before = None if previous is None else previous.components
    changes = explain_change(row.components or {}, before)
    return {
        "run_id": run_id,
        "node_id": row.node_id,
        "step": row.step,
        "status": row.status,
        "cache_key": row.cache_key,
        "cache_decision": row.cache_decision,
        "cache_reason": row.cache_reason,
        "reused_step_run_id": row.reused_step_run_id,
        "previous": None
        if previous is None
        else {
            "run_id": previous.run_id,
            "step_run_id": previous.step_run_id,
            "cache_key": previous.cache_key,
            "node_id": previous.node_id,
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
    reader: Reader, run_id: str, row: StepRunRecord
) -> tuple[StepRunRecord | None, dict[str, Any]]:
    """Return the step run ``row`` is compared with (or None), and how it was paired."""
    earlier = reader.previous_run_of_step(row.pipeline, row.step, run_id, row.first_seq)
    if earlier is None:
        return None, {"run_id": None, "by": None, "note": "no earlier run ran this step"}
    from pipetrail.execution.node_pairing import pair_nodes, recorded_nodes

    nodes_before, sources_before = recorded_nodes(reader, earlier)
    nodes_now, sources_now = recorded_nodes(reader, run_id)
    pairing = pair_nodes(nodes_before, nodes_now, sources_a=sources_before, sources_b=sources_now)
    node = row.node_id
    partner = pairing.a_of(node)
    if partner is not None:
        by = next(p.by for p in pairing.pairs if p.b == node)
        note = f"paired with {partner} of run {earlier} by {by}"
        found = StepRunRecord.from_row(reader.find_step_run(earlier, partner))
        return found, {"run_id": earlier, "by": by, "note": note}
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
