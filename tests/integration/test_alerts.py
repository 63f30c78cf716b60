"""Alerts from real runs to a local HTTP receiver and to commands, recorded in the ledger."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import StepFailedError
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventKind
from pipetrail.ledger.event_reads import run_events
from pipetrail.ledger.event_records import AlertDelivery
from pipetrail.observability.alert_events import gate_alerts
from pipetrail.observability.alerts import AlertEvent, send_alerts
from tests.support.receiver import Receiver, receiving

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

FLAKY = """
import time
from pipetrail import pipeline, step

@step
def prepare(n: int) -> int:
    return n

@step
def work(n: int, pause: float) -> int:
    time.sleep(pause)
    if n < 0:
        raise ValueError(f"n must be positive, got {n}")
    return n * 2

@pipeline
def flaky(n: int = 1, pause: float = 0.0):
    return work(prepare(n), pause)
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiving()


@pytest.fixture
def alerts(project_root: Path) -> Callable[[str], None]:
    def write(rules: str) -> None:
        (project_root / "pipetrail.toml").write_text(
            "[pipetrail]\n\n[alerts]\nbackoff = 0.01\ntimeout = 2\n" + textwrap.dedent(rules)
        )

    return write


def _run(project: Project, files: PipelineFiles, **params: Any) -> str:
    definition = files.load("flaky_pipeline", FLAKY)
    # No observer: the package root's run-end hook sends a Python run's alerts.
    options = RunOptions()
    try:
        return run_pipeline(definition, params, project, options).id
    except StepFailedError as exc:
        return exc.run_id


def _deliveries(project: Project, run_id: str) -> list[AlertDelivery]:
    found = run_events(project.reader(), [run_id], [EventKind.ALERT_SENT, EventKind.ALERT_FAILED])
    return [e for e in found if isinstance(e, AlertDelivery)]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_failed_run_posts_json_and_the_delivery_is_recorded(
    project: Project, files: PipelineFiles, receiver: Receiver, alerts: Callable[[str], None]
) -> None:
    alerts(
        f"""
        [[alerts.rules]]
        name = "ops"
        on = ["run.failed"]
        webhook = "{receiver.url}/hooks/secret-token"
        """
    )
    ok = _run(project, files, n=1)
    assert receiver.posts == []  # a completed run is not a failure
    run_id = _run(project, files, n=-1)
    assert run_id != ok
    [post] = receiver.posts
    assert post["path"] == "/hooks/secret-token"
    assert post["content_type"] == "application/json"
    body = post["json"]
    assert body["source"] == "pipetrail"
    assert (body["event"], body["rule"], body["run_id"]) == ("run.failed", "ops", run_id)
    assert body["pipeline"] == "flaky"
    assert body["details"]["failed_steps"] == ["work"]
    assert "n must be positive, got -1" in body["details"]["error"]
    assert f"run {run_id} of pipeline flaky failed at step work" in body["summary"]
    [delivery] = _deliveries(project, run_id)
    assert delivery.kind == "alert.sent"
    assert (delivery.rule, delivery.event, delivery.target) == ("ops", "run.failed", "webhook")
    assert (delivery.attempts, delivery.status, delivery.error) == (1, 200, None)
    # The webhook's path (often a secret) is not recorded.
    assert delivery.destination == receiver.url
    assert "secret-token" not in json.dumps(delivery.payload)
    assert _deliveries(project, ok) == []


def test_a_table_named_with_an_escape_still_sends_the_run_end_alert(
    project: Project, files: PipelineFiles, receiver: Receiver, project_root: Path
) -> None:
    # "\u0061lerts" is TOML for "alerts": the run-end hook must not skip the table because
    # the file's bytes never spell the word.
    (project_root / "pipetrail.toml").write_text(
        "[pipetrail]\n\n"
        '["\\u0061lerts"]\nbackoff = 0.01\ntimeout = 2\n'
        '[["\\u0061lerts".rules]]\nname = "ops"\non = ["run.failed"]\n'
        f'webhook = "{receiver.url}/h"\n'
    )
    assert b"alerts" not in (project_root / "pipetrail.toml").read_bytes()
    run_id = _run(project, files, n=-1)
    [post] = receiver.posts
    assert (post["json"]["event"], post["json"]["run_id"]) == ("run.failed", run_id)


