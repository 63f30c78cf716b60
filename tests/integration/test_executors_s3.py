"""The S3 store (a real SeaweedFS server) on the processes and dask executors.

Workers open the bucket themselves, with the endpoint and credentials of their own
environment, write the step's outputs there and send back digests: every artifact, log,
metric and report digest is the one the inline executor records for the same run.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture.log_lines import render_text
from pipetrail.execution.executors.dask_cluster import DaskExecutor
from pipetrail.execution.executors.processes import ProcessExecutor
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.store.s3 import S3Store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles
    from tests.support.seaweedfs import SeaweedServer

pytestmark = pytest.mark.integration

PIPELINE = """
import logging

from pipetrail import attach_report, log_metric, pipeline, step


@step
def make(n: int) -> list[int]:
    print("making", n)
    logging.getLogger("s3-run").warning("made %d", n)
    return list(range(n))


@step
def blob(xs: list[int]) -> bytes:
    # Large enough to be a file of its own, not a small object.
    return bytes(x % 251 for x in range(len(xs) * 40_000))


@step
def measure(xs: list[int]) -> dict:
    for i, x in enumerate(xs):
        log_metric("value", float(x), step=i)
    attach_report("summary", {"count": len(xs)})
    return {"total": float(sum(xs))}


@pipeline
def s3_run(n: int = 12):
    xs = make(n)
    return blob(xs), measure(xs)
"""

# What differs between runs whatever executes them. The captured log's bytes hold the
# run's ids and the lines' times: its text is compared without them instead. ``seeded``
# lists the generators already imported where the step ran (a Dask worker has NumPy).
_VOLATILE = {
    "step_run_id",
    "run_id",
    "started_at",
    "ended_at",
    "resources",
    "worker",
    "logs",
    "seeded",
}
_LOG_TIME = re.compile(r"^\[log\] \S+ \S+ ", re.MULTILINE)


def _recorded(project: Project, run_id: str) -> dict[str, dict[str, Any]]:
    """node id -> its closing step event, without what differs between any two runs."""
    found = {}
    for event in project.ledger.iter_events():
        if event.run_id == run_id and event.kind in ("step.completed", "step.failed"):
            payload = json.loads(event.payload_text)
            metrics = {
                name: {k: v for k, v in m.items() if k != "timestamps"}
                for name, m in payload.get("metrics", {}).items()
            }
            kept = {k: v for k, v in payload.items() if k not in _VOLATILE and k != "metrics"}
            logs = payload.get("logs")
            text = None if logs is None else render_text(project.store.get_bytes(logs))
            found[payload["node_id"]] = {
                **kept,
                "metrics": metrics,
                "kind": event.kind,
                "log_text": None if text is None else _LOG_TIME.sub("[log] ", text),
            }
    return found


def test_s3_digests_on_processes_and_dask_equal_inline(
    seaweed: SeaweedServer,
    s3_url: str,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    env = seaweed.env()
    for name, value in env.items():  # the workers started below inherit them
        monkeypatch.setenv(name, value)
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nstore = "{s3_url}"\n')
    project = Project.at(project_root)
    try:
        assert type(project.store).__name__ == "S3Store"
        definition = files.load(unique("s3_run"), PIPELINE)
        executors = {
            "inline": None,
            "processes": ProcessExecutor(workers=2),
            "dask": DaskExecutor(workers=2),
        }
        found = {}
        for name, executor in executors.items():
            run = run_pipeline(definition, {}, project, RunOptions(cache=False, executor=executor))
            found[name] = _recorded(project, run.id)
        inline = found["inline"]
        assert set(inline) == {"make", "blob", "measure"}
        assert all(event["kind"] == "step.completed" for event in inline.values())
        assert "[stdout] making 12" in (inline["make"]["log_text"] or "")
        for name in ("processes", "dask"):
            for node in inline:
                assert found[name][node] == inline[node], (name, node)
        # Every object the runs recorded is in the bucket, and reads back verified.
        probe = S3Store(
            s3_url,
            cache_dir=tmp_path / "probe",
            endpoint=env["AWS_ENDPOINT_URL"],
            access_key_id=env["AWS_ACCESS_KEY_ID"],
            secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        in_bucket = set(probe.iter_digests())
        for event in inline.values():
            for digest in event["outputs"].values():
                blob = project.reader().artifact(digest)["blob"]
                assert blob in in_bucket
                assert probe.get_bytes(blob)
    finally:
        project.close()
