"""What steps asked for, through the CLI in a subprocess: ``show`` (text and JSON) puts
each step's ``resource_requests`` beside what it used, and ``verify`` agrees with it."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

pytestmark = pytest.mark.e2e


PIPELINE = """
from pipetrail import pipeline, step

@step(resources={"cpu": 2, "memory": "512MiB"})
def load(n: int) -> list:
    return list(range(n))

@step(resources={"cpu": 0.5, "gpu": 1})
def fit(rows: list) -> int:
    return sum(rows)

@step
def report(total: int) -> str:
    return f"total {total}"

@pipeline
def asks(n: int = 5):
    return report(fit(load(n)))
"""

PLAIN = """
from pipetrail import pipeline, step

@step
def only(n: int) -> int:
    return n + 1

@pipeline
def plain(n: int = 1):
    return only(n)
"""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_inline(cwd, *args, env={"COLUMNS": "220"})


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    root = tmp_path / "sample"
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "asks.py").write_text(textwrap.dedent(PIPELINE))
    (root / "plain.py").write_text(textwrap.dedent(PLAIN))
    return root


def _run(root: Path, file: str) -> str:
    done = cli(root, "run", file, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return str(data["run_id"])


def test_show_puts_what_each_step_asked_for_beside_what_it_used(sample: Path) -> None:
    run_id = _run(sample, "asks.py")

    shown = cli(sample, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    steps = {s["node_id"]: s for s in json.loads(shown.stdout)["steps"]}
    assert steps["load"]["resource_requests"] == {"cpu": 2, "memory": 512 * 2**20}
    assert steps["fit"]["resource_requests"] == {"cpu": 0.5, "gpu": 1}
    assert steps["report"]["resource_requests"] == {}  # asked for nothing
    assert steps["load"]["resources"]["wall_ns"] > 0  # what it used is still there

    text = cli(sample, "show", run_id)
    assert text.returncode == 0, text.stderr
    header = next(line for line in text.stdout.splitlines() if "requested" in line)
    assert header.index("requested") < header.index("resources")
    cells = {
        cols[0]: cols
        for line in text.stdout.splitlines()
        if len(cols := [c.strip() for c in line.split("│")]) == 8
    }
    assert cells["load"][5] == "cpu 2 mem 512MiB"
    assert cells["fit"][5] == "cpu 0.5 gpu 1"
    assert cells["report"][5] == "-"
    assert cells["load"][6].startswith("0.")  # the resources used, beside

    # The derived table's new column is what replaying the events gives.
    verified = cli(sample, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "derived rows match them" in verified.stdout


def test_a_run_whose_steps_ask_for_nothing_has_no_requested_column(sample: Path) -> None:
    run_id = _run(sample, "plain.py")
    text = cli(sample, "show", run_id)
    assert text.returncode == 0, text.stderr
    assert "requested" not in text.stdout
    assert "resources" in text.stdout
