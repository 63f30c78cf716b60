"""Bad input across contracts, params, parity, reproduce and check: refused, nothing recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.cli.progress import _PlainObserver
from pipetrail.config import load_config
from pipetrail.errors import (
    NotFoundError,
    NotReproducibleError,
    ParamError,
    ProjectError,
    StepFailedError,
)
from pipetrail.execution.explain import run_summary
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.verify import reproduce_run
from pipetrail.verify.check import run_check

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPE = """
from pipetrail import log_metric, pipeline, step

@step
def make(n: int) -> list[int]:
    return list(range(n))

@step
def score(xs: list[int]) -> float:
    log_metric("total", float(sum(xs)))
    return float(sum(xs))

@pipeline
def {name}(n: int = 3):
    return score(make(n))
"""


def _state(project: Project) -> tuple[int, set[str]]:
    return project.reader().event_count(), set(project.store.iter_digests())


@pytest.fixture
def make_pipeline(files: PipelineFiles, unique: Callable[[str], str]) -> Callable[[str], Any]:
    def load(name: str) -> Any:
        return files.load(unique("mod"), PIPE.format(name=name))

    return load


def test_reproducing_a_run_with_another_pipeline_is_refused(
    project: Project, make_pipeline: Callable[[str], Any]
) -> None:
    original = run_pipeline(make_pipeline("first"), {}, project).id
    other = make_pipeline("second")
    before = _state(project)
    with pytest.raises(
        NotReproducibleError, match=r"of pipeline 'first' with pipeline 'second'.*:first\)"
    ):
        reproduce_run(project, original, definition=other)
    assert _state(project) == before


def test_a_reproduction_shows_the_run_it_reproduces(
    project: Project, make_pipeline: Callable[[str], Any]
) -> None:
    definition = make_pipeline("shown")
    original = run_pipeline(definition, {}, project).id
    again = reproduce_run(project, original, definition=definition)
    assert run_summary(project.reader(), again.run_id)["reproduces"] == original
    assert run_summary(project.reader(), original)["reproduces"] is None


@pytest.mark.parametrize("seeds", [-1, 1001, True, 2.0])
def test_check_refuses_seeds_out_of_range_before_running(
    project: Project, make_pipeline: Callable[[str], Any], seeds: Any
) -> None:
    definition = make_pipeline("gated")
    before = _state(project)
    with pytest.raises(ParamError, match=r"seeds= .* from 0 to 1000; got"):
        run_check(project, definition, {}, seeds=seeds)
    assert _state(project) == before


def test_check_refuses_a_baseline_of_another_pipeline_or_a_failed_run(
    project: Project, files: PipelineFiles, make_pipeline: Callable[[str], Any]
) -> None:
    definition = make_pipeline("gated")
    other = run_pipeline(make_pipeline("elsewhere"), {}, project).id
    broken = files.load("broken_mod", PIPE.format(name="gated").replace("list(range(n))", "1 / 0"))
    with pytest.raises(StepFailedError, match="ZeroDivisionError"):
        run_pipeline(broken, {}, project)
    failed = project.reader().resolve_run("latest")
    before = _state(project)
    with pytest.raises(ParamError, match=rf"baseline run {other} is of pipeline 'elsewhere'"):
        run_check(project, definition, {}, baseline=other)
    with pytest.raises(ParamError, match=rf"baseline run {failed} is failed; a baseline must"):
        run_check(project, definition, {}, baseline=failed)
    assert _state(project) == before


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        (
            "seed = 1.5",
            None,
            r"pipetrail\.toml: 'pipetrail\.seed' must be a whole number .* got 1\.5",
        ),
        ("seed = true", None, r"'pipetrail\.seed' must be a whole number .* got True"),
        (
            "seed = 3",
            "-5",
            r"^PIPETRAIL_SEED must be a whole number from 0 to 4294967295, got '-5'",
        ),
        ("seed = 3", "1.5", r"^PIPETRAIL_SEED must be a whole number .* got '1\.5'"),
    ],
)
def test_a_project_seed_that_is_not_a_whole_number_in_range_is_refused(
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    toml: str,
    env: str | None,
    message: str,
) -> None:
    (project_root / "pipetrail.toml").write_text(f"[pipetrail]\n{toml}\n")
    if env is None:
        monkeypatch.delenv("PIPETRAIL_SEED", raising=False)
    else:
        monkeypatch.setenv("PIPETRAIL_SEED", env)
    with pytest.raises(ProjectError, match=message):
        load_config(project_root)


def test_an_unknown_parity_reference_names_the_setting(
    project: Project, make_pipeline: Callable[[str], Any]
) -> None:
    definition = make_pipeline("parity")
    run_pipeline(definition, {}, project)
    before = _state(project)
    options = RunOptions(parity="warn", parity_reference="nosuchrun")
    with pytest.raises(NotFoundError, match=r"parity reference run 'nosuchrun' cannot be used"):
        run_pipeline(definition, {}, project, options)
    assert _state(project) == before


def test_the_plain_progress_counts_each_run_of_a_check_afresh(
    capsys: pytest.CaptureFixture[str],
) -> None:
    observer = _PlainObserver()
    for run_id in ("A", "B"):
        observer.run_started(run_id=run_id, pipeline="p", steps_total=2)
        observer.step_finished(node_id="one", status="completed", seconds=0.0)
        observer.step_finished(node_id="two", status="cached", seconds=0.0)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("]")[0].strip() for line in lines if "[" in line] == [
        "[1/2",
        "[2/2",
        "[1/2",
        "[2/2",
    ]
