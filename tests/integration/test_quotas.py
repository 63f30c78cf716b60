"""Quotas: refused before the step starts, recorded as the run's failure; SQLite and PostgreSQL.

CPU-hours are summed from what the ledger records; concurrent steps are counted in the
ledger (another process's run) and in this process (its own runs).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import ProjectError, QuotaExceededError
from pipetrail.execution.executors.processes import ProcessExecutor
from pipetrail.execution.project import Project
from pipetrail.execution.quotas import QuotaLimits, parse_quotas, user_name
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.execution.sweep import run_sweep

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

BURN = """
import time
from pathlib import Path

from pipetrail import pipeline, step


@step(cache=False)
def burn(n: int) -> int:
    end = time.process_time() + 0.05
    while time.process_time() < end:
        n += 1
    return n


@step(cache=False)
def wait(n: int, gate: str) -> int:
    Path(gate, "started").write_text("yes")
    deadline = time.monotonic() + 60
    while not Path(gate, "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


@step(cache=False)
def burn_more(n: int) -> int:
    return burn.func(n)


@step(cache=False)
def bump(n: int) -> int:
    return n + 1


@pipeline
def bumps(n: int = 0):
    x = bump(n)
    for _ in range(29):
        x = bump(x)
    return x


@pipeline
def burner(n: int = 1):
    return burn(n)


@pipeline
def burn_twice(n: int = 1):
    return burn_more(burn(n))


@pipeline
def waiter(n: int = 1, gate: str = "."):
    return wait(n, gate)
"""


def _project(root: Path, metadata_url: str, quotas: str) -> Project:
    (root / "pipetrail.toml").write_text(
        f'[pipetrail]\nmetadata = "{metadata_url}"\n\n' + textwrap.dedent(quotas)
    )
    return Project.at(root)


@pytest.fixture
def burner(files: PipelineFiles, unique: Callable[[str], str]) -> Any:
    return files.load(unique("burner"), BURN, target="burner")


def _events(project: Project, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.kind, json.loads(e.payload_text))
        for e in project.ledger.iter_events()
        if e.run_id == run_id
    ]


def test_cpu_hours_per_day_refuse_the_step_before_it_starts(
    metadata_url: str, project_root: Path, burner: Any
) -> None:
    project = _project(project_root, metadata_url, "[quotas.user]\ncpu_hours_per_day = 1e-9\n")
    try:
        first = run_pipeline(burner, {"n": 1}, project, RunOptions(cache=False))
        assert first.status == "completed"  # nothing was used yet today
        with pytest.raises(QuotaExceededError) as caught:
            run_pipeline(burner, {"n": 2}, project, RunOptions(cache=False))
        message = str(caught.value)
        user = user_name(project.reader().get_run(first.id)["owner"])
        for words in (
            "step 'burn' refused",
            f"user {user}'s quota of CPU-hours per day (1e-09) is used up",
            "[quotas.user]",
        ):
            assert words in message
        run_id = caught.value.run_id
        assert run_id is not None
        assert run_id != first.id
        run = project.reader().get_run(run_id)
        assert run["status"] == "failed"
        assert run["error"] == message
        kinds = [kind for kind, _ in _events(project, run_id)]
        assert "step.started" not in kinds  # refused before it started
        assert kinds[-1] == "run.failed"
    finally:
        project.close()
    # From the command line: one line, and the exit code of a refusal.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipetrail.cli.main",
            "run",
            f"{inspect.getfile(burner.func)}:burner",
        ],
        cwd=project_root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 7, done.stderr
    assert "error: step 'burn' refused" in done.stderr
    assert "Traceback" not in done.stderr


def test_deleting_a_run_gives_back_no_cpu_hours(
    metadata_url: str, project_root: Path, burner: Any
) -> None:
    """The CPU a deleted run used was used: it counts, in the first read and the next."""
    from pipetrail.execution.deletion import delete_runs

    project = _project(project_root, metadata_url, "[quotas.user]\ncpu_hours_per_day = 1e-9\n")
    try:
        first = run_pipeline(burner, {"n": 1}, project, RunOptions(cache=False))
        delete_runs(project, [first.id], reason="retention: exploration_runs")
        with pytest.raises(QuotaExceededError, match="quota of CPU-hours per day"):
            run_pipeline(burner, {"n": 2}, project, RunOptions(cache=False))
    finally:
        project.close()


def test_the_cpu_of_a_step_that_just_ended_counts_before_its_end_is_appended(
    metadata_url: str, project_root: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    # The first step's end is still queued when the second asks (fast steps' events are
    # batched): the check counts it all the same.
    project = _project(project_root, metadata_url, "[quotas]\ncpu_hours_per_day = 1e-9\n")
    twice = files.load(unique("burn_twice"), BURN, target="burn_twice")
    try:
        with pytest.raises(QuotaExceededError, match=r"step 'burn_more' refused: the project's"):
            run_pipeline(twice, {"n": 1}, project, RunOptions(cache=False))
        run = project.reader().list_runs(limit=1)[0]
        assert run["status"] == "failed"
        steps = [(k, p["node_id"]) for k, p in _events(project, run["run_id"]) if "step" in k]
        assert steps == [("step.started", "burn"), ("step.completed", "burn")]
    finally:
        project.close()


def _starts_ending_their_append(project: Project, run_id: str) -> list[bool]:
    """For each step.started of the run: whether it is the last event of its append."""
    events = list(project.ledger.iter_events())
    found = []
    for at, event in enumerate(events):
        if event.run_id == run_id and event.kind == "step.started":
            after = events[at + 1] if at + 1 < len(events) else None
            found.append(after is None or after.ts != event.ts)  # one append, one ts
    return found


@pytest.mark.parametrize(
    ("quotas", "checked"),
    [
        ("[quotas]\nconcurrent_steps = 64\n", True),
        ("[quotas.user]\ncpu_hours_per_day = 1000\n", True),
        ("[quotas.users.someone-else]\nconcurrent_steps = 1\n", False),
        ("", False),
    ],
)
def test_a_quota_that_applies_costs_a_transaction_per_step_and_no_other_does(
    project_root: Path,
    files: PipelineFiles,
    unique: Callable[[str], str],
    quotas: str,
    checked: bool,
) -> None:
    (project_root / "pipetrail.toml").write_text(quotas)
    bumps = files.load(unique("bumps"), BURN, target="bumps")
    project = Project.at(project_root)
    try:
        run = run_pipeline(bumps, {"n": 0}, project, RunOptions(cache=False))
        assert run.status == "completed"
        alone = _starts_ending_their_append(project, run.id)
    finally:
        project.close()
    assert len(alone) == 30
    if checked:  # each start is committed by its own check-and-admit transaction
        assert all(alone)
    else:  # fast steps' starts go with other events, as without quotas (ADR 0017)
        assert not all(alone)


def test_a_sweep_refuses_each_remaining_point(
    metadata_url: str, project_root: Path, burner: Any
) -> None:
    project = _project(project_root, metadata_url, "[quotas]\ncpu_hours_per_day = 1e-9\n")
    try:
        result = run_sweep(burner, {"n": [1, 2, 3]}, project, RunOptions(cache=False))
        assert [r.status for r in result.runs] == ["completed", "failed", "failed"]
        for row in result.runs[1:]:
            assert "project's quota of CPU-hours per day" in (row.error or "")
            assert row.run_id is not None
            assert project.reader().get_run(row.run_id)["status"] == "failed"
    finally:
        project.close()


RUNNER = """
import sys
from pathlib import Path

from pipetrail.execution.loader import load_pipeline
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline

definition, _ = load_pipeline(sys.argv[1] + ":waiter")
project = Project.at(Path(sys.argv[2]))
print(run_pipeline(definition, {"gate": sys.argv[3]}, project, RunOptions(cache=False)).id)
"""


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_concurrent_steps_of_another_process_count(
    metadata_url: str, project_root: Path, files: PipelineFiles, tmp_path: Path
) -> None:
    project = _project(project_root, metadata_url, "[quotas]\nconcurrent_steps = 1\n")
    module = files.write("quota_waiter", BURN)
    (project_root / "runner.py").write_text(textwrap.dedent(RUNNER))
    gate = tmp_path / "gate"
    gate.mkdir()
    other = subprocess.Popen(
        [
            sys.executable,
            str(project_root / "runner.py"),
            str(module),
            str(project_root),
            str(gate),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        _wait_for(gate / "started")
        burner = files.load("quota_waiter", target="burner")
        with pytest.raises(QuotaExceededError, match=r"project's quota of concurrent steps \(1\)"):
            run_pipeline(burner, {"n": 1}, project, RunOptions(cache=False))
    finally:
        (gate / "release").write_text("go")
        _, err = other.communicate(timeout=120)
        project.close()
    assert other.returncode == 0, err
    # Once the other run has ended, the quota is free again.
    project = Project.at(project_root)
    try:
        assert run_pipeline(burner, {"n": 1}, project, RunOptions(cache=False)).status == (
            "completed"
        )
    finally:
        project.close()


def test_concurrent_steps_of_this_process_count(
    project_root: Path, files: PipelineFiles, tmp_path: Path
) -> None:
    (project_root / "pipetrail.toml").write_text("[quotas.user]\nconcurrent_steps = 1\n")
    waiter = files.load("quota_waiter2", BURN, target="waiter")
    burner = files.load("quota_waiter2", target="burner")
    gate = tmp_path / "gate"
    gate.mkdir()
    outcome: list[Any] = []

    def hold() -> None:
        own = Project.at(project_root)
        try:
            outcome.append(run_pipeline(waiter, {"gate": str(gate)}, own, RunOptions()).status)
        except BaseException as exc:  # noqa: BLE001 - shown by the assertion below
            outcome.append(exc)
        finally:
            own.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        _wait_for(gate / "started")
        project = Project.at(project_root)
        with pytest.raises(
            QuotaExceededError, match=r"quota of concurrent steps \(1\) is used up \(1 executing"
        ):
            run_pipeline(burner, {"n": 5}, project, RunOptions(cache=False))
        project.close()
    finally:
        (gate / "release").write_text("go")
        thread.join(timeout=120)
    assert outcome == ["completed"]


SPANS = """
import inspect
import json
import time
from pathlib import Path

from pipetrail import pipeline, step


def _span(folder: str, name: str) -> str:
    start = time.time()
    time.sleep(0.3)
    Path(folder, name).write_text(json.dumps([start, time.time()]))
    return name


@step(cache=False)
def left(folder: str) -> str:
    return _span(folder, "left")


@step(cache=False)
def right(folder: str) -> str:
    return _span(folder, "right")


@pipeline
def both(folder: str):
    return left(folder), right(folder)
"""


def test_a_runs_own_steps_wait_for_each_other(
    project_root: Path, files: PipelineFiles, tmp_path: Path
) -> None:
    (project_root / "pipetrail.toml").write_text("[quotas]\nconcurrent_steps = 1\n")
    definition = files.load("quota_spans", SPANS)
    folder = tmp_path / "spans"
    folder.mkdir()
    project = Project.at(project_root)
    try:
        run = run_pipeline(
            definition,
            {"folder": str(folder)},
            project,
            RunOptions(executor=ProcessExecutor(workers=2)),
        )
    finally:
        project.close()
    assert run.status == "completed"
    (_, a_end), (b_start, _) = sorted(json.loads(p.read_text()) for p in folder.iterdir())
    assert b_start >= a_end - 0.01  # one after the other, though two workers were free


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"concurrent": 2}, "unknown key 'quotas.concurrent'"),
        ({"concurrent_steps": 0}, "'quotas.concurrent_steps' must be a whole number"),
        ({"user": {"cpu_hours_per_day": "lots"}}, "'quotas.user.cpu_hours_per_day' must be"),
        ({"users": {"alice": {"steps": 1}}}, "unknown key 'quotas.users.alice.steps'"),
        ({"user": 3}, "'quotas.user' must be a table"),
    ],
)
def test_bad_quota_tables_are_refused(tmp_path: Path, table: Any, words: str) -> None:
    with pytest.raises(ProjectError, match=words.replace("(", r"\(").replace(".", r"\.")):
        parse_quotas(tmp_path / "pipetrail.toml", table)


def test_a_user_table_replaces_the_default_one(tmp_path: Path) -> None:
    settings = parse_quotas(
        tmp_path / "pipetrail.toml",
        {
            "concurrent_steps": 8,
            "user": {"concurrent_steps": 2},
            "users": {"alice": {"cpu_hours_per_day": 100}},
        },
    )
    assert settings.project == QuotaLimits(concurrent_steps=8)
    assert settings.for_user("bob") == QuotaLimits(concurrent_steps=2)
    assert settings.for_user("alice") == QuotaLimits(cpu_hours_per_day=100)
    assert user_name("alice@host-1") == "alice"


@pytest.fixture(autouse=True)
def _no_leftover_runs() -> Iterator[None]:
    from pipetrail.execution import quotas

    yield
    assert not quotas._IN_FLIGHT  # every run's count is dropped when it ends
