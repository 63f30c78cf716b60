"""Alerts from the command line: a failing run and a failing gate reach a local receiver."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_cli import cli
from tests.support.receiver import Receiver, receiving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pipetrail import pipeline, step

@step
def total(n: int) -> dict[str, float]:
    if n < 0:
        raise ValueError("n must not be negative")
    return {"sum": float(n)}

@pipeline
def tally(n: int = 3):
    return total(n)
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiving()


@pytest.fixture
def project(tmp_path: Path, receiver: Receiver) -> Path:
    (tmp_path / "pipetrail.toml").write_text(
        "[pipetrail]\n\n[alerts]\nbackoff = 0.01\n\n"
        f'[[alerts.rules]]\nname = "ops"\non = ["run.failed", "gate.failed"]\n'
        f'webhook = "{receiver.url}/ops"\n'
    )
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    return tmp_path


def test_a_failing_run_alerts_and_exits_as_before(project: Path, receiver: Receiver) -> None:
    ok = cli(project, "run", "pipeline.py", "-q")
    assert ok.returncode == 0, ok.stderr
    failed = cli(project, "run", "pipeline.py", "-p", "n=-1", "-q")
    assert failed.returncode == 1, failed.stderr
    [post] = receiver.posts
    assert post["json"]["event"] == "run.failed"
    assert "n must not be negative" in post["json"]["details"]["error"]
    assert "Traceback" not in failed.stderr.split("n must not be negative")[0]


def test_a_failing_gate_alerts(project: Path, receiver: Receiver) -> None:
    base = json.loads(cli(project, "run", "pipeline.py", "--json", check=True).stdout)["run_id"]
    gate = cli(project, "check", "-p", "n=4", "--baseline", base, "-q")
    assert gate.returncode == 5, gate.stderr
    events = [p["json"]["event"] for p in receiver.posts]
    assert events == ["gate.failed"]
    summary = receiver.posts[0]["json"]["summary"]
    assert summary.startswith("pipetrail check of pipeline tally failed (run ")
    assert f"does not match baseline {base}" in summary


def test_an_unreachable_webhook_leaves_the_exit_code_alone(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text(
        "[pipetrail]\n\n[alerts]\nretries = 1\nbackoff = 0.01\n\n"
        '[[alerts.rules]]\nname = "ops"\non = ["run.failed"]\n'
        'webhook = "http://127.0.0.1:9/ops"\n'
    )
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    failed = cli(tmp_path, "run", "pipeline.py", "-p", "n=-1", "-q")
    assert failed.returncode == 1
    assert "n must not be negative" in failed.stderr


def test_a_malformed_alerts_table_is_one_message(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text(
        '[pipetrail]\n\n[[alerts.rules]]\nname = "ops"\non = ["run.exploded"]\n'
        'webhook = "http://127.0.0.1:9/ops"\n'
    )
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    bad = cli(tmp_path, "run", "pipeline.py", "-q")
    assert bad.returncode == 2
    assert "'alerts.rules[1].on[1]' must be one of 'run.failed'" in bad.stderr
    assert "got 'run.exploded'; fix the file" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / ".pipetrail" / "ledger.db").exists()
