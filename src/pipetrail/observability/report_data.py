"""Run-by-run analysis of one pipeline: the figures of ``pipetrail report``.

Owns :func:`collect_report`, which reads a pipeline's runs back through the ledger's read
model and gathers, oldest run first:

* **runs**: every run of the pipeline started in the window (ordinary runs, and the
  runs ``pipetrail check`` and ``reproduce`` made), with status, times and duration
  (``ended_at - started_at``);
* **metric trends**: each metric's value in each ordinary run that recorded it (the
  last point of a logged series, or the number a step returned: ``run_metrics``);
* **step trends**: per step (node), in each ordinary run, its status, its wall time when
  it executed (a cache hit executes nothing: no time) and whether the cache served it;
  the share of each run's steps the cache served (**cache-hit rate**);
* **failures by cause**: failed, crashed and interrupted runs of any purpose, grouped by
  the step that failed and the exception's type (``train: ValueError``), or by status
  when no step failed (a source missing, the store full);
* **drift events**: for each ordinary run, the drift of its tables from the ordinary
  run before it (:func:`~pipetrail.observability.drift.drift_runs`: where each drift
  starts and its columns), and the drift ``pipetrail check`` found against a baseline;
* **gate results**: every ``gate.checked`` verdict on the pipeline's check runs;
* **alerts**: the deliveries recorded for these runs (``alert.sent``, ``alert.failed``).

Read-only. The report is plain data (:meth:`PipelineReport.to_dict`);
:mod:`pipetrail.observability.report_render` renders it as HTML or Markdown.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import format_ts, utcnow
from pipetrail.errors import NotFoundError, PipetrailError
from pipetrail.ledger import EventKind
from pipetrail.ledger.event_reads import run_events
from pipetrail.ledger.event_records import AlertDelivery, GateChecked
from pipetrail.ledger.read_model import (
    RunFilter,
    RunRecord,
    find_runs,
    run_metric_values,
    step_run_records,
)
from pipetrail.observability.drift import drift_runs

if TYPE_CHECKING:
    from pipetrail.execution.project import Project

__all__ = ["PipelineReport", "StepPoint", "collect_report"]

_FAILED = ("failed", "crashed", "interrupted")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)?):")


@dataclass(frozen=True)
class StepPoint:
    """One step in one run: status, wall seconds when it executed, cache hit or not."""

    run_id: str
    status: str
    seconds: float | None
    cached: bool


@dataclass
class PipelineReport:
    """Everything ``pipetrail report`` shows (module docstring); oldest run first."""

    pipeline: str
    since: str | None
    generated_at: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    steps: dict[str, list[StepPoint]] = field(default_factory=dict)
    cache_hit_rate: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ordinary_runs(self) -> list[dict[str, Any]]:
        """The runs started for their own sake (purpose ``run``)."""
        return [r for r in self.runs if r["purpose"] == "run"]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data."""
        data = asdict(self)
        data["steps"] = {name: [asdict(p) for p in points] for name, points in self.steps.items()}
        return data


def _seconds(started: str, ended: str | None) -> float | None:
    if ended is None:
        return None
    parse = dt.datetime.fromisoformat
    delta = parse(ended.replace("Z", "+00:00")) - parse(started.replace("Z", "+00:00"))
    return round(delta.total_seconds(), 6)


def _cause(run: RunRecord, failed_steps: list[tuple[str, str | None]]) -> str:
    """What a run failed of: ``step: ExceptionType`` or its status and error's start."""
    if failed_steps:
        node, error = failed_steps[0]
        found = _EXCEPTION.match(error or "")
        return f"{node}: {found.group(1) if found else 'error'}"
    if run.status != "failed":
        return run.status
    first = (run.error or "no error recorded").split(":")[0]
    return f"failed: {first[:60]}"


def _run_row(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "name": run.name,
        "purpose": run.purpose,
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "seconds": _seconds(run.started_at, run.ended_at),
        "error": run.error,
    }


