"""What raises alerts: runs that end, gates, promotion requests, unusual resource use.

Owns turning a fact of the record into an :class:`~pipetrail.observability.alerts.AlertEvent`
and handing it to :func:`~pipetrail.observability.alerts.send_alerts`:

* ``run.failed``: :func:`run_end_alerts`, which the runner calls after every run (the
  package root installs it as the run-end hook, so runs from Python, ``pipetrail run``,
  ``check`` and ``sweep`` all send it), sends a failed run's error and failed step;
* ``resource.deviation``: the same function, when a run completes, sends the
  ``resource_deviations`` its ``run.completed`` event records (one event per run,
  listing them). The runner judges them when the run ends
  (:mod:`pipetrail.execution.resource_profile`): a step at least ``deviation_factor``
  times slower than the median of its executions over the pipeline's last
  ``deviation_runs`` completed ordinary runs, and at least ``deviation_min_seconds``
  slower, or a step whose peak memory went above its request;
* ``gate.failed`` and ``drift.detected``: :func:`gate_alerts`, when ``pipetrail check``
  has judged (drift is sent whether or not ``[drift] gate`` fails the check on it);
* ``promotion.requested``: :func:`promotion_alert`, when a request is recorded.

Nothing here reads the ledger but through its read model; without an ``[alerts]`` table
each run costs one small file read and does not import this module. Alerts never fail
what raised them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipetrail.errors import PipetrailError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.execution.project import Project
    from pipetrail.observability.alerts import AlertSettings

__all__ = [
    "gate_alerts",
    "promotion_alert",
    "recorded_deviations",
    "run_end_alerts",
]

_LOG = logging.getLogger("pipetrail.alerts")


def _settings(project: Project) -> AlertSettings | None:
    """The project's rules; without an ``[alerts]`` table, nothing more is imported."""
    from pipetrail.observability.alerts import load_alerts

    try:
        return load_alerts(project.root)
    except PipetrailError as exc:  # the run's own checks report a bad file; alerts only log
        _LOG.warning("alerts not sent: %s", exc)
        return None


def recorded_deviations(project: Project, run_id: str) -> list[dict[str, Any]]:
    """The ``resource_deviations`` that ``run_id``'s ``run.completed`` event records.

    One rule, one place: the runner judges the run against its history when it ends
    (:mod:`pipetrail.execution.resource_profile`), and the alert sends what was recorded.
    """
    from pipetrail.ledger import EventKind
    from pipetrail.ledger.event_reads import run_events
    from pipetrail.ledger.event_records import RunEnded

    for event in run_events(project.reader(), [run_id], [EventKind.RUN_COMPLETED]):
        if isinstance(event, RunEnded):
            return event.resource_deviations
    return []


def _deviation_text(found: Mapping[str, Any]) -> str:
    if found.get("kind") == "memory-over-request":
        peak, requested = found["peak_rss_bytes"] / 2**20, found["requested_bytes"] / 2**20
        return f"{found['node_id']} peak memory {peak:.0f} MiB (requested {requested:.0f} MiB)"
    return f"{found['node_id']} {found['seconds']:g} s (usually {found['median_seconds']:g} s)"


def run_end_alerts(project: Project, run_id: str, status: str) -> None:
    """Send ``run.failed`` or ``resource.deviation`` for a run that just ended."""
    settings = _settings(project)
    if settings is None:
        return
    from pipetrail.ledger.read_model import run_record, step_run_records
    from pipetrail.observability.alerts import AlertEvent, send_alerts

    try:
        run = run_record(project.reader(), run_id)
        if status == "failed" and settings.listening("run.failed", run.pipeline):
            failed = [s.node_id for s in step_run_records(project.reader(), run_id)
                      if s.status == "failed"]  # fmt: skip
            where = f" at step {failed[0]}" if failed else ""
            send_alerts(
                project,
                AlertEvent(
                    "run.failed",
                    f"run {run_id} of pipeline {run.pipeline} failed{where}: {run.error}",
                    run_id=run_id,
                    pipeline=run.pipeline,
                    details={"error": run.error, "failed_steps": failed},
                ),
                settings=settings,
            )
        elif status == "completed" and settings.listening("resource.deviation", run.pipeline):
            slow = recorded_deviations(project, run_id)
            if slow:
                listed = ", ".join(_deviation_text(s) for s in slow)
                send_alerts(
                    project,
                    AlertEvent(
                        "resource.deviation",
                        f"run {run_id} of pipeline {run.pipeline}: unusual resource use: {listed}",
                        run_id=run_id,
                        pipeline=run.pipeline,
                        details={"steps": slow},
                    ),
                    settings=settings,
                )
    except PipetrailError as exc:  # reading the record back failed: the run stands
        _LOG.warning("alerts for run %s not sent: %s", run_id, exc)


def gate_alerts(project: Project, report: Mapping[str, Any]) -> None:
    """Send ``gate.failed`` and ``drift.detected`` for a check's report (``to_dict()``)."""
    settings = _settings(project)
    if settings is None or report.get("run_id") is None:
        return
    from pipetrail.observability.alerts import AlertEvent, send_alerts

    run_id, pipeline = str(report["run_id"]), str(report["pipeline"])
    drift = report.get("drift")
    if drift and drift.get("drifted"):
        where = "; ".join(f"step {o['step']} ({', '.join(o['columns'])})" for o in drift["origins"])
        send_alerts(
            project,
            AlertEvent(
                "drift.detected",
                f"run {run_id} of pipeline {pipeline} drifts from "
                f"{', '.join(drift['baseline_runs'])}: starts at {where}",
                run_id=run_id,
                pipeline=pipeline,
                details={
                    "baseline_runs": drift["baseline_runs"],
                    "origins": drift["origins"],
                    "gated": drift["gate"],
                },
            ),
            settings=settings,
        )
    if not report.get("passed"):
        failures = list(report.get("failures") or [])
        send_alerts(
            project,
            AlertEvent(
                "gate.failed",
                f"pipetrail check of pipeline {pipeline} failed (run {run_id}): "
                + (failures[0] if failures else "see the report"),
                run_id=run_id,
                pipeline=pipeline,
                details={"failures": failures, "report": report.get("report_digest")},
            ),
            settings=settings,
        )


def promotion_alert(project: Project, request: Mapping[str, Any], run_id: str | None) -> None:
    """Send ``promotion.requested`` for a recorded request (its recorded content)."""
    settings = _settings(project)
    if settings is None:
        return
    from pipetrail.ledger.read_model import run_record
    from pipetrail.observability.alerts import AlertEvent, send_alerts

    pipeline = None
    if run_id is not None:
        try:
            pipeline = run_record(project.reader(), run_id).pipeline
        except PipetrailError:
            pipeline = None  # the run is gone: rules without a pipeline filter still hear
    send_alerts(
        project,
        AlertEvent(
            "promotion.requested",
            f"promotion of {request['model']}:{request['version']} to {request['alias']} "
            f"requested ({request['request_id']}, risk {request.get('risk')}): "
            f"{request.get('rationale', '')}",
            run_id=run_id,
            pipeline=pipeline,
            details={
                k: request.get(k)
                for k in ("request_id", "model", "version", "alias", "risk", "rationale", "digest")
            },
        ),
        settings=settings,
    )