def test_failed_attempts_are_retried_with_backoff(
    project: Project, receiver: Receiver, alerts: Callable[[str], None]
) -> None:
    alerts(
        f"""
        retries = 2
        [[alerts.rules]]
        name = "ops"
        on = ["gate.failed"]
        webhook = "{receiver.url}/h"
        """
    )
    receiver.answers = [503, 500]
    event = AlertEvent("gate.failed", "check failed", run_id=None, pipeline="p")
    [delivery] = send_alerts(project, event)
    assert delivery.delivered
    assert delivery.attempts == 3
    assert [p["status"] for p in receiver.posts] == [503, 500, 200]
    receiver.answers = [500, 500, 500]
    [given_up] = send_alerts(project, event)
    assert not given_up.delivered
    assert (given_up.attempts, given_up.status, given_up.error) == (
        3,
        500,
        "HTTP 500 Internal Server Error",
    )
    kinds = [e.kind for e in project.ledger.iter_events() if e.kind.startswith("alert.")]
    assert kinds == ["alert.sent", "alert.failed"]


def test_an_unreachable_webhook_never_fails_the_run(
    project: Project, files: PipelineFiles, alerts: Callable[[str], None]
) -> None:
    alerts(
        f"""
        retries = 1
        [[alerts.rules]]
        name = "nowhere"
        on = ["run.failed"]
        webhook = "http://127.0.0.1:{_closed_port()}/hook"
        """
    )
    definition = files.load("flaky_pipeline", FLAKY)
    # The step's own error reaches the caller, as without alerts.
    with pytest.raises(StepFailedError, match="n must be positive") as caught:
        run_pipeline(definition, {"n": -2}, project, RunOptions())
    [delivery] = _deliveries(project, caught.value.run_id)
    assert delivery.kind == "alert.failed"
    assert delivery.attempts == 2
    assert delivery.status is None
    assert delivery.error is not None
    assert "refused" in delivery.error.lower()
    assert project.reader().get_run(caught.value.run_id)["status"] == "failed"


def test_slack_payloads_and_pipeline_filters(
    project: Project, files: PipelineFiles, receiver: Receiver, alerts: Callable[[str], None]
) -> None:
    alerts(
        f"""
        [[alerts.rules]]
        name = "slack"
        on = ["run.failed"]
        webhook = "{receiver.url}/slack"
        format = "slack"
        pipelines = ["flaky"]

        [[alerts.rules]]
        name = "other-team"
        on = ["run.failed"]
        webhook = "{receiver.url}/other"
        pipelines = ["train"]
        """
    )
    run_id = _run(project, files, n=-1)
    [post] = receiver.posts
    assert post["path"] == "/slack"
    body = post["json"]
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("pipetrail run.failed: run ")
    [block] = body["blocks"]
    assert block["type"] == "section"
    assert block["text"]["type"] == "mrkdwn"
    assert f"run `{run_id}`, pipeline `flaky`" in block["text"]["text"]
    assert [d.rule for d in _deliveries(project, run_id)] == ["slack"]


def test_commands_get_the_message_on_stdin_and_their_failures_are_recorded(
    project: Project, project_root: Path, alerts: Callable[[str], None]
) -> None:
    script = project_root / "notify.py"
    script.write_text(
        "import os, sys, pathlib\n"
        "data = sys.stdin.read()\n"
        "pathlib.Path(sys.argv[1]).write_text(os.environ['PIPETRAIL_ALERT_EVENT'] + '\\n' + data)\n"
        "sys.exit(int(sys.argv[2]))\n"
    )
    got = project_root / "got.txt"
    python, notify, out = (json.dumps(str(p)) for p in (sys.executable, script, got))
    fail = json.dumps("import sys; sys.stderr.write('no route'); sys.exit(3)")
    alerts(
        f"""
        retries = 1
        [[alerts.rules]]
        name = "script"
        on = ["promotion.requested"]
        command = [{python}, {notify}, {out}, "0"]

        [[alerts.rules]]
        name = "broken"
        on = ["promotion.requested"]
        command = [{python}, "-c", {fail}]
        """
    )
    event = AlertEvent("promotion.requested", "churn:1 to production", details={"model": "churn"})
    sent, broken = send_alerts(project, event)
    assert sent.delivered
    assert (sent.target, sent.destination, sent.status) == ("command", sys.executable, 0)
    kind, body = got.read_text().split("\n", 1)
    assert kind == "promotion.requested"
    assert json.loads(body)["details"] == {"model": "churn"}
    assert not broken.delivered
    assert broken.attempts == 2
    assert broken.status == 3
    assert broken.error is not None
    assert broken.error.endswith("exited with 3: no route")