def collect_report(
    project: Project, pipeline: str, *, since: dt.datetime | str | None = None
) -> PipelineReport:
    """Gather the run-by-run figures of ``pipeline`` (module docstring).

    Args:
        project: the project holding the runs.
        pipeline: the pipeline's name.
        since: only runs started at or after this moment (aware datetime or ISO text).

    Raises:
        NotFoundError: no run of ``pipeline`` (in the window) is recorded.
        ParamError: ``since`` is not a date or time.
    """
    reader = project.reader()
    records = find_runs(reader, RunFilter(pipeline=pipeline, since=since, limit=None))
    if not records:
        known = sorted({r.pipeline for r in find_runs(reader, RunFilter(limit=200))})
        window = f" since {since}" if since is not None else ""
        raise NotFoundError(
            f"no run of pipeline {pipeline!r}{window} is recorded; pipelines with runs: "
            f"{', '.join(known) or 'none'}"
        )
    records.reverse()  # oldest first
    report = PipelineReport(
        pipeline=pipeline,
        since=None if since is None else str(since),
        generated_at=format_ts(utcnow()),
        runs=[_run_row(r) for r in records],
    )
    causes: dict[str, list[str]] = {}
    for run in records:
        steps = step_run_records(reader, run.run_id)
        if run.status in _FAILED:
            failed = [(s.node_id, s.error) for s in steps if s.status == "failed"]
            causes.setdefault(_cause(run, failed), []).append(run.run_id)
        if run.purpose != "run":
            continue
        for metric in run_metric_values(reader, run.run_id):
            report.metrics.setdefault(metric["name"], []).append(
                {"run_id": run.run_id, "value": metric["value"]}
            )
        cached = 0
        for step in steps:
            wall = (step.resources or {}).get("wall_ns")
            hit = step.status == "cached"
            cached += hit
            seconds = None if hit or wall is None else round(float(wall) / 1e9, 6)
            report.steps.setdefault(step.node_id, []).append(
                StepPoint(run.run_id, step.status, seconds, hit)
            )
        if steps:
            report.cache_hit_rate.append(
                {
                    "run_id": run.run_id,
                    "cached": cached,
                    "steps": len(steps),
                    "rate": cached / len(steps),
                }
            )
    report.failures = sorted(
        ({"cause": cause, "runs": ids, "count": len(ids)} for cause, ids in causes.items()),
        key=lambda item: (-item["count"], item["cause"]),
    )
    _drift_between_runs(project, report)
    _gates_and_alerts(project, report)
    return report


def _drift_between_runs(project: Project, report: PipelineReport) -> None:
    """Each completed ordinary run's drift from the completed ordinary run before it."""
    completed = [r["run_id"] for r in report.ordinary_runs if r["status"] == "completed"]
    for before, after in itertools.pairwise(completed):
        try:
            found = drift_runs(project, before, after)
        except PipetrailError as exc:  # e.g. a profile no longer stored: say so, go on
            report.drift.append(
                {
                    "run_id": after,
                    "against": [before],
                    "source": "runs",
                    "origins": [],
                    "note": str(exc),
                }
            )
            continue
        if found.drifted:
            report.drift.append(
                {
                    "run_id": after,
                    "against": [before],
                    "source": "runs",
                    "origins": [
                        {"step": o.node, "output": o.output, "columns": list(o.columns)}
                        for o in found.origins
                    ],
                }
            )


def _gates_and_alerts(project: Project, report: PipelineReport) -> None:
    """The gate verdicts on the pipeline's runs, their drift, and the alerts sent."""
    ids = [r["run_id"] for r in report.runs]
    kinds = [EventKind.GATE_CHECKED, EventKind.ALERT_SENT, EventKind.ALERT_FAILED]
    for event in run_events(project.reader(), ids, kinds):
        if isinstance(event, GateChecked):
            report.gates.append(
                {
                    "run_id": event.run_id,
                    "at": event.ts,
                    "passed": event.passed,
                    "failures": list(event.failures),
                    "baseline_run_id": event.baseline_run_id,
                }
            )
            drift = event.drift or {}
            if drift.get("drifted"):
                report.drift.append(
                    {
                        "run_id": event.run_id,
                        "against": drift.get("baseline_runs") or [event.baseline_run_id],
                        "source": "check",
                        "origins": [
                            {"step": o["step"], "output": o["output"], "columns": o["columns"]}
                            for o in drift.get("origins", [])
                        ],
                    }
                )
        elif isinstance(event, AlertDelivery):
            report.alerts.append(
                {
                    "run_id": event.run_id,
                    "at": event.ts,
                    "rule": event.rule,
                    "event": event.event,
                    "delivered": event.kind == EventKind.ALERT_SENT,
                    "attempts": event.attempts,
                    "error": event.error,
                }
            )
