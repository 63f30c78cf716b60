"""``pipetrail report``'s figures against the runs recorded (SQLite, real runs)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import NotFoundError, ParamError, StepFailedError
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.observability.report_data import collect_report
from pipetrail.observability.report_render import report_html, report_markdown, sparkline
from pipetrail.verify.check import run_check
from tests.integration.test_drift import sales_run

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration
__all__ = ["sales_run"]

SCORED = """
from pipetrail import pipeline, step

@step
def prepare(n: int) -> int:
    if n < 0:
        raise ValueError("n must not be negative")
    return n

@step
def score(n: int, factor: float) -> dict[str, float]:
    return {"score": n * factor, "rows": 10.0}

@pipeline
def scored(n: int = 1, factor: float = 1.0):
    return score(prepare(n), factor)
"""


def _runs(project: Project, files: PipelineFiles) -> list[str]:
    definition = files.load("scored_pipeline", SCORED)
    ids = []
    for params in ({"factor": 1.0}, {"factor": 2.0}, {"n": -1}, {"factor": 2.0}):
        try:
            ids.append(run_pipeline(definition, params, project, RunOptions()).id)
        except StepFailedError as exc:
            ids.append(exc.run_id)
    return ids


def test_trends_failures_and_cache_hits_are_those_recorded(
    project: Project, files: PipelineFiles
) -> None:
    first, second, failed, cached = _runs(project, files)
    report = collect_report(project, "scored")
    assert [r["run_id"] for r in report.runs] == [first, second, failed, cached]
    assert [r["status"] for r in report.runs] == ["completed", "completed", "failed", "completed"]
    assert report.metrics["score.score"] == [
        {"run_id": first, "value": 1.0},
        {"run_id": second, "value": 2.0},
        {"run_id": cached, "value": 2.0},
    ]
    assert [(c["run_id"], c["cached"], c["steps"]) for c in report.cache_hit_rate] == [
        (first, 0, 2), (second, 1, 2), (failed, 0, 1), (cached, 2, 2),
    ]  # fmt: skip
    assert report.failures == [{"cause": "prepare: ValueError", "runs": [failed], "count": 1}]
    reader = project.reader()
    for node in ("prepare", "score"):
        recorded = {
            run_id: [s for s in reader.step_runs(run_id) if s["node_id"] == node]
            for run_id in (first, second, failed, cached)
        }
        expected = [
            (run_id, step["status"], (step["resources"] or {}).get("wall_ns"))
            for run_id, steps in recorded.items()
            for step in steps
        ]
        points = [(p.run_id, p.status, p.seconds) for p in report.steps[node]]
        assert [(r, s) for r, s, _ in points] == [(r, s) for r, s, _ in expected]
        for (_, status, seconds), (_, _, wall) in zip(points, expected, strict=True):
            if status == "cached":
                assert seconds is None
            else:
                assert seconds == pytest.approx(wall / 1e9, abs=1e-6)
    assert report.drift == []
    assert report.gates == []
    started = report.runs[2]["started_at"]
    later = collect_report(project, "scored", since=started)
    assert [r["run_id"] for r in later.runs] == [failed, cached]


def test_the_page_is_self_contained_and_shows_the_figures(
    project: Project, files: PipelineFiles
) -> None:
    failed = _runs(project, files)[2]
    report = collect_report(project, "scored")
    page = report_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|<img|src=|@import|url\(", page)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count("<svg") == 2 + 1 + 1 + 1  # 2 metrics, durations, cache hits, failures
    assert "<title>score.score #2: 2</title>" in page
    assert "prepare: ValueError" in page
    text = report_markdown(report)
    assert "| score.score | 1 | 2 | - | 2 |" in text
    assert f"| prepare: ValueError | 1 | {failed} |" in text
    assert "| cache-hit rate | 0% | 50% | 0% | 100% |" in text
    assert "| runs | 4 (4 ordinary, 0 by check or reproduce) |" in text
    assert sparkline([1.0, None, 2.0]) == "▁ █"


def test_drift_between_runs_and_gate_results_are_listed(
    project: Project, files: PipelineFiles, sales_run: Callable[..., str]
) -> None:
    first = sales_run(project)
    second = sales_run(project, shift=30.0)
    definition = files.load(files.loaded[-1])
    check = run_check(project, definition, {}, baseline=first)
    assert not check.passed
    report = collect_report(project, "sales")
    runs_drift = [d for d in report.drift if d["source"] == "runs"]
    assert runs_drift == [
        {"run_id": second, "against": [first], "source": "runs",
         "origins": [{"step": "load_sales", "output": "output", "columns": ["amount"]}]},
    ]  # fmt: skip
    [gate] = report.gates
    assert (gate["run_id"], gate["passed"], gate["baseline_run_id"]) == (
        check.run_id, False, first,
    )  # fmt: skip
    assert gate["failures"] == check.failures
    [from_check] = [d for d in report.drift if d["source"] == "check"]
    assert from_check["run_id"] == check.run_id
    assert from_check["origins"][0]["step"] == "load_sales"
    purposes = {r["run_id"]: r["purpose"] for r in report.runs}
    assert purposes[check.run_id] == "check"
    assert "| check | load_sales (amount) |" in report_markdown(report)


def test_an_unknown_pipeline_or_date_is_one_message(project: Project, files: PipelineFiles) -> None:
    _runs(project, files)
    with pytest.raises(NotFoundError, match=r"no run of pipeline 'nope' is recorded; .*scored"):
        collect_report(project, "nope")
    with pytest.raises(ParamError, match=r"since='yesterday' is not a date or time"):
        collect_report(project, "scored", since="yesterday")
