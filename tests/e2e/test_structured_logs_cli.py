"""`pipetrail logs --json/--follow`, `--log-format` and the trace in `show`, in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from pipetrail.capture.log_context import trace_id_for
from tests.e2e.test_cli import PIPETRAIL, cli

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
import logging
import time
from pathlib import Path

from pipetrail import pipeline, step

@step(cache=False)
def greet(gate: str) -> str:
    print("hello before the gate")
    logging.getLogger("greet").warning("greeted", extra={"who": "world"})
    return gate

@step(cache=False)
def wait(gate: str) -> int:
    Path(gate, "waiting").write_text("1")
    deadline = time.monotonic() + 60
    while not Path(gate, "open").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    print("the gate opened")
    return 1

@pipeline
def gated(gate: str):
    return wait(greet(gate))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "gated.py").write_text(textwrap.dedent(PIPELINE))
    (root / "gate").mkdir()
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200"}


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _open_gate(project: Path) -> None:
    (project / "gate" / "open").write_text("1")


def test_follow_prints_each_step_as_it_ends_until_the_run_ends(project: Path) -> None:
    run = subprocess.Popen(
        [*PIPETRAIL, "run", "gated.py", "-p", "gate=gate", "-q"],
        cwd=project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(project / "gate" / "waiting", run)
        follow = subprocess.Popen(
            [*PIPETRAIL, "logs", "latest", "--follow"],
            cwd=project,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        assert follow.poll() is None  # the run goes on: so does --follow
        _open_gate(project)
        out, err = follow.communicate(timeout=120)
    finally:
        _open_gate(project)
        run.communicate(timeout=120)
    assert follow.returncode == 0, err
    assert run.returncode == 0
    assert out.index("== greet (completed)") < out.index("[stdout] hello before the gate")
    assert out.index("[stdout] hello before the gate") < out.index("== wait (completed)")
    assert out.rstrip().endswith("[stdout] the gate opened")
    assert "WARNING greet: greeted who=world" in out


def test_follow_of_an_ended_run_prints_it_and_stops(project: Path) -> None:
    _open_gate(project)
    assert cli(project, "run", "gated.py", "-p", "gate=gate", "-q").returncode == 0
    out = cli(project, "logs", "latest", "wait", "--follow", "--json", check=True).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["event"] for line in lines] == ["the gate opened"]
    assert lines[0]["step"] == "wait"
    missing = cli(project, "logs", "latest", "nosuch", "--follow")
    assert missing.returncode == 2
    assert "has no step 'nosuch'" in missing.stderr


def test_logs_json_lines_carry_the_ids_and_show_names_the_trace(project: Path) -> None:
    _open_gate(project)
    done = json.loads(
        cli(project, "run", "gated.py", "-p", "gate=gate", "--json", check=True).stdout
    )
    run_id = done["run_id"]
    data = json.loads(cli(project, "logs", run_id, "--json", check=True).stdout)
    greet = next(step for step in data["steps"] if step["node_id"] == "greet")
    assert greet["text"].startswith("[stdout] hello before the gate\n")
    for line in greet["lines"]:
        assert line["run_id"] == run_id
        assert line["step"] == "greet"
        assert line["step_run_id"] == greet["step_run_id"]
        assert line["trace_id"] == trace_id_for(run_id)
        assert len(line["span_id"]) == 16
    assert greet["lines"][1]["who"] == "world"
    shown = cli(project, "show", run_id, check=True).stdout
    assert trace_id_for(run_id) in shown
    as_json = json.loads(cli(project, "show", run_id, "--json", check=True).stdout)
    assert as_json["trace_id"] == trace_id_for(run_id)


def test_log_format_json_makes_every_log_line_a_json_object(project: Path) -> None:
    _open_gate(project)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    (project / "pipetrail.toml").write_text(
        (project / "pipetrail.toml").read_text()
        + f'\n[telemetry]\notlp_endpoint = "{closed}"\ntimeout = 0.5\n'
    )
    result = cli(project, "--log-format", "json", "run", "gated.py", "-p", "gate=gate", "--json")
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    step_line = next(line for line in lines if line.get("logger") == "greet")
    assert step_line["event"] == "greeted"
    assert step_line["level"] == "warning"
    assert step_line["run_id"] == run_id
    assert step_line["step"] == "greet"
    assert step_line["trace_id"] == trace_id_for(run_id)
    own = next(line for line in lines if line.get("logger") == "pipetrail.execution.telemetry")
    assert "not exported" in own["event"]
    assert own["run_id"] == run_id
    assert own["step"] is None
    console = cli(project, "--log-format", "console", "run", "gated.py", "-p", "gate=gate")
    assert console.returncode == 0
    assert "greeted" in console.stderr
    assert "run_id=" in console.stderr
    bad = cli(project, "--log-format", "xml", "runs")
    assert bad.returncode == 2
    assert "xml" in bad.stderr
