"""Traces of runs: one span per run and per step run, exported over OTLP/HTTP when asked.

Owns the ``[telemetry]`` settings (:class:`TelemetrySettings`; read by
:func:`telemetry_settings`, which lives in :mod:`pipetrail.execution.telemetry_config` so
that a run reads them without loading this module), the spans of a run
(:func:`run_spans`, built from its record) and their export (:func:`export_run_trace`).
Nothing here runs, and nothing of OpenTelemetry is imported, unless an endpoint is
configured:

```toml
[telemetry]
otlp_endpoint = "http://collector:4318"   # OTLP/HTTP; /v1/traces is added
timeout = 5                              # seconds per export attempt
service_name = "pipetrail"
```

or the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the full URL) or
``OTEL_EXPORTER_OTLP_ENDPOINT`` (the base URL) variables, which take precedence over the
file; ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn export off.

The spans are built from what the ledger recorded once the run has ended, not while it
runs: their ids are derived from the run and step-run ids
(:mod:`pipetrail.capture.log_context`), so they are the same ids the step's log lines
carry and its worker attached while the step's code ran. A run's span is the root; each
step run's span is its child, with the cache decision, the digests of the inputs and
outputs, the rows of tables and the resources used as attributes. A failed step or run
has an error status.

An export that fails (endpoint unreachable, refused) never fails the run: it is logged
as a warning and the run id is written to ``.pipetrail/telemetry/pending``; the next
export of the project sends those runs again, oldest first, until one is accepted.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.capture.log_context import (
    LogContext,
    bound,
    run_span_id,
    step_span_id,
    trace_id_for,
)
from pipetrail.execution.telemetry_config import telemetry_settings

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pipetrail.execution.project import Project
    from pipetrail.ledger import Reader

__all__ = [
    "SpanRecord",
    "TelemetrySettings",
    "export_run_trace",
    "run_spans",
    "telemetry_settings",
]

_log = logging.getLogger(__name__)
_PENDING = "pending"


@dataclass(frozen=True)
class TelemetrySettings:
    """Where and how traces are exported.

    Attributes:
        traces_url: the OTLP/HTTP traces URL (``.../v1/traces``).
        timeout: seconds an export may take, retries included.
        service_name: the ``service.name`` resource attribute.
    """

    traces_url: str
    timeout: float = 5.0
    service_name: str = "pipetrail"


@dataclass(frozen=True)
class SpanRecord:
    """One span, as plain data (what :func:`run_spans` builds and the exporter sends).

    Attributes:
        name: ``run PIPELINE`` or ``step NODE``.
        trace_id: 32 hex digits.
        span_id: 16 hex digits.
        parent_span_id: the parent's span id (None for the run's span).
        start_ns: start, in nanoseconds since the epoch.
        end_ns: end, in nanoseconds since the epoch.
        attributes: the span's attributes (strings, numbers, booleans).
        error: the error, when the run or step failed.
    """

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, str | int | float | bool] = field(default_factory=dict)
    error: str | None = None


def _ns(timestamp: str | None, default: int) -> int:
    if not timestamp:
        return default
    try:
        moment = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return default
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _flat(prefix: str, values: Mapping[str, Any] | None) -> dict[str, str | int | float | bool]:
    found: dict[str, str | int | float | bool] = {}
    for key, value in (values or {}).items():
        if isinstance(value, str | int | float | bool):
            found[f"{prefix}.{key}"] = value
    return found


def _step_span(reader: Reader, run_id: str, step: dict[str, Any], run_start: int) -> SpanRecord:
    start = _ns(step.get("started_at"), run_start)
    attributes: dict[str, str | int | float | bool] = {
        "pipetrail.run_id": run_id,
        "pipetrail.step": str(step["step"]),
        "pipetrail.node_id": str(step["node_id"]),
        "pipetrail.step_run_id": str(step["step_run_id"]),
        "pipetrail.status": str(step["status"]),
    }
    for key in ("cache_decision", "cache_reason", "cache_key", "code_digest", "reused_step_run_id"):
        if step.get(key):
            attributes[f"pipetrail.{key}"] = str(step[key])
    attributes.update(_flat("pipetrail.input", step.get("inputs")))
    outputs = step.get("outputs") or {}
    attributes.update(_flat("pipetrail.output", outputs))
    for name, digest in outputs.items():
        record = reader.artifact(str(digest)) if isinstance(digest, str) else None
        meta = (record or {}).get("meta") or {}
        if isinstance(meta, dict) and isinstance(meta.get("rows"), int):
            attributes[f"pipetrail.output.{name}.rows"] = meta["rows"]
    attributes.update(_flat("pipetrail.resources", step.get("resources")))
    return SpanRecord(
        name=f"step {step['node_id']}",
        trace_id=trace_id_for(run_id),
        span_id=step_span_id(str(step["step_run_id"])),
        parent_span_id=run_span_id(run_id),
        start_ns=start,
        end_ns=max(start, _ns(step.get("ended_at"), start)),
        attributes=attributes,
        error=step.get("error") if step["status"] == "failed" else None,
    )


def run_spans(reader: Reader, run_id: str) -> list[SpanRecord]:
    """Return the spans of a run, from its record: the run's first, then its step runs'."""
    from pipetrail.execution.explain import run_summary

    summary = run_summary(reader, run_id)
    start = _ns(summary.get("started_at"), 0)
    steps = [_step_span(reader, run_id, step, start) for step in summary["steps"]]
    end = _ns(summary.get("ended_at"), max([start, *(s.end_ns for s in steps)]))
    attributes: dict[str, str | int | float | bool] = {
        "pipetrail.run_id": run_id,
        "pipetrail.pipeline": str(summary["pipeline"]),
        "pipetrail.status": str(summary["status"]),
        "pipetrail.steps_total": int(summary.get("steps_total") or 0),
        "pipetrail.owner": str(summary.get("owner") or ""),
        "pipetrail.host": str(summary.get("host") or ""),
        **_flat("pipetrail.param", summary.get("params")),
    }
    if summary.get("name"):
        attributes["pipetrail.run_name"] = str(summary["name"])
    run = SpanRecord(
        name=f"run {summary['pipeline']}",
        trace_id=trace_id_for(run_id),
        span_id=run_span_id(run_id),
        parent_span_id=None,
        start_ns=start,
        end_ns=max(start, end),
        attributes=attributes,
        error=summary.get("error") if summary["status"] != "completed" else None,
    )
    return [run, *steps]


def _send(settings: TelemetrySettings, spans: list[SpanRecord]) -> str | None:
    """Send spans over OTLP/HTTP; return why it failed, or None."""
    from pipetrail.execution.otlp import send_spans

    return send_spans(settings, spans)


def _pending_file(project: Project) -> Path:
    return project.config.state_dir / "telemetry" / _PENDING


def _read_pending(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").split() if line]
    except OSError:
        return []


def _write_pending(path: Path, run_ids: list[str]) -> None:
    try:
        if not run_ids:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{run_id}\n" for run_id in run_ids), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        _log.warning("could not record the traces still to export in %s: %s", path, exc)


def export_run_trace(
    project: Project, run_id: str, settings: TelemetrySettings | None
) -> str | None:
    """Export the trace of a run that has ended, and of runs whose export failed before.

    Never raises for export failures: the run stays recorded; a failed export is logged
    and kept in ``.pipetrail/telemetry/pending`` to be sent with the next export.

    Args:
        project: the run's project.
        run_id: the run (its events are all appended).
        settings: the export settings (None: nothing is exported).

    Returns:
        Why the export failed, or None (exported, or nothing to export).
    """
    if settings is None:
        return None
    with bound(LogContext.for_run(run_id)):  # pipetrail's own lines name the run
        return _export(project, run_id, settings)


def _export(project: Project, run_id: str, settings: TelemetrySettings) -> str | None:
    path = _pending_file(project)
    queue = [r for r in _read_pending(path) if r != run_id] + [run_id]
    reader = project.reader()
    problem = None
    while queue:
        try:
            spans = run_spans(reader, queue[0])
        except Exception as exc:  # noqa: BLE001 - a trace must never fail the run
            _log.warning("the trace of run %s could not be built, dropped: %s", queue[0], exc)
            queue.pop(0)
            continue
        problem = _send(settings, spans)
        if problem is not None:
            _log.warning(
                "traces of %d run(s) not exported to %s (%s); they are sent again with the "
                "next run's",
                len(queue),
                settings.traces_url,
                problem,
            )
            break
        queue.pop(0)
    _write_pending(path, queue)
    return problem
