"""`pipetrail run` stopped by Ctrl-C, SIGTERM, a second Ctrl-C, and kill -9, in real processes.

The step waits on a gate file, so each signal lands mid-step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]

GATED = """
import time
from pathlib import Path
from pipetrail import pipeline, step

@step
def first() -> int:
    return 1

@step(cache=False)
def block(x: int, gate: str, stubborn: bool = False) -> int:
    folder = Path(gate)
    (folder / "ready").write_text("1")
    try:
        while not (folder / "release").exists():
            time.sleep(0.01)
    except KeyboardInterrupt:
        if not stubborn:
            raise
        (folder / "caught").write_text("1")
        while True:  # ignores Ctrl-C, as some training loops do
            time.sleep(0.01)
    return x + 1

@step
def after(x: int) -> int:
    return x * 2

@pipeline
def gated(gate: str, stubborn: bool = False, hold: bool = False):
    if hold:  # blocks while the graph is built, before anything is recorded
        (Path(gate) / "ready").write_text("1")
        while not (Path(gate) / "release").exists():
            time.sleep(0.01)
    return after(block(first(), gate=gate, stubborn=stubborn))
"""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pipetrail ARGS`` in ``cwd``, run in this process (the interrupted runs are not)."""
    return cli_inline(cwd, *args)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "gated.py").write_text(textwrap.dedent(GATED))
    (root / "gate").mkdir()
    return root


