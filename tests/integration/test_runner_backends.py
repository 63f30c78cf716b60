"""The same pipeline on each metadata backend: SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from pipetrail.config import load_config
from pipetrail.execution.explain import explain_step, list_runs
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from tests.integration.conftest import PipelineFiles, statuses
from tests.integration.test_runner import CHAIN

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_runs_cache_and_verify_on_each_backend(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    project = Project.at(project_root)
    try:
        chain = files.load(unique("chain"), CHAIN)
        first = run_pipeline(chain, {"n": 4}, project, RunOptions())
        assert first.outputs == 12
        second = run_pipeline(chain, {"n": 4}, project, RunOptions())
        assert set(statuses(second).values()) == {"cached"}
        third = run_pipeline(chain, {"n": 4, "offset": 1}, project, RunOptions())
        assert statuses(third)["total"] == "completed"
        reader = project.reader()
        assert [r["run_id"] for r in list_runs(reader)] == [third.id, second.id, first.id]
        why = explain_step(reader, third.id[:12], "total")
        assert why["changed"] == ["params"]
        assert project.ledger.verify().ok
    finally:
        project.close()


RUNNER = """
import sys
from pathlib import Path
from pipetrail.execution.loader import load_pipeline
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline

definition, _ = load_pipeline(sys.argv[1])
project = Project.at(Path(sys.argv[2]))
run = run_pipeline(definition, {"n": int(sys.argv[3])}, project, RunOptions())
print(run.id)
"""


def test_concurrent_runs_in_two_processes(
    metadata_url: str, project_root: Path, unique: Callable[[str], str]
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    name = unique("chain")
    (project_root / f"{name}.py").write_text(textwrap.dedent(CHAIN))
    (project_root / "runner.py").write_text(RUNNER)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(project_root / "runner.py"),
                str(project_root / f"{name}.py"),
                str(project_root),
                str(n),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (30, 31)
    ]
    run_ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        run_ids.append(out.strip())
    project = Project(load_config(root=project_root))
    try:
        rows = {r["run_id"]: r for r in list_runs(project.reader())}
        assert set(run_ids) <= set(rows)
        assert {rows[r]["status"] for r in run_ids} == {"completed"}
        report = project.ledger.verify()
        assert report.ok, report
        assert json.loads(json.dumps(report.checked)) > 10
    finally:
        project.close()
