"""Spans started by step code on a worker join the run's trace, exported end to end.

The step runs on a worker of a real Dask ``LocalCluster`` (and on a pool worker of the
processes executor); its code starts a span with a tracer provider of its own, exporting
over OTLP/HTTP to the local receiver the test started. The coordinator exports the run's
and steps' spans. Both reach the receiver in one trace: the worker's span is a child of
its step's span, whose id the worker never received but derived from the step run.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture.log_context import step_span_id, trace_id_for
from pipetrail.execution.executors.dask_cluster import DaskExecutor
from pipetrail.execution.executors.processes import ProcessExecutor
from pipetrail.execution.explain import run_summary
from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles
    from tests.support.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_otel_environment")]

WORKER_SPANS = """
import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from pipetrail import pipeline, step


@step(cache=False)
def load(n: int) -> list[int]:
    return list(range(n))


@step(cache=False)
def fit(xs: list[int], endpoint: str) -> int:
    provider = TracerProvider(resource=Resource.create({"service.name": "worker-code"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("user-code")
    with tracer.start_as_current_span("inner fit") as span:
        span.set_attribute("worker.pid", os.getpid())
        total = sum(xs)
    provider.shutdown()
    return total


@pipeline
def worker_spans(endpoint: str, n: int = 5):
    return fit(load(n), endpoint)
"""


@pytest.mark.parametrize("executor", ["dask", "processes"])
def test_spans_started_on_workers_join_the_runs_trace(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    otlp_collector: OtlpReceiver,
    unique: Callable[[str], str],
    executor: str,
) -> None:
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\n\n[telemetry]\notlp_endpoint = "{otlp_collector.endpoint}"\n'
    )
    definition = files.load(unique("worker_spans"), WORKER_SPANS)
    chosen: Any = DaskExecutor(workers=2) if executor == "dask" else ProcessExecutor(workers=2)
    run = run_pipeline(
        definition,
        {"endpoint": otlp_collector.endpoint + "/v1/traces"},
        project,
        RunOptions(executor=chosen),
    )
    trace = trace_id_for(run.id)
    spans = {s["name"]: s for s in otlp_collector.spans if s["trace_id"] == trace}
    assert set(spans) == {"run worker_spans", "step load", "step fit", "inner fit"}
    steps = {s["node_id"]: s for s in run_summary(project.reader(), run.id)["steps"]}
    fit = spans["step fit"]
    assert fit["span_id"] == step_span_id(steps["fit"]["step_run_id"])
    inner = spans["inner fit"]
    assert inner["parent_span_id"] == fit["span_id"]
    assert inner["resource"]["service.name"] == "worker-code"
    # It ran on the worker that the step event names, not in the coordinator.
    completed = next(
        json.loads(e.payload_text)
        for e in project.ledger.iter_events()
        if e.run_id == run.id and e.kind == "step.completed" and '"node_id":"fit"' in e.payload_text
    )
    assert inner["attributes"]["worker.pid"] == completed["worker"]["pid"] != os.getpid()
    assert fit["attributes"]["pipetrail.resources.wall_ns"] > 0
