"""Step logs stored as structured lines, with their ids, in real runs and on a worker."""

from __future__ import annotations

import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture.log_context import StepTrace, step_span_id, trace_id_for
from pipetrail.execution.explain import run_summary
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.execution.task import StepTask, execute_task
from pipetrail.lineage.readout import step_log, step_logs

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

TALK = """
import logging

from pipetrail import pipeline, step

@step
def first(n: int) -> int:
    print(f"first got {n}")
    logging.getLogger("talk").warning("halfway", extra={"n": n})
    return n + 1

@step
def second(m: int) -> int:
    print("second ran")
    return m * 2

@pipeline
def talk(n: int = 1):
    return second(first(n))
"""


@pytest.fixture
def talk(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> Callable[..., str]:
    name = unique("talk")

    def run(**params: Any) -> str:
        return run_pipeline(files.load(name, TALK), params, project, RunOptions()).id

    return run


def test_each_line_carries_the_run_step_and_trace_ids(
    project: Project, talk: Callable[..., str]
) -> None:
    run_id = talk()
    summary = run_summary(project.reader(), run_id)
    assert summary["trace_id"] == trace_id_for(run_id)
    logs = {log.node_id: log for log in step_logs(project.reader(), project.store, run_id, None)}
    step_runs = {s["node_id"]: s["step_run_id"] for s in summary["steps"]}
    for node in ("first", "second"):
        assert logs[node].lines, node
        for line in logs[node].lines:
            assert line["run_id"] == run_id
            assert line["step"] == node
            assert line["step_run_id"] == step_runs[node]
            assert line["trace_id"] == trace_id_for(run_id)
            assert line["span_id"] == step_span_id(step_runs[node])
    warning = logs["first"].lines[1]
    assert (warning["level"], warning["logger"], warning["event"], warning["n"]) == (
        "warning",
        "talk",
        "halfway",
        1,
    )
    assert logs["first"].text.startswith("[stdout] first got 1\n[log] ")
    assert logs["first"].text.endswith(" WARNING talk: halfway n=1\n")


def test_a_cache_hit_shows_the_lines_of_the_step_run_it_reused(
    project: Project, talk: Callable[..., str]
) -> None:
    first_run = talk()
    again = talk()
    original = step_logs(project.reader(), project.store, first_run, "first")[0]
    cached = step_logs(project.reader(), project.store, again, "first")[0]
    assert cached.reused_step_run_id == original.step_run_id
    assert cached.lines == original.lines  # written by that step run, in that run
    assert cached.lines[0]["run_id"] == first_run


def test_a_log_stored_as_text_before_gets_the_ids_of_its_record(
    project: Project, talk: Callable[..., str]
) -> None:
    run_id = talk()
    reader = project.reader()
    row = dict(reader.find_step_run(run_id, "first"))
    row["logs"] = project.store.put_bytes(
        b"[stdout] old\n[log] 2024-05-01 12:00:00,123 WARNING talk: older\n"
    )
    found = step_log(reader, project.store, row)
    assert found.text == "[stdout] old\n[log] 2024-05-01 12:00:00,123 WARNING talk: older\n"
    assert [line["event"] for line in found.lines] == ["old", "older"]
    for line in found.lines:
        assert line["run_id"] == run_id
        assert line["step_run_id"] == row["step_run_id"]
        assert line["span_id"] == step_span_id(row["step_run_id"])


# -- on a worker process ---------------------------------------------------------------
def _speak() -> int:
    from opentelemetry import trace

    span = trace.get_current_span().get_span_context()
    print(f"worker otel {span.trace_id:032x} {span.span_id:016x}")
    logging.getLogger("worker").warning("from the worker")
    return 7


def _execute_on_worker(root: str, trace: StepTrace) -> str:
    from pipetrail.execution.project import Project

    project = Project.at(Path(root))
    try:
        task = StepTask("speak", "speak", _speak, {}, ("output",), seed=1, trace=trace)
        result = execute_task(task, project.store, project.registry)
        assert result.error is None, result.traceback
        return result.logs
    finally:
        project.close()


def test_a_worker_process_logs_and_traces_inside_the_runs_trace(project: Project) -> None:
    trace = StepTrace("01RUNONAWORKER", "speak", "01STEPRUNONAWORKER", otel=True)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        stored = pool.submit(_execute_on_worker, str(project.root), trace).result(timeout=120)
    lines = [json.loads(line) for line in stored.splitlines()]
    span = step_span_id("01STEPRUNONAWORKER")
    assert lines[0]["event"] == f"worker otel {trace_id_for('01RUNONAWORKER')} {span}"
    assert lines[1]["event"] == "from the worker"
    for line in lines:
        assert (line["run_id"], line["step"], line["span_id"]) == (
            "01RUNONAWORKER",
            "speak",
            span,
        )
