"""Alerts: ``[alerts]`` rules in ``pipetrail.toml`` sending what happened to people.

Owns loading the rules, delivering one event's message to every rule that listens for
it, retrying, and recording each delivery in the ledger. What raises the events (a run
that failed, drift, a failed gate, a promotion request, a step far slower than usual)
is in :mod:`pipetrail.observability.alert_events`.

A rule (``[[alerts.rules]]``) names the events it listens for (``on``), optionally the
pipelines (``pipelines``), and one target:

* ``webhook = "https://..."`` (or ``webhook_env = "VAR"``, the URL read from that
  environment variable when sending, so that a secret URL stays out of the file): an
  HTTP POST of JSON, either pipetrail's own message (``format = "json"``, the default:
  ``source``, ``event``, ``rule``, ``summary``, ``run_id``, ``pipeline``, ``project``,
  ``details``) or a Slack-compatible one (``format = "slack"``: ``text`` plus one
  ``section`` block in mrkdwn); a 2xx answer is a delivery;
* ``command = ["prog", "arg", ...]``: the program is run (no shell) with the JSON
  message on its standard input and ``PIPETRAIL_ALERT_EVENT`` set; exit code 0 is a
  delivery.

A failed attempt (no answer, a non-2xx status, a non-zero exit, a time-out after
``timeout`` seconds) is tried again up to ``retries`` times, waiting ``backoff`` seconds
and twice as long after each failure. Delivery is synchronous, so a process that ends
right after sending still delivers; each rule's outcome is one ledger event,
``alert.sent`` or ``alert.failed`` (:class:`~pipetrail.ledger.event_records.AlertDelivery`),
naming the rule, the event, the target's destination without secrets (scheme, host and
port of a URL; a command's program), the attempts, the last status and the error.

An alert never fails what raised it: delivery errors are recorded, and a ledger that
cannot take the record is reported through ``logging`` (``pipetrail.alerts``). The
``[alerts]`` table is validated by :func:`pipetrail.config_model.validate_alerts`
(pydantic), imported only when the project file has one. Imports execution's project
and the layers below it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipetrail.errors import PipetrailError
from pipetrail.ledger import EventDraft, EventKind

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.execution.project import Project

__all__ = ["AlertEvent", "AlertSettings", "Delivery", "load_alerts", "send_alerts"]

_LOG = logging.getLogger("pipetrail.alerts")
_MAX_OUTPUT = 300


@dataclass(frozen=True)
class AlertEvent:
    """Something rules may listen for.

    Attributes:
        kind: ``run.failed``, ``drift.detected``, ``gate.failed``,
            ``promotion.requested`` or ``resource.deviation``.
        summary: one line for people.
        run_id: the run it is about, if any.
        pipeline: that run's pipeline, if any (rules may filter on it).
        details: JSON-able facts (the error, the drifting columns, the failures...).
    """

    kind: str
    summary: str
    run_id: str | None = None
    pipeline: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertSettings:
    """The validated ``[alerts]`` table (see :func:`pipetrail.config_model.validate_alerts`)."""

    rules: tuple[dict[str, Any], ...] = ()
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 5.0
    deviation_factor: float = 3.0
    deviation_runs: int = 10
    deviation_min_seconds: float = 1.0

    def listening(self, kind: str, pipeline: str | None = None) -> list[dict[str, Any]]:
        """The rules that listen for ``kind`` (about ``pipeline``)."""
        return [
            rule
            for rule in self.rules
            if kind in rule["on"]
            and (rule.get("pipelines") is None or pipeline in rule["pipelines"])
        ]


@dataclass(frozen=True)
class Delivery:
    """How one rule's message went: ``delivered``, after ``attempts`` tries."""

    rule: str
    event: str
    target: str
    destination: str
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


def load_alerts(root: Path) -> AlertSettings | None:
    """Read ``[alerts]`` of the project's file; None when it has no rule.

    Raises:
        ProjectError: the file cannot be read, or ``[alerts]`` is malformed (one line
            naming the key, what was expected and what was found).
    """
    from pipetrail.config_tables import CONFIG_FILE, project_table

    table = project_table(root, "alerts")  # usually absent: no parse, no pydantic import
    if table is None:
        return None
    from pipetrail.config_model import validate_alerts

    values = validate_alerts(root / CONFIG_FILE, table)
    if not values["rules"]:
        return None
    return AlertSettings(**{**values, "rules": tuple(values["rules"])})