def test_a_webhook_url_from_the_environment(
    project: Project, receiver: Receiver, alerts: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    alerts(
        """
        [[alerts.rules]]
        name = "env"
        on = ["drift.detected"]
        webhook_env = "TEAM_HOOK"
        """
    )
    event = AlertEvent("drift.detected", "drift", details={})
    monkeypatch.delenv("TEAM_HOOK", raising=False)
    [unset] = send_alerts(project, event)
    assert not unset.delivered
    assert unset.error == "environment variable TEAM_HOOK does not hold an http(s) URL; set it"
    monkeypatch.setenv("TEAM_HOOK", receiver.url + "/env")
    [sent] = send_alerts(project, event)
    assert sent.delivered
    assert receiver.posts[0]["path"] == "/env"


def test_a_step_far_slower_than_usual_is_a_resource_deviation(
    project: Project, files: PipelineFiles, receiver: Receiver, alerts: Callable[[str], None]
) -> None:
    alerts(
        f"""
        deviation_factor = 3
        deviation_min_seconds = 0.4
        [[alerts.rules]]
        name = "perf"
        on = ["resource.deviation"]
        webhook = "{receiver.url}/perf"
        """
    )
    _run(project, files, n=1, pause=0.01)
    _run(project, files, n=2, pause=0.02)
    assert receiver.posts == []  # no history for the first, within the usual for the second
    slow = _run(project, files, n=3, pause=0.6)
    [post] = receiver.posts
    body = post["json"]
    assert (body["event"], body["run_id"]) == ("resource.deviation", slow)
    [step] = body["details"]["steps"]
    assert step["node_id"] == "work"
    assert step["seconds"] >= 0.6
    assert step["runs"] == 2
    assert step["median_seconds"] < 0.2
    assert "work" in body["summary"]
    # The alert sends what the run's record says, not a judgement of its own.
    from pipetrail.observability.alert_events import recorded_deviations

    assert body["details"]["steps"] == recorded_deviations(project, slow)
    assert step["kind"] == "slower"


def test_gate_reports_raise_gate_and_drift_alerts(
    project: Project, receiver: Receiver, alerts: Callable[[str], None]
) -> None:
    alerts(
        f"""
        [[alerts.rules]]
        name = "gates"
        on = ["gate.failed", "drift.detected"]
        webhook = "{receiver.url}/gates"
        """
    )
    report = {
        "run_id": "R1", "pipeline": "p", "passed": False, "report_digest": "blake3:00",
        "failures": ["data drift above the [drift] thresholds against baseline R0, ..."],
        "drift": {"drifted": True, "gate": True, "baseline_runs": ["R0"],
                  "origins": [{"step": "load", "output": "output", "columns": ["amount"],
                               "downstream": []}]},
    }  # fmt: skip
    gate_alerts(project, report)
    events = [p["json"]["event"] for p in receiver.posts]
    assert events == ["drift.detected", "gate.failed"]
    drift = receiver.posts[0]["json"]
    assert drift["summary"] == "run R1 of pipeline p drifts from R0: starts at step load (amount)"
    gate = receiver.posts[1]["json"]
    assert gate["details"]["failures"] == report["failures"]
    receiver.posts.clear()
    gate_alerts(project, {**report, "passed": True, "drift": None})
    assert receiver.posts == []
