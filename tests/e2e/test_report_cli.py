"""``pipetrail report`` in a subprocess: Markdown, a self-contained page, JSON, bad input."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_cli import cli

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pipetrail import pipeline, step

@step
def fit(rate: float) -> dict[str, float]:
    if rate < 0:
        raise ValueError("rate must be positive")
    return {"loss": 1.0 - rate}

@pipeline
def trainer(rate: float = 0.5):
    return fit(rate)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Four runs of one pipeline, shared by the module's tests (reports only read them)."""
    tmp_path = tmp_path_factory.mktemp("report")
    (tmp_path / "pipetrail.toml").write_text("[pipetrail]\n")
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    ids = []
    for rate in ("0.5", "0.75", "-1", "0.75"):
        done = cli(tmp_path, "run", "pipeline.py", "-p", f"rate={rate}", "--json", "-q")
        ids.append(json.loads(done.stdout)["run_id"])
    return tmp_path, ids


def test_report_as_markdown_html_and_json(project: tuple[Path, list[str]]) -> None:
    root, ids = project
    text = cli(root, "report", "trainer", check=True).stdout
    assert text.startswith("# pipetrail report: trainer")
    assert "| fit.loss | 0.5 | 0.25 | - | 0.25 |" in text
    assert f"| fit: ValueError | 1 | {ids[2]} |" in text
    assert "| cache-hit rate | 0% | 0% | 0% | 100% |" in text
    done = cli(root, "report", "trainer", "-o", "out/report.html", check=True)
    assert done.stdout.strip() == "report of 4 run(s) of trainer written to out/report.html"
    page = (root / "out" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "<svg" in page
    cli(root, "report", "trainer", "-o", "report.md", check=True)
    assert (root / "report.md").read_text() == text
    data = json.loads(cli(root, "report", "trainer", "--json", check=True).stdout)
    assert [m["value"] for m in data["metrics"]["fit.loss"]] == [0.5, 0.25, 0.25]
    assert data["failures"] == [{"cause": "fit: ValueError", "count": 1, "runs": [ids[2]]}]


def test_report_bad_input_is_one_message(project: tuple[Path, list[str]]) -> None:
    root, _ = project
    unknown = cli(root, "report", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: no run of pipeline 'nope' is recorded")
    date = cli(root, "report", "trainer", "--since", "last week")
    assert date.returncode == 2
    assert "since='last week' is not a date or time" in date.stderr
    suffix = cli(root, "report", "trainer", "-o", "report.pdf")
    assert suffix.returncode == 2
    assert "cannot tell the format of report.pdf: name it .html" in suffix.stderr
    (root / "taken").write_text("a file")
    blocked = cli(root, "report", "trainer", "-o", "taken/report.html")
    assert blocked.returncode == 2
    assert blocked.stderr.startswith("error: cannot write taken/report.html")
    assert "Traceback" not in unknown.stderr + date.stderr + suffix.stderr + blocked.stderr
    later = cli(root, "report", "trainer", "--since", "2999-01-01")
    assert later.returncode == 2
    assert "no run of pipeline 'trainer' since 2999-01-01 is recorded" in later.stderr
