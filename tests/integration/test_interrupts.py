"""Runs that do not complete close their steps: SIGINT, SIGTERM, kill -9, failed inputs.

Real child processes receive real signals while a step is blocked on a gate file, so the
test knows the run is mid-step. Each backend (SQLite, PostgreSQL) is checked, and every
record is checked again after rebuilding the projections from the events.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import StepFailedError
from pipetrail.execution.crash import effective_status, reconcile_crashed_runs
from pipetrail.execution.explain import run_summary
from pipetrail.execution.outcome import run_outcome
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventKind
from tests.integration.conftest import statuses
from tests.support.killing import kill_when

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

# `block` writes GATE/ready and waits for GATE/release; `after` and `last` come after it.
GATED = """
import time
from pathlib import Path
from pipetrail import pipeline, step

@step
def first() -> int:
    return 1

@step(cache=False)
def block(x: int, gate: str) -> int:
    folder = Path(gate)
    (folder / "ready").write_text("1")
    while not (folder / "release").exists():
        time.sleep(0.01)
    return x + 1

@step
def after(x: int) -> int:
    return x * 2

@step
def last(x: int) -> int:
    return x + 3

@pipeline
def gated(gate: str):
    return last(after(block(first(), gate=gate)))
"""

# Runs the pipeline in a child process; "guard" installs the CLI's signal handling.
CHILD = """
import contextlib
import sys
from pathlib import Path
from pipetrail.execution.loader import load_pipeline
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline

definition, _ = load_pipeline(sys.argv[1])
project = Project.at(Path(sys.argv[2]))
print("started", flush=True)
guard = contextlib.nullcontext()
if sys.argv[4] == "guard":
    from pipetrail.execution.interrupts import handling_interrupts

    guard = handling_interrupts()
with guard:
    try:
        run_pipeline(definition, {"gate": sys.argv[3]}, project, RunOptions())
    except KeyboardInterrupt as exc:
        run_id, name = getattr(exc, "run_id", None), getattr(exc, "signal_name", None)
        print(f"interrupted {run_id} {name}", flush=True)
        sys.exit(3)