def start(root: Path, *params: str) -> subprocess.Popen[str]:
    args = ["-p", f"gate={root / 'gate'}"]
    for param in params:
        args += ["-p", param]
    proc = subprocess.Popen(
        [*PIPETRAIL, "run", "gated.py", "-q", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    wait_for(root / "gate" / "ready")
    return proc


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.005)


def latest(root: Path) -> dict[str, Any]:
    """The newest run of any kind (``show latest`` leaves reproductions and checks out)."""
    listed = cli(root, "runs", "-n", "1", "--json")
    assert listed.returncode == 0, listed.stderr
    result = cli(root, "show", json.loads(listed.stdout)[0]["run_id"], "--json")
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def table_statuses(shown: str) -> dict[str, str]:
    """Step -> status, from the steps table `pipetrail show` prints."""
    rows = [[cell.strip() for cell in line.split("│")] for line in shown.splitlines()]
    return {row[0]: row[1] for row in rows if len(row) > 2 and row[0] != "step"}


def node_statuses(summary: dict[str, Any]) -> dict[str, str]:
    found = {s["node_id"]: s["status"] for s in summary["steps"]}
    found.update({n["node_id"]: "not run" for n in summary.get("not_run", [])})
    return found


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"]
)
def test_a_signal_ends_the_run_as_interrupted_with_one_line(
    project: Path, sig: signal.Signals, code: int
) -> None:
    proc = start(project)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == code, err
    assert out == ""
    summary = latest(project)
    run_id = summary["run_id"]
    assert err.splitlines() == [
        f"run {run_id} interrupted by {sig.name}: 1 completed, 1 interrupted, 1 not run; "
        f"details: pipetrail show {run_id}"
    ]
    assert summary["status"] == "interrupted"
    assert node_statuses(summary) == {
        "first": "completed",
        "block": "interrupted",
        "after": "not run",
    }
    shown = cli(project, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert table_statuses(shown.stdout) == {
        "first": "completed",
        "block": "interrupted",
        "after": "not run",
    }
    assert f"step block interrupted: interrupted by {sig.name}" in shown.stdout
    listing = json.loads(cli(project, "runs", "--json").stdout)
    assert listing[0]["status"] == "interrupted"
    assert cli(project, "audit", "verify").returncode == 0


def test_json_output_on_interrupt_is_the_summary(project: Path) -> None:
    args = ["-p", f"gate={project / 'gate'}"]
    proc = subprocess.Popen(
        [*PIPETRAIL, "run", "gated.py", "--json", *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(project / "gate" / "ready")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["status"] == "interrupted"
    assert [n["node_id"] for n in summary["not_run"]] == ["after"]
    assert len(err.splitlines()) == 1


def test_a_second_ctrl_c_exits_at_once(project: Path) -> None:
    proc = start(project, "stubborn=true")
    proc.send_signal(signal.SIGINT)
    wait_for(project / "gate" / "caught")  # the step swallowed the first one
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)

    assert time.monotonic() - began < 5
    assert proc.returncode == 130
    assert "SIGINT again: exiting now" in err
    # Nothing recorded the end: the run shows as crashed, its step too.
    summary = latest(project)
    assert summary["status"] == "crashed"
    assert node_statuses(summary) == {"first": "completed", "block": "crashed", "after": "not run"}


def test_a_signal_before_the_run_is_recorded_records_nothing(project: Path) -> None:
    proc = start(project, "hold=true")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert out == ""

    assert proc.returncode == 130
    assert err.splitlines() == [
        "error: interrupted by SIGINT before the run was recorded; nothing was recorded"
    ]
    assert json.loads(cli(project, "runs", "--json").stdout) == []


def test_a_killed_run_shows_its_step_as_crashed(project: Path) -> None:
    proc = start(project)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    summary = latest(project)
    assert summary["status"] == "crashed"
    assert node_statuses(summary) == {"first": "completed", "block": "crashed", "after": "not run"}
    shown = cli(project, "show", "latest").stdout
    assert table_statuses(shown) == {"first": "completed", "block": "crashed", "after": "not run"}
    # The next run records the crash; the record then says the same as the reader did.
    (project / "gate" / "release").write_text("1")
    again = cli(project, "run", "gated.py", "-q", "-p", f"gate={project / 'gate'}")
    assert again.returncode == 0, again.stderr
    crashed = json.loads(cli(project, "show", summary["run_id"], "--json").stdout)
    assert node_statuses(crashed) == node_statuses(summary)
    assert cli(project, "audit", "verify").returncode == 0


# -- reproduce and check handle signals as run does ------------------------------------


def _completed_run(root: Path, *params: str) -> str:
    """A completed run of the gated pipeline; the gate is then closed again."""
    gate = root / "gate"
    (gate / "release").write_text("1")
    args = ["-p", f"gate={gate}"]
    for param in params:
        args += ["-p", param]
    done = cli(root, "run", "gated.py", "-q", "--json", *args)
    assert done.returncode == 0, done.stderr
    for name in ("ready", "release"):
        (gate / name).unlink()
    run_id: str = json.loads(done.stdout)["run_id"]
    return run_id


def start_command(root: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*PIPETRAIL, *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    wait_for(root / "gate" / "ready")
    return proc


def _reproduce(root: Path, *params: str) -> subprocess.Popen[str]:
    """Reproduce a completed run made with ``params``; returns once its step blocks."""
    return start_command(root, "reproduce", _completed_run(root, *params), "-q")


def _check(root: Path, *params: str) -> subprocess.Popen[str]:
    args = ["check", "gated.py", "-q", "-p", f"gate={root / 'gate'}"]
    for param in params:
        args += ["-p", param]
    return start_command(root, *args)


@pytest.mark.parametrize("command", ["reproduce", "check"])
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"]
)
def test_reproduce_and_check_end_an_interrupted_run_with_one_line(
    project: Path, command: str, sig: signal.Signals, code: int
) -> None:
    proc = _reproduce(project) if command == "reproduce" else _check(project)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == code, err
    assert out == ""
    assert "Aborted" not in err
    assert "Traceback" not in err
    summary = latest(project)
    run_id = summary["run_id"]
    assert err.splitlines() == [
        f"run {run_id} interrupted by {sig.name}: 1 completed, 1 interrupted, 1 not run; "
        f"details: pipetrail show {run_id}"
    ]
    assert summary["status"] == "interrupted"
    assert node_statuses(summary) == {
        "first": "completed",
        "block": "interrupted",
        "after": "not run",
    }
    assert cli(project, "audit", "verify").returncode == 0


def test_a_second_ctrl_c_ends_a_reproduction_at_once(project: Path) -> None:
    proc = _reproduce(project, "stubborn=true")  # the reproduction gets the same params
    proc.send_signal(signal.SIGINT)
    wait_for(project / "gate" / "caught")
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)

    assert time.monotonic() - began < 5
    assert proc.returncode == 130
    assert "SIGINT again: exiting now" in err
    assert "Aborted" not in err
    assert latest(project)["status"] == "crashed"


def test_a_signal_before_the_check_records_a_run_is_one_line(project: Path) -> None:
    proc = _check(project, "hold=true")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130
    assert out == ""
    assert err.splitlines() == [
        "error: interrupted by SIGINT; the check did not finish and wrote no report; run it again"
    ]
    assert json.loads(cli(project, "runs", "--json").stdout) == []
