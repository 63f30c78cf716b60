"""Diffing and comparing real runs: params, code, data, metrics and the verdict (SQLite)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from pipetrail.cli.diff_cmd import compare, diff
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.lineage.compare import compare_runs
from pipetrail.lineage.diff import diff_runs

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

# fit's output (the model) descends from split, which also produces evaluate's `test`:
# `model` is what is evaluated, `test` is the evaluation data.
TOY = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def load(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]

@step(outputs=("train", "test"))
def split(xs: list[int]) -> tuple[list[int], list[int]]:
    return xs[::2], xs[1::2]

@step
def fit(train: list[int], scale: float = 1.0) -> float:
    return scale * sum(train) / len(train)

@step
def evaluate(model: float, test: list[int]) -> dict[str, float]:
    error = sum(abs(x - model) for x in test) / len(test)
    return {"mae": error, "n": len(test), "ok": True}

@pipeline
def toy(scale: float = 1.0):
    train, test = split(load(source("data/nums.txt")))
    return evaluate(fit(train, scale=scale), test)
"""

OTHER = """
from pipetrail import pipeline, step

@step
def score(k: int) -> dict[str, float]:
    return {"mae": k / 10}

@pipeline
def other(k: int = 3):
    return score(k)
"""


@pytest.fixture
def toy(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Callable[..., str]:
    """Run the toy pipeline (optionally edited) and return the run id."""
    (project_root / "data").mkdir()
    (project_root / "data" / "nums.txt").write_text("1 2 3 4 5 6 7 8 9 10\n")
    name = unique("toy")

    def run(project: Project, source: str = TOY, *, seed: int | None = None, **params: Any) -> str:
        definition = files.load(name, source)
        return run_pipeline(definition, params, project, RunOptions(seed=seed)).id

    return run


def test_param_change_is_comparable_with_param_diff_and_metric_deltas(
    project: Project, toy: Callable[..., str]
) -> None:
    first = toy(project)
    second = toy(project, scale=1.5)
    result = diff_runs(project, first, second)
    assert result.verdict.comparable, result.verdict.reasons
    assert result.params.changed["scale"].a == 1.0
    assert result.params.changed["scale"].b == 1.5
    metrics = {m.name: m for m in result.metrics}
    assert set(metrics) == {"evaluate.mae", "evaluate.n"}  # booleans are not metrics
    assert metrics["evaluate.mae"].a == pytest.approx(2.6)
    assert metrics["evaluate.mae"].b == pytest.approx(2.7)
    assert metrics["evaluate.mae"].delta == pytest.approx(0.1)
    assert metrics["evaluate.n"].delta == 0
    steps = {s.node_id: s for s in result.steps}
    assert set(steps) == {"fit", "evaluate"}
    assert steps["fit"].changed == ["params"]
    assert set(steps["evaluate"].inputs.changed) == {"model"}
    assert result.verdict.evaluation_inputs == {"evaluate": ["test"]}
    assert result.sources.empty
    assert result.environment.same
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"]["verdict"] == "comparable"
    assert data["params"]["changed"] == {"scale": {"a": 1.0, "b": 1.5}}


def test_code_change_in_the_metric_step_is_a_different_metric_definition(
    project: Project, toy: Callable[..., str]
) -> None:
    first = toy(project)
    second = toy(project, TOY.replace("abs(x - model)", "(x - model) ** 2"))
    result = diff_runs(project, first, second)
    assert not result.verdict.comparable
    assert [r.code for r in result.verdict.reasons] == ["different_metric_definition"]
    assert result.verdict.reasons[0].step == "evaluate"
    (evaluate,) = result.steps
    assert evaluate.changed == ["code"]
    assert evaluate.code is not None
    assert evaluate.code.digest_a != evaluate.code.digest_b
    diff_text = evaluate.code.source_diff or ""
    assert "-    error = sum(abs(x - model) for x in test) / len(test)\n" in diff_text
    assert "+    error = sum((x - model) ** 2 for x in test) / len(test)\n" in diff_text
    assert any(line.startswith("~ ") and "evaluate" in line for line in evaluate.code.parts)


def test_reverting_code_finds_the_source_text_recorded_by_an_earlier_run(
    project: Project, toy: Callable[..., str]
) -> None:
    first = toy(project)
    second = toy(project, TOY.replace("abs(x - model)", "(x - model) ** 2"))
    # The original text was recorded by `first` only; this run records no code artifact.
    third = toy(project)
    code = diff_runs(project, second, third).steps[0].code
    assert code is not None
    assert "+    error = sum(abs(x - model) for x in test) / len(test)\n" in (
        code.source_diff or ""
    )
    assert diff_runs(project, first, third).verdict.comparable


def test_changed_source_file_is_different_evaluation_data(
    project: Project, project_root: Path, toy: Callable[..., str]
) -> None:
    first = toy(project)
    (project_root / "data" / "nums.txt").write_text("1 2 3 4 5 6 7 8 9 12\n")
    second = toy(project)
    result = diff_runs(project, first, second)
    assert not result.verdict.comparable
    (reason,) = result.verdict.reasons
    assert reason.code == "different_evaluation_data"
    assert "test" in reason.message
    assert "model" not in reason.message  # the model is what is compared
    assert set(result.sources.changed) == {"data/nums.txt"}
    assert not result.params.changed


def test_runs_of_different_pipelines_are_not_comparable(
    project: Project, files: PipelineFiles, toy: Callable[..., str], unique: Callable[[str], str]
) -> None:
    first = toy(project)
    other = run_pipeline(files.load(unique("other"), OTHER), {}, project, RunOptions()).id
    result = diff_runs(project, first, other)
    assert "different_pipeline" in [r.code for r in result.verdict.reasons]
    assert {s.node_id: (s.status_a, s.status_b) for s in result.steps}["score"] == (
        None,
        "completed",
    )


def test_compare_three_runs_judges_each_against_the_first(
    project: Project, toy: Callable[..., str]
) -> None:
    base = toy(project)
    tuned = toy(project, scale=1.5)
    redefined = toy(project, TOY.replace("abs(x - model)", "(x - model) ** 2"), scale=2.0)
    result = compare_runs(project, [base, tuned[:20], redefined])
    assert result.baseline == base
    assert result.param_names == ("scale",)
    assert result.metric_names == ("evaluate.mae", "evaluate.n")
    rows = result.to_dict()["runs"]
    assert [r["run_id"] for r in rows] == [base, tuned, redefined]
    assert [r["verdict"] for r in rows] == ["baseline", "comparable", "not comparable"]
    assert [r["params"]["scale"] for r in rows] == [1.0, 1.5, 2.0]
    assert rows[1]["deltas"]["evaluate.mae"] == pytest.approx(0.1)
    assert rows[2]["reasons"][0]["code"] == "different_metric_definition"


LOGGING = """
from pipetrail import log_metric, pipeline, step

@step
def make(n: int) -> list[int]:
    return list(range(n))

@step
def train(xs: list[int], lr: float = 0.1) -> float:
    weight = 0.0
    for _ in xs[:3]:
        weight += lr
        log_metric("train/loss", 1.0 - weight)
    return weight

@pipeline
def logging_pipeline(lr: float = 0.1):
    return train(make(5), lr=lr)
"""


def test_logged_metrics_are_compared_by_their_last_value_also_from_cache_hits(
    project: Project, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("logging"), LOGGING)
    first, second, cached = (
        run_pipeline(definition, {"lr": lr}, project, RunOptions()).id for lr in (0.1, 0.2, 0.2)
    )
    result = diff_runs(project, first, second)
    (loss,) = result.metrics
    assert loss.name == "train.train/loss"
    assert (loss.a, loss.b, loss.delta) == pytest.approx((0.7, 0.4, -0.3))
    assert result.verdict.comparable
    assert result.verdict.evaluation_inputs == {"train": ["xs"]}
    again = diff_runs(project, second, cached)
    assert [(m.a, m.b) for m in again.metrics] == [pytest.approx((0.4, 0.4))]
    assert again.steps == []


@pytest.mark.postgres
def test_diff_and_compare_on_each_backend(
    metadata_url: str, project_root: Path, toy: Callable[..., str]
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    project = Project.at(project_root)
    try:
        first = toy(project)
        second = toy(project, TOY.replace("abs(x - model)", "(x - model) ** 2"))
        third = toy(project)
        result = diff_runs(project, first, second)
        assert [r.code for r in result.verdict.reasons] == ["different_metric_definition"]
        code = result.steps[0].code
        assert code is not None
        assert "(x - model) ** 2" in (code.source_diff or "")
        table = compare_runs(project, [first, second, third]).to_dict()
        assert [r["verdict"] for r in table["runs"]] == [
            "baseline",
            "not comparable",
            "comparable",
        ]
    finally:
        project.close()


# -- CLI --------------------------------------------------------------------------------
def _invoke(project_root: Path, monkeypatch: pytest.MonkeyPatch, command: Any, *args: str) -> Any:
    monkeypatch.chdir(project_root)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner().invoke(command, list(args), catch_exceptions=False)


def test_cli_diff_prints_verdict_tables_and_a_plain_code_diff(
    project: Project,
    project_root: Path,
    toy: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = toy(project)
    second = toy(project, TOY.replace("abs(x - model)", "(x - model) ** 2"), scale=1.5)
    result = _invoke(project_root, monkeypatch, diff, first, second)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "verdict: not comparable" in out
    assert "different_metric_definition" in out
    assert "scale" in out
    assert "evaluate.mae" in out
    assert "\n-    error = sum(abs(x - model) for x in test) / len(test)\n" in out
    as_json = _invoke(project_root, monkeypatch, diff, first, "latest", "--json")
    data = json.loads(as_json.stdout)
    assert data["b"]["run_id"] == second
    assert data["verdict"]["comparable"] is False


def test_cli_compare_prints_one_table_and_json(
    project: Project,
    project_root: Path,
    toy: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = [toy(project), toy(project, scale=1.5), toy(project, scale=2.0)]
    result = _invoke(project_root, monkeypatch, compare, *runs)
    assert result.exit_code == 0, result.output
    assert "baseline" in result.stdout
    assert all(run in result.stdout for run in runs)
    data = json.loads(_invoke(project_root, monkeypatch, compare, *runs, "--json").stdout)
    assert [r["comparable"] for r in data["runs"]] == [True, True, True]


def test_cli_reports_unknown_and_ambiguous_runs_with_exit_code_2(
    project: Project,
    project_root: Path,
    toy: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = toy(project)
    toy(project, scale=1.5)
    unknown = _invoke(project_root, monkeypatch, diff, first, "nosuchrun")
    assert unknown.exit_code == 2
    assert "error: no run matches 'nosuchrun'" in unknown.stderr
    common = first[:1]
    ambiguous = _invoke(project_root, monkeypatch, compare, first, common)
    assert ambiguous.exit_code == 2
    assert "matches several runs" in ambiguous.stderr


def test_a_different_run_seed_shows_run_and_step_seeds(
    project: Project, toy: Callable[..., str]
) -> None:
    first = toy(project)
    second = toy(project, seed=5)
    result = diff_runs(project, first, second)
    assert result.run_seed is not None
    assert (result.run_seed.a, result.run_seed.b) == (0, 5)
    assert set(result.step_seeds) == {"load", "split", "fit", "evaluate"}
    assert all(s.changed == ["seed"] for s in result.steps if s.node_id in ("load", "split"))
    # A new seed gives the same split here (the steps draw no random numbers): comparable.
    assert result.verdict.comparable