print("completed", flush=True)
"""

ROW_QUERIES = (
    "SELECT * FROM runs ORDER BY run_id",
    "SELECT * FROM step_runs ORDER BY step_run_id",
)


def _setup(project_root: Path, metadata_url: str, name: str) -> tuple[Path, Path, Path]:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    pipeline_file = project_root / f"{name}.py"
    pipeline_file.write_text(textwrap.dedent(GATED))
    child = project_root / "child.py"
    child.write_text(CHILD)
    gate = project_root / "gate"
    gate.mkdir()
    return pipeline_file, child, gate


def _start(child: Path, pipeline_file: Path, root: Path, gate: Path, mode: str) -> Any:
    proc = subprocess.Popen(
        [sys.executable, str(child), str(pipeline_file), str(root), str(gate), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    _wait_for(gate / "ready")
    return proc


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.005)


def _rows(project: Project) -> list[list[dict[str, Any]]]:
    reader = project.reader()
    return [reader.fetch(query) for query in ROW_QUERIES]


def _closing_event(project: Project, run_id: str) -> dict[str, Any]:
    events = [e for e in project.ledger.iter_events() if e.run_id == run_id]
    return events[-1].payload | {"kind": events[-1].kind}


def _assert_rebuild_gives_the_same_rows(project: Project) -> None:
    before = _rows(project)
    project.ledger.rebuild_projections()
    assert _rows(project) == before
    assert project.ledger.verify().ok


def _node_statuses(summary: dict[str, Any]) -> dict[str, str]:
    found = {s["node_id"]: s["status"] for s in summary["steps"]}
    found.update({n["node_id"]: "not run" for n in summary.get("not_run", [])})
    return found


@pytest.mark.parametrize(
    ("sig", "mode"),
    [(signal.SIGINT, "plain"), (signal.SIGINT, "guard"), (signal.SIGTERM, "guard")],
    ids=["sigint", "sigint-guarded", "sigterm-guarded"],
)
def test_a_signal_mid_step_ends_the_run_as_interrupted(
    metadata_url: str,
    project_root: Path,
    unique: Callable[[str], str],
    sig: signal.Signals,
    mode: str,
) -> None:
    pipeline_file, child, gate = _setup(project_root, metadata_url, unique("gated"))
    proc = _start(child, pipeline_file, project_root, gate, mode)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    _, run_id, signal_name = out.split()
    assert signal_name == sig.name

    project = Project.at(project_root)
    try:
        run = project.reader().get_run(run_id)
        assert run["status"] == "interrupted"
        assert run["error"] == f"interrupted by {sig.name}"
        summary = run_summary(project.reader(), run_id)
        assert _node_statuses(summary) == {
            "first": "completed",
            "block": "interrupted",
            "after": "not run",
            "last": "not run",
        }
        interrupted = next(s for s in summary["steps"] if s["node_id"] == "block")
        assert interrupted["ended_at"] is not None
        closing = _closing_event(project, run_id)
        assert closing["kind"] == EventKind.RUN_INTERRUPTED
        assert closing["signal"] == sig.name
        assert list(closing["closed_steps"].values()) == ["interrupted"]
        assert closing["not_run"] == ["after", "last"]
        _assert_rebuild_gives_the_same_rows(project)
        # The interrupted step was never a result: the next run executes it again.
        (gate / "release").write_text("1")
        again = run_pipeline(_load(pipeline_file), {"gate": str(gate)}, project, RunOptions())
        assert statuses(again) == {
            "first": "cached",
            "block": "completed",
            "after": "completed",
            "last": "completed",
        }
    finally:
        project.close()


def _load(pipeline_file: Path) -> Any:
    from pipetrail.execution.loader import load_pipeline

    return load_pipeline(str(pipeline_file))[0]


def test_a_killed_run_closes_its_steps_as_crashed(
    metadata_url: str, project_root: Path, unique: Callable[[str], str]
) -> None:
    pipeline_file, child, gate = _setup(project_root, metadata_url, unique("gated"))
    code = kill_when(
        child.read_text(),
        [str(pipeline_file), str(project_root), str(gate), "plain"],
        (gate / "ready").exists,
    )
    assert code == -signal.SIGKILL

    project = Project.at(project_root)
    try:
        (run,) = project.reader().list_runs()
        assert run["status"] == "running"
        # Readers see the crash before any writer records it: the run and its step.
        assert effective_status(run) == "crashed"
        summary = run_summary(project.reader(), run["run_id"])
        outcome = run_outcome(project.reader(), run["run_id"])
        assert outcome["status"] == summary["status"] == "crashed"
        assert [s["status"] for s in outcome["steps"]] == [s["status"] for s in summary["steps"]]
        assert _node_statuses(summary) == {
            "first": "completed",
            "block": "crashed",
            "after": "not run",
            "last": "not run",
        }
        # The next writer records it: run.crashed closes the step in the projection too.
        assert reconcile_crashed_runs(project.ledger) == [run["run_id"]]
        steps = {s["node_id"]: s for s in project.reader().step_runs(run["run_id"])}
        assert steps["block"]["status"] == "crashed"
        assert steps["block"]["ended_at"] is not None
        assert "ended without recording an outcome" in steps["block"]["error"]
        assert "running" not in {s["status"] for s in steps.values()}
        closing = _closing_event(project, run["run_id"])
        assert closing["kind"] == EventKind.RUN_CRASHED
        assert closing["not_run"] == ["after", "last"]
        assert _node_statuses(run_summary(project.reader(), run["run_id"])) == _node_statuses(
            summary
        )
        assert reconcile_crashed_runs(project.ledger) == []
        _assert_rebuild_gives_the_same_rows(project)
    finally:
        project.close()


FRAGILE = """
from pipetrail import pipeline, step

class Fragile:
    def __init__(self, n: int) -> None:
        self.n = n

    def __setstate__(self, state: dict) -> None:
        raise RuntimeError("this value cannot be loaded back")

@step(allow_pickle=True)
def make() -> Fragile:
    return Fragile(1)

@step
def use(f: Fragile, k: int) -> int:
    return f.n + k

@step
def final(x: int) -> int:
    return x

@pipeline
def fragile(k: int = 0):
    return final(use(make(), k=k))