def message(event: AlertEvent, rule: str, project: str, *, slack: bool) -> dict[str, Any]:
    """The JSON body a rule sends for ``event`` (module docstring)."""
    if slack:
        lines = [f"*pipetrail: {event.kind}* ({project})", event.summary]
        if event.run_id:
            lines.append(
                f"run `{event.run_id}`"
                + (f", pipeline `{event.pipeline}`" if event.pipeline else "")
            )
        text = "\n".join(lines)
        return {
            "text": f"pipetrail {event.kind}: {event.summary}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        }
    return {
        "source": "pipetrail",
        "event": event.kind,
        "rule": rule,
        "summary": event.summary,
        "run_id": event.run_id,
        "pipeline": event.pipeline,
        "project": project,
        "details": event.details,
    }


def _destination(url: str) -> str:
    """A URL without its path, query and credentials (webhook paths often are secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _post(url: str, body: bytes, timeout: float) -> tuple[int | None, str | None]:
    """POST ``body``; return ``(status, error)`` (error None on a 2xx answer)."""
    import http.client  # only when sending: they cost start-up time to every run
    import urllib.error
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the scheme is validated: http(s) only
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return None, f"{type(exc).__name__}: {reason}"
    return status, None if 200 <= status < 300 else f"HTTP {status}"


def _run(argv: list[str], body: bytes, kind: str, timeout: float) -> tuple[int | None, str | None]:
    """Run a rule's command with the message on stdin; return ``(exit code, error)``."""
    import subprocess  # only when sending: it costs start-up time to every run

    try:
        done = subprocess.run(
            argv,
            input=body,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "PIPETRAIL_ALERT_EVENT": kind},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"{argv[0]} did not finish within {timeout:g} s"
    except OSError as exc:
        return None, f"cannot run {argv[0]}: {exc.strerror or exc}"
    if done.returncode == 0:
        return 0, None
    said = done.stderr.decode("utf-8", "replace").strip()[-_MAX_OUTPUT:]
    return done.returncode, f"{argv[0]} exited with {done.returncode}" + (
        f": {said}" if said else ""
    )


def _deliver(
    rule: dict[str, Any], event: AlertEvent, project: str, settings: AlertSettings
) -> Delivery:
    """Send one rule's message, retrying with backoff (module docstring)."""
    name = rule["name"]
    if rule.get("command"):
        argv = list(rule["command"])
        body = json.dumps(message(event, name, project, slack=False)).encode("utf-8")

        def attempt() -> tuple[int | None, str | None]:
            return _run(argv, body, event.kind, settings.timeout)

        target, destination = "command", argv[0]
    else:
        url = rule.get("webhook") or os.environ.get(rule.get("webhook_env") or "", "")
        body = json.dumps(
            message(event, name, project, slack=rule.get("format") == "slack")
        ).encode("utf-8")
        target = "webhook"
        if not url.startswith(("http://", "https://")):
            variable = rule.get("webhook_env")
            return Delivery(
                name, event.kind, target, f"${variable}", False, 0,
                error=f"environment variable {variable} does not hold an http(s) URL; set it",
            )  # fmt: skip
        destination = _destination(url)

        def attempt() -> tuple[int | None, str | None]:
            return _post(url, body, settings.timeout)

    status: int | None = None
    error: str | None = None
    tries = 0
    for tries in range(1, settings.retries + 2):
        status, error = attempt()
        if error is None:
            break
        if tries <= settings.retries:
            time.sleep(settings.backoff * 2 ** (tries - 1))
    return Delivery(name, event.kind, target, destination, error is None, tries, status, error)


def _record(project: Project, event: AlertEvent, delivery: Delivery) -> None:
    """Append the delivery's ledger event; a ledger that refuses it is only logged."""
    payload = {
        "run_id": event.run_id,
        "rule": delivery.rule,
        "event": delivery.event,
        "target": delivery.target,
        "destination": delivery.destination,
        "attempts": delivery.attempts,
        "status": delivery.status,
        "error": delivery.error,
        "summary": event.summary,
    }
    kind = EventKind.ALERT_SENT if delivery.delivered else EventKind.ALERT_FAILED
    try:
        project.ledger.append([EventDraft(kind, payload, run_id=event.run_id)])
    except (PipetrailError, OSError) as exc:
        _LOG.warning(
            "alert %r: the ledger did not take its %s record: %s", delivery.rule, kind, exc
        )


def send_alerts(
    project: Project, event: AlertEvent, *, settings: AlertSettings | None = None
) -> list[Delivery]:
    """Deliver ``event`` to every rule listening for it and record each delivery.

    Never raises for a delivery that fails (module docstring).

    Args:
        project: the project whose rules apply and whose ledger records deliveries.
        event: what happened.
        settings: the rules (default: :func:`load_alerts` of the project).

    Returns:
        One :class:`Delivery` per rule that listens for the event (none without rules).

    Raises:
        ProjectError: ``[alerts]`` is malformed (only when ``settings`` is not given).
    """
    settings = settings if settings is not None else load_alerts(project.root)
    if settings is None:
        return []
    found = []
    for rule in settings.listening(event.kind, event.pipeline):
        delivery = _deliver(rule, event, project.root.name, settings)
        if not delivery.delivered:
            _LOG.warning(
                "alert %r for %s not delivered after %d attempt(s): %s",
                delivery.rule, event.kind, delivery.attempts, delivery.error,
            )  # fmt: skip
        _record(project, event, delivery)
        found.append(delivery)
    return found
