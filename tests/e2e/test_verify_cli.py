"""``pipetrail reproduce`` and ``pipetrail check`` in a subprocess: exit codes and reports."""

from __future__ import annotations

import json
import subprocess
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

Completed = subprocess.CompletedProcess[str]

# With NOISY set in the environment, `jitter` draws from the OS (unseeded).
PIPELINE = """
import os, random
from pathlib import Path
from pipetrail import log_metric, pipeline, source, step

@step
def read(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()]

@step
def jitter(xs: list[float]) -> list[float]:
    extra = int.from_bytes(os.urandom(2)) / 1e7 if os.environ.get("NOISY") else 0.0
    return [x + random.random() / 100 + extra for x in xs]

@step
def score(xs: list[float]) -> dict[str, float]:
    log_metric("eval/sum", sum(xs))
    return {"mean": sum(xs) / len(xs)}

@pipeline
def noisy(scale: int = 1):
    return score(jitter(read(source("data/nums.txt", by_reference=True))))
"""


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> Completed:
    changes: dict[str, str | None] = {"GITHUB_STEP_SUMMARY": None, "NOISY": None, "COLUMNS": "80"}
    return cli_inline(root, *args, env={**changes, **(env or {})})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    (root / "data" / "nums.txt").write_text("1 2 3\n")
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    return root


def test_reproduce_exit_codes(project: Path) -> None:
    first = _cli(project, "run", "pipeline.py", "--json")
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    same = _cli(project, "reproduce", run_id, "--json")
    assert same.returncode == 0, same.stderr
    report = json.loads(same.stdout)
    assert report["verdict"] == "reproduced"
    assert report["identical_share"] == 1.0
    noisy = _cli(project, "reproduce", run_id, "--json", env={"NOISY": "1"})
    assert noisy.returncode == 5, noisy.stderr
    report = json.loads(noisy.stdout)
    assert report["verdict"] == "not reproduced"
    assert [f["node_id"] for f in report["first_differences"]] == ["jitter"]
    # Metrics within a loose tolerance, differing artifacts allowed: exit 0.
    loose = _cli(
        project, "reproduce", run_id, "--tolerance", "*=0.1", "--allow-artifact-differences",
        "--markdown", "repro.md", env={"NOISY": "1"},
    )  # fmt: skip
    assert loose.returncode == 0, loose.stdout + loose.stderr
    assert "reproduced within tolerance" in loose.stdout
    assert "| score.mean |" in (project / "repro.md").read_text()
    # The by-reference source changed: cannot reproduce (6), and nothing is recorded.
    (project / "data" / "nums.txt").write_text("4 5 6\n")
    changed = _cli(project, "reproduce", run_id)
    assert changed.returncode == 6
    assert "cannot reproduce" in changed.stderr
    assert "source 'data/nums.txt' changed" in changed.stderr
    assert _cli(project, "reproduce", "nope").returncode == 2
    bad = _cli(project, "reproduce", run_id, "--tolerance", "x=oops")
    assert bad.returncode == 2
    assert "not a number" in bad.stderr


def test_check_passes_writes_reports_and_fails_when_not_reproducible(
    project: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    ok = _cli(project, "check", "--seeds", "2", "--json", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["passed"] is True
    assert report["reproduction"]["verdict"] == "reproduced"
    assert len(report["seed_runs"]) == 2
    spread = {s["name"]: s for s in report["spread"]}
    assert len(spread["score.mean"]["values"]) == 3
    assert spread["score.mean"]["stdev"] > 0  # other seeds, other draws
    written = project / ".pipetrail" / "reports" / f"check-{report['run_id']}.md"
    assert "## pipetrail check: PASSED" in written.read_text()
    assert "## pipetrail check: PASSED" in summary.read_text()
    # Against itself as a baseline: passes; an unseeded step makes the gate fail.
    base = _cli(project, "check", "pipeline.py", "--baseline", report["run_id"], "--json")
    assert base.returncode == 0, base.stderr
    assert json.loads(base.stdout)["baseline"]["verdict"] == "reproduced"
    failing = _cli(project, "check", "--report-dir", str(tmp_path / "r"), env={"NOISY": "1"})
    assert failing.returncode == 5
    assert "## pipetrail check: FAILED" in failing.stdout
    assert "first at step(s) jitter" in failing.stdout
    assert list((tmp_path / "r").glob("check-*.json"))


def test_check_without_a_pipeline_file(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text("[pipetrail]\n")
    result = _cli(tmp_path, "check")
    assert result.returncode == 2
    assert "pipeline.py does not exist" in result.stderr


CONTRACTED = """
from pathlib import Path
from pydantic import BaseModel
from pipetrail import Contract, pipeline, source, step

class Summary(BaseModel):
    total: float
    count: int

@step(contracts={"output": Contract(None, rows=(2, None))})
def read(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()]

@step(contracts={"output": Summary})
def summarize(xs: list[float], factor: float = 1.0) -> dict[str, float]:
    return {"total": sum(xs) * factor, "count": len(xs)}

@pipeline
def contracted(factor: float = 1.0):
    return summarize(read(source("data/nums.txt")), factor=factor)
"""


def test_check_reports_contracts_and_reads_params_files(project: Path) -> None:
    (project / "pipeline.py").write_text(textwrap.dedent(CONTRACTED))
    (project / "params.yaml").write_text("factor: 2.5\n")
    ok = _cli(project, "check", "-c", "params.yaml", "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["params"] == {"factor": 2.5}
    assert report["contracts"]["failed"] == 0
    assert report["contracts"]["checks"] >= 3  # row count, two fields
    # One number: the row-count contract of `read` fails and the gate with it.
    (project / "data" / "nums.txt").write_text("7\n")
    failed = _cli(project, "check")
    assert failed.returncode == 5
    assert "## pipetrail check: FAILED" in failed.stdout
    assert "Failed contract checks" in failed.stdout
    assert "| read |" in failed.stdout
    bad = _cli(project, "check", "-c", "missing.yaml")
    assert bad.returncode == 2
    assert _cli(project, "check", "--seed", "nope").returncode == 2
    assert _cli(project, "check", "--seed", str(2**32)).returncode == 2