"""


def test_a_run_whose_input_cannot_be_loaded_closes_the_step(
    metadata_url: str,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    project = Project.at(project_root)
    try:
        definition = files.load(unique("fragile"), FRAGILE)
        # The first run may keep make's value in memory; the second must load it back.
        with contextlib.suppress(Exception):
            run_pipeline(definition, {"k": 0}, project, RunOptions())
        with pytest.raises(Exception, match="cannot be loaded back"):
            run_pipeline(definition, {"k": 1}, project, RunOptions())
        (latest,) = project.reader().list_runs(limit=1)
        assert latest["status"] == "failed"
        assert "cannot be loaded back" in latest["error"]
        summary = run_summary(project.reader(), latest["run_id"])
        assert _node_statuses(summary) == {"make": "cached", "use": "failed", "final": "not run"}
        rows = {s["node_id"]: s for s in project.reader().step_runs(latest["run_id"])}
        assert rows["use"]["status"] == "failed"
        assert "cannot be loaded back" in rows["use"]["error"]
        closing = _closing_event(project, latest["run_id"])
        assert closing["kind"] == EventKind.RUN_FAILED
        assert closing["not_run"] == ["final"]
        _assert_rebuild_gives_the_same_rows(project)
    finally:
        project.close()


def test_a_failed_step_lists_the_steps_that_never_ran(
    metadata_url: str,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
) -> None:
    source = """
    from pipetrail import pipeline, step

    @step
    def ok() -> int:
        return 1

    @step
    def broken(x: int) -> int:
        raise ValueError("no")

    @step
    def later(x: int) -> int:
        return x

    @step
    def side() -> int:
        return 2

    @pipeline
    def chain():
        return later(broken(ok())), side()
    """
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    project = Project.at(project_root)
    try:
        definition = files.load(unique("chain"), source)
        with pytest.raises(StepFailedError, match="no"):
            run_pipeline(definition, {}, project, RunOptions())
        (latest,) = project.reader().list_runs(limit=1)
        summary = run_summary(project.reader(), latest["run_id"])
        assert _node_statuses(summary) == {
            "ok": "completed",
            "broken": "failed",
            "later": "not run",
            "side": "not run",
        }
        assert [n["step"] for n in summary["not_run"]] == ["later", "side"]
        # Nothing was left running, so nothing is closed; the nodes are still listed.
        closing = _closing_event(project, latest["run_id"])
        assert closing["closed_steps"] == {}
        assert closing["not_run"] == ["later", "side"]
        assert json.loads(json.dumps(summary, default=str))["not_run"][0]["node_id"] == "later"
    finally:
        project.close()


def test_a_closing_event_only_closes_running_steps_of_its_own_run(
    metadata_url: str, project_root: Path
) -> None:
    from pipetrail.ledger import EventDraft

    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    project = Project.at(project_root)

    def started(run_id: str) -> EventDraft:
        payload = {
            "run_id": run_id, "pipeline": "p", "pipeline_fingerprint": "blake3:" + "0" * 64,
            "owner": "o", "host": "h", "process": "1:1", "params": {}, "seed": 0,
            "started_at": "2024-01-01T00:00:00Z", "steps_total": 2,
        }  # fmt: skip
        return EventDraft(EventKind.RUN_STARTED, payload, run_id=run_id)

    def step(kind: EventKind, run_id: str, step_run_id: str, node: str) -> EventDraft:
        payload = {
            "step_run_id": step_run_id, "run_id": run_id, "node_id": node, "step": node,
            "pipeline": "p", "started_at": "2024-01-01T00:00:01Z",
            "ended_at": "2024-01-01T00:00:02Z",
        }  # fmt: skip
        return EventDraft(kind, payload, run_id=run_id)

    try:
        project.ledger.append(
            [
                started("run-a"),
                started("run-b"),
                step(EventKind.STEP_STARTED, "run-a", "sr-done", "one"),
                step(EventKind.STEP_COMPLETED, "run-a", "sr-done", "one"),
                step(EventKind.STEP_STARTED, "run-a", "sr-open", "two"),
                step(EventKind.STEP_STARTED, "run-b", "sr-other", "one"),
                EventDraft(
                    EventKind.RUN_FAILED,
                    {
                        "run_id": "run-a",
                        "ended_at": "2024-01-01T00:00:03Z",
                        "error": "boom",
                        # sr-done finished and sr-other belongs to run-b: both untouched.
                        "closed_steps": {
                            "sr-done": "failed",
                            "sr-open": "failed",
                            "sr-other": "failed",
                        },
                        "not_run": [],
                    },
                    run_id="run-a",
                ),
            ]
        )
        rows = {r["step_run_id"]: r for r in project.reader().fetch("SELECT * FROM step_runs")}
        assert {k: r["status"] for k, r in rows.items()} == {
            "sr-done": "completed",
            "sr-open": "failed",
            "sr-other": "running",
        }
        assert rows["sr-open"]["error"] == "boom"
        assert rows["sr-open"]["ended_at"] == "2024-01-01T00:00:03Z"
        _assert_rebuild_gives_the_same_rows(project)
    finally:
        project.close()
