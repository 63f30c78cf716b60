"""Traces of real runs, exported over OTLP/HTTP to a local receiver started by the test."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture.log_context import run_span_id, step_span_id, trace_id_for
from pipetrail.errors import ProjectError, StepFailedError
from pipetrail.execution.explain import run_summary
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.execution.telemetry import telemetry_settings
from pipetrail.lineage.readout import step_logs

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles
    from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.usefixtures("no_otel_environment")

TABLES = """
import logging

import pandas as pd
from opentelemetry import trace

from pipetrail import pipeline, step

@step
def load(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": list(range(n)), "y": [float(i) / 2 for i in range(n)]})

@step
def count(df: pd.DataFrame, fail: bool) -> int:
    context = trace.get_current_span().get_span_context()
    print(f"otel {context.trace_id:032x} {context.span_id:016x}")
    logging.getLogger("count").warning("counted %d rows", len(df))
    if fail:
        raise ValueError("told to fail")
    return len(df)

@pipeline
def tables(n: int = 5, fail: bool = False):
    return count(load(n), fail)
"""


def _configure(root: Path, endpoint: str, timeout: float = 5) -> None:
    (root / "pipetrail.toml").write_text(
        f'[pipetrail]\n\n[telemetry]\notlp_endpoint = "{endpoint}"\ntimeout = {timeout}\n'
    )


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def tables(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> Callable[..., str]:
    name = unique("tables")

    def run(**params: Any) -> str:
        definition = files.load(name, TABLES)
        try:
            return run_pipeline(definition, params, project, RunOptions()).id
        except StepFailedError as exc:
            return str(exc.run_id)

    return run


def _by_name(otlp_collector: OtlpReceiver, run_id: str) -> dict[str, dict[str, Any]]:
    trace = trace_id_for(run_id)
    return {s["name"]: s for s in otlp_collector.spans if s["trace_id"] == trace}


def test_a_run_and_its_steps_are_spans_of_one_trace(
    project: Project, project_root: Path, otlp_collector: OtlpReceiver, tables: Callable[..., str]
) -> None:
    _configure(project_root, otlp_collector.endpoint)
    run_id = tables()
    summary = run_summary(project.reader(), run_id)
    assert summary["trace_id"] == trace_id_for(run_id)  # recorded in run.started
    spans = _by_name(otlp_collector, run_id)
    assert set(spans) == {"run tables", "step load", "step count"}
    run = spans["run tables"]
    assert run["parent_span_id"] is None
    assert run["span_id"] == run_span_id(run_id)
    assert run["attributes"]["pipetrail.status"] == "completed"
    assert run["attributes"]["pipetrail.param.n"] == 5
    assert run["resource"]["service.name"] == "pipetrail"
    steps = {s["node_id"]: s for s in summary["steps"]}
    for node in ("load", "count"):
        span = spans[f"step {node}"]
        assert span["parent_span_id"] == run["span_id"]
        assert span["span_id"] == step_span_id(steps[node]["step_run_id"])
        assert span["attributes"]["pipetrail.cache_decision"] == "miss"
        assert span["attributes"]["pipetrail.resources.wall_ns"] > 0
        assert run["start"] <= span["start"] <= span["end"] <= run["end"]
    load = spans["step load"]["attributes"]
    assert load["pipetrail.output.output"] == steps["load"]["outputs"]["output"]
    assert load["pipetrail.output.output.rows"] == 5
    count = spans["step count"]["attributes"]
    assert count["pipetrail.input.df"] == steps["load"]["outputs"]["output"]
    # The step's code ran with its span as the OpenTelemetry context: spans it starts
    # join the run's trace; its log lines carry the same ids.
    log = next(log for log in step_logs(project.reader(), project.store, run_id, "count"))
    printed = next(line["event"] for line in log.lines if line["event"].startswith("otel "))
    assert printed == f"otel {trace_id_for(run_id)} {spans['step count']['span_id']}"
    warning = next(line for line in log.lines if line["stream"] == "log")
    assert (warning["trace_id"], warning["span_id"]) == (
        trace_id_for(run_id),
        spans["step count"]["span_id"],
    )


def test_cache_hits_and_failures_show_in_the_spans(
    project_root: Path, otlp_collector: OtlpReceiver, tables: Callable[..., str]
) -> None:
    _configure(project_root, otlp_collector.endpoint)
    tables()
    cached = _by_name(otlp_collector, tables())
    assert cached["step load"]["attributes"]["pipetrail.cache_decision"] == "hit"
    assert "pipetrail.reused_step_run_id" in cached["step load"]["attributes"]
    failed = _by_name(otlp_collector, tables(fail=True))
    error = 2  # STATUS_CODE_ERROR
    assert failed["step count"]["status"] == error
    assert failed["run tables"]["status"] == error
    assert failed["run tables"]["attributes"]["pipetrail.status"] == "failed"
    assert failed["step load"]["status"] != error


def test_an_unreachable_receiver_does_not_fail_the_run_and_is_retried(
    project: Project,
    project_root: Path,
    otlp_collector: OtlpReceiver,
    tables: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _configure(project_root, _closed_port(), timeout=0.5)
    lost = tables()
    assert run_summary(project.reader(), lost)["status"] == "completed"
    assert "not exported" in caplog.text
    pending = project_root / ".pipetrail" / "telemetry" / "pending"
    assert pending.read_text().split() == [lost]
    _configure(project_root, otlp_collector.endpoint)
    later = tables(n=3)
    assert {"run tables", "step load", "step count"} <= set(_by_name(otlp_collector, lost))
    assert "run tables" in _by_name(otlp_collector, later)
    assert not pending.exists()


def test_nothing_is_exported_or_imported_without_an_endpoint(project_root: Path) -> None:
    (project_root / "quiet.py").write_text(
        textwrap.dedent(
            """
            from pipetrail import pipeline, step

            @step
            def one() -> int:
                return 1

            @pipeline
            def quiet():
                return one()
            """
        )
    )
    code = textwrap.dedent(
        """
        import json, sys
        from pipetrail.execution.loader import load_pipeline
        from pipetrail.execution.project import Project
        from pipetrail.execution.runner import RunOptions, run_pipeline
        from pathlib import Path
        project = Project.at(Path(sys.argv[1]))
        run = run_pipeline(load_pipeline(sys.argv[2])[0], {}, project, RunOptions())
        print(json.dumps([run.status, sorted(m for m in sys.modules if "opentelemetry" in m
                          or m == "structlog")]))
        """
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(project_root), str(project_root / "quiet.py")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["completed", []]
    assert not (project_root / ".pipetrail" / "telemetry").exists()


def test_settings_come_from_the_file_or_the_standard_variables(project_root: Path) -> None:
    assert telemetry_settings(project_root, {}) is None
    _configure(project_root, "http://collector:4318/")
    found = telemetry_settings(project_root, {})
    assert found is not None
    assert found.traces_url == "http://collector:4318/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318", "OTEL_SERVICE_NAME": "lab"}
    found = telemetry_settings(project_root, env)
    assert found is not None
    assert (found.traces_url, found.service_name) == ("http://other:4318/v1/traces", "lab")
    full = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:1/custom"}
    assert telemetry_settings(project_root, full).traces_url == "http://x:1/custom"  # type: ignore[union-attr]
    assert telemetry_settings(project_root, {"OTEL_SDK_DISABLED": "true"}) is None
    assert telemetry_settings(project_root, {"OTEL_TRACES_EXPORTER": "none"}) is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('otlp_endpoint = "collector:4318"', "give an http:// or https:// URL"),
        ("timeout = 0", "timeout = 0; give a positive number of seconds"),
        ('endpoint = "http://x"', r"unknown key\(s\) endpoint in \[telemetry\]"),
    ],
)
def test_a_malformed_telemetry_table_is_refused_before_the_run(
    project: Project, project_root: Path, tables: Callable[..., str], table: str, message: str
) -> None:
    (project_root / "pipetrail.toml").write_text(f"[pipetrail]\n\n[telemetry]\n{table}\n")
    with pytest.raises(ProjectError, match=message):
        tables()
    assert project.reader().list_runs() == []
