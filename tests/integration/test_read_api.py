"""The Python read API on each metadata backend: list, filter, open, load, explain, diff.

Runs real pipelines into a project whose ledger is SQLite or a real PostgreSQL, then reads
them back through ``pipetrail.Project``: filters are answered by the ledger (SQL), refs
resolve or fail with one message naming the candidates, and a failed run opens too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import pipetrail
from pipetrail.errors import AmbiguousPrefixError, NotFoundError, ParamError, StepFailedError
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger.read_model import StepRunRecord
from pipetrail.lineage.diff import RunDiff
from pipetrail.read import MetricSeries, Run, WhyResult

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SCORED = """
from pipetrail import log_metric, pipeline, step

@step
def make(n: int) -> list[int]:
    return list(range(n))

@step
def score(xs: list[int], boom: bool = False) -> dict[str, int]:
    for i, x in enumerate(xs):
        log_metric("f1", x / 10, step=i)
    if boom:
        raise RuntimeError("deliberate")
    return {"total": sum(xs)}

@pipeline
def scored(n: int = 3, boom: bool = False, rate: float = 0.5):
    return score(make(n), boom=boom)
"""


@pytest.fixture
def project(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Iterator[tuple[pipetrail.Project, list[str]]]:
    """Three runs: n=2 (tagged, named), n=3, then a failed one (n=4, boom)."""
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    proj = pipetrail.Project.open(project_root)
    definition = files.load(unique("scored"), SCORED)
    ids = [
        run_pipeline(
            definition,
            {"n": 2},
            proj,
            RunOptions(name="baseline", tags={"stage": "base", "team": "a"}),
        ).id,
        run_pipeline(definition, {"n": 3, "rate": 1}, proj, RunOptions()).id,
    ]
    with pytest.raises(StepFailedError) as failed:
        run_pipeline(definition, {"n": 4, "boom": True}, proj, RunOptions())
    ids.append(failed.value.run_id)
    yield proj, ids
    proj.close()


def test_runs_are_listed_newest_first_and_filtered_in_sql(
    project: tuple[pipetrail.Project, list[str]],
) -> None:
    proj, (first, second, failed) = project
    assert [r.id for r in proj.runs()] == [failed, second, first]
    assert [r.id for r in proj.runs(limit=1)] == [failed]
    assert [r.id for r in proj.runs(status="completed")] == [second, first]
    assert [r.id for r in proj.runs(status="failed")] == [failed]
    assert [r.id for r in proj.runs(params={"n": 3})] == [second]
    assert [r.id for r in proj.runs(params={"n": 3.0})] == [second]  # 3 == 3.0
    assert [r.id for r in proj.runs(params={"rate": 1.0})] == [second]
    assert [r.id for r in proj.runs(params={"boom": True})] == [failed]
    assert proj.runs(params={"n": 3, "boom": True}) == []
    assert [r.id for r in proj.runs(tags={"stage": "base"})] == [first]
    assert proj.runs(tags={"stage": "other"}) == []
    assert [r.id for r in proj.runs(since=proj.run(second).started_at)] == [failed, second]
    assert proj.runs(since="2999-01-01") == []
    assert proj.runs(pipeline="nope") == []
    assert len(proj.runs(pipeline=proj.run(first).pipeline)) == 3


def test_a_run_has_its_record_steps_metrics_and_artifacts(
    project: tuple[pipetrail.Project, list[str]],
) -> None:
    proj, (first, second, _) = project
    run = proj.run(first)
    assert isinstance(run, Run)
    assert (run.id, run.name, run.status, run.purpose) == (first, "baseline", "completed", "run")
    assert run.params == {"n": 2, "boom": False, "rate": 0.5}
    assert run.tags == {"stage": "base", "team": "a"}
    assert isinstance(run.seed, int)
    assert run.started_at <= (run.ended_at or "")
    assert [type(s) for s in run.steps] == [StepRunRecord, StepRunRecord]
    assert [(s.node_id, s.status, s.cache_decision) for s in run.steps] == [
        ("make", "completed", "miss"),
        ("score", "completed", "miss"),
    ]
    assert all(s.seconds is not None and s.seconds >= 0 for s in run.steps)
    assert run.artifact("make") == [0, 1]
    assert run.artifact("score", "output") == {"total": 1}
    metrics = run.metrics()
    assert metrics == {"f1": MetricSeries("f1", "score", (0, 1), (0.0, 0.1))}
    assert (metrics["f1"].last, metrics["f1"].max) == (0.1, 0.1)
    digest = run.step("make").outputs["output"]
    assert proj.load(digest) == [0, 1]
    assert proj.load(digest.removeprefix("blake3:")[:12]) == [0, 1]
    second_run = proj.run(second)
    assert second_run.steps[0].inputs == {}
    assert second_run.artifact("make") == [0, 1, 2]


def test_a_failed_run_opens_the_same_way(project: tuple[pipetrail.Project, list[str]]) -> None:
    proj, (_, _, failed) = project
    run = proj.run(failed)
    assert run.status == "failed"
    assert "deliberate" in (run.error or "")
    assert [(s.node_id, s.status) for s in run.steps] == [
        ("make", "completed"),
        ("score", "failed"),
    ]
    assert run.artifact("make") == [0, 1, 2, 3]
    assert run.metrics()["f1"].values == (0.0, 0.1, 0.2, 0.3)  # logged before it failed
    with pytest.raises(NotFoundError, match="no output"):
        run.artifact("score")


def test_refs_latest_prefix_unknown_and_ambiguous(
    project: tuple[pipetrail.Project, list[str]],
) -> None:
    proj, (first, _, failed) = project
    assert proj.run().id == failed
    assert proj.run("latest").id == failed
    assert proj.run(first[:20]).id == first
    with pytest.raises(NotFoundError, match="no run matches 'ZZZZZZ'"):
        proj.run("ZZZZZZ")
    with pytest.raises(AmbiguousPrefixError) as ambiguous:
        proj.run(first[:2])
    assert first in str(ambiguous.value)
    assert failed in str(ambiguous.value)


def test_why_and_diff_return_typed_results(project: tuple[pipetrail.Project, list[str]]) -> None:
    proj, (first, second, _) = project
    why = proj.why(second, "make")
    assert isinstance(why, WhyResult)
    assert (why.cache_decision, why.previous_run_id) == ("miss", first)
    assert "params" in why.changed
    diff = proj.diff(proj.run(first), second)
    assert isinstance(diff, RunDiff)
    assert set(diff.params.changed) == {"n", "rate"}


def test_bad_filters_say_what_is_wrong(project: tuple[pipetrail.Project, list[str]]) -> None:
    proj, _ = project
    with pytest.raises(ParamError, match=r"no run records a parameter 'epochs'.*boom, n, rate"):
        proj.runs(params={"epochs": 3})
    with pytest.raises(ParamError, match="not a run status; use one of: running, completed"):
        proj.runs(status="done")
    with pytest.raises(ParamError, match="tag key 'bad key' is not valid"):
        proj.runs(tags={"bad key": "x"})
    with pytest.raises(ParamError, match="is not a date or time"):
        proj.runs(since="yesterday")
    with pytest.raises(ParamError, match="whole number"):
        proj.runs(limit=-1)
    with pytest.raises(ParamError, match="not a run purpose"):
        proj.runs(purpose="ci")
