"""Sweeps on real stores: a grid of runs under one sweep id, cached upstream steps shared.

Runs one after another and several at once (threads, each with its own coordinator) on
SQLite and PostgreSQL, and on a real Dask ``LocalCluster``; a failing point does not
stop the others; bad grids record nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import NotFoundError, ParamError
from pipetrail.execution.executors.dask_cluster import DaskExecutor
from pipetrail.execution.project import Project
from pipetrail.execution.run_state import RunOptions
from pipetrail.execution.sweep import grid_points, parse_grid, run_sweep, sweep_run_ids
from pipetrail.ledger import EventKind
from pipetrail.ledger.event_records import RunStarted, parse_event
from pipetrail.lineage.compare import compare_runs
from tests.support.pipelines import GRID as PIPELINE

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration


def _started(project: Project) -> list[RunStarted]:
    found = []
    for event in project.ledger.iter_events():
        if event.kind == EventKind.RUN_STARTED.value:
            record = parse_event(event)
            assert isinstance(record, RunStarted)
            found.append(record)
    return found


def _step_statuses(project: Project, run_id: str) -> dict[str, str]:
    rows = project.reader().fetch(
        "SELECT node_id, status FROM step_runs WHERE run_id = :r", {"r": run_id}
    )
    return {str(r["node_id"]): str(r["status"]) for r in rows}


def test_parse_grid_and_points_in_order() -> None:
    grid = parse_grid(["C=0.1, 1,10", "penalty=l1,l2"])
    assert grid == {"C": ["0.1", "1", "10"], "penalty": ["l1", "l2"]}
    points = grid_points(grid)
    assert len(points) == 6
    assert points[:3] == [
        {"C": "0.1", "penalty": "l1"},
        {"C": "0.1", "penalty": "l2"},
        {"C": "1", "penalty": "l1"},
    ]
    with pytest.raises(ParamError, match="lists no value"):
        parse_grid(["C="])
    with pytest.raises(ParamError, match="must be NAME=V1,V2"):
        parse_grid(["C"])
    with pytest.raises(ParamError, match="empty value"):
        parse_grid(["C=1,,2"])
    with pytest.raises(ParamError, match="grid is empty"):
        grid_points({})


def test_a_sweep_groups_its_runs_and_shares_the_cached_upstream_step(
    project: Project, files: PipelineFiles
) -> None:
    definition = files.load("sweep_seq", PIPELINE)
    seen: list[int] = []
    result = run_sweep(
        definition,
        parse_grid(["C=0.1,1,10", "penalty=l1,l2"]),
        project,
        on_run=lambda row: seen.append(row.index),
    )
    assert seen == [0, 1, 2, 3, 4, 5]
    assert [r.status for r in result.runs] == ["completed"] * 6
    assert not result.failed
    # Values are parsed by the pipeline's types, as `pipetrail run -p` does.
    run_ids = [r.run_id for r in result.runs]
    assert sweep_run_ids(project.reader(), result.sweep_id) == run_ids
    started = {r.run_id: r for r in _started(project)}
    for index, run_id in enumerate(run_ids):
        assert run_id is not None
        record = started[run_id]
        assert record.sweep == {"id": result.sweep_id, "index": index, "size": 6}
        assert record.tags == {"sweep": result.sweep_id}
        assert record.params["C"] == float(result.runs[index].params["C"])
    # The upstream step ran once; every later point reused it.
    assert _step_statuses(project, run_ids[0]) == {"load": "completed", "train": "completed"}
    for run_id in run_ids[1:]:
        assert _step_statuses(project, str(run_id))["load"] == "cached"
    assert result.runs[2].metrics["train.score"] == pytest.approx(45 * 1.0 / 2)
    assert result.runs[5].metrics["train.score"] == pytest.approx(45 * 10.0 / 3)
    # compare --sweep's table: grid order, the first run as the baseline.
    comparison = compare_runs(project, sweep_run_ids(project.reader(), result.sweep_id))
    assert [r.run_id for r in comparison.runs] == run_ids
    assert comparison.param_names == ("C", "n", "penalty")
    assert project.ledger.verify().ok


def test_old_run_started_events_have_no_sweep(project: Project, files: PipelineFiles) -> None:
    from pipetrail.execution.runner import run_pipeline

    run = run_pipeline(files.load("sweep_old", PIPELINE), {}, project)
    (record,) = _started(project)
    assert record.run_id == run.id
    assert record.sweep is None
    assert "sweep" not in json.loads(
        project.reader().fetch("SELECT record FROM runs WHERE run_id = :r", {"r": run.id})[0][
            "record"
        ]
    )


def test_a_failing_point_does_not_stop_the_others(project: Project, files: PipelineFiles) -> None:
    definition = files.load("sweep_fail", PIPELINE)
    result = run_sweep(
        definition, {"C": [1.0, 2.0], "penalty": ["boom", "l1"]}, project, params={"n": 4}
    )
    assert [(r.params["C"], r.params["penalty"], r.status) for r in result.runs] == [
        (1.0, "boom", "failed"),
        (1.0, "l1", "completed"),
        (2.0, "boom", "failed"),
        (2.0, "l1", "completed"),
    ]
    failed = result.failed
    assert [r.index for r in failed] == [0, 2]
    assert all("no such penalty" in (r.error or "") for r in failed)
    status = {
        str(r["run_id"]): str(r["status"])
        for r in project.reader().fetch("SELECT run_id, status FROM runs")
    }
    assert [status[str(r.run_id)] for r in result.runs] == [
        "failed",
        "completed",
        "failed",
        "completed",
    ]
    assert result.to_dict()["failed"] == 2


@pytest.mark.parametrize(
    ("grid", "kwargs", "message"),
    [
        ({"lr": [1, 2]}, {}, "has no parameter 'lr'"),
        ({"C": ["x"]}, {}, "parameter 'C' expects float"),
        ({}, {}, "grid is empty"),
        ({"C": []}, {}, "lists no value"),
        ({"C": [1]}, {"max_parallel": 0}, "max_parallel must be"),
    ],
)
def test_bad_grids_record_nothing(
    project: Project,
    files: PipelineFiles,
    grid: dict[str, list[Any]],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    definition = files.load("sweep_bad", PIPELINE)
    with pytest.raises(ParamError, match=message):
        run_sweep(definition, grid, project, **kwargs)
    assert list(project.ledger.iter_events()) == []


def test_an_unknown_sweep_id_is_not_found(project: Project, files: PipelineFiles) -> None:
    run_sweep(files.load("sweep_nf", PIPELINE), {"C": [1]}, project)
    with pytest.raises(NotFoundError, match="no run belongs to sweep 'NOPE'"):
        sweep_run_ids(project.reader(), "NOPE")


def test_concurrent_runs_each_have_their_own_coordinator(
    metadata_url: str, project_root: Path, files: PipelineFiles
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    project = Project.at(project_root)
    try:
        definition = files.load("sweep_par", PIPELINE)
        result = run_sweep(
            definition,
            {"C": [0.5, 1.0, 2.0, 4.0], "penalty": ["l1", "l2", "boom"]},
            project,
            max_parallel=4,
        )
        assert len(result.runs) == 12
        assert [r.status for r in result.runs] == ["completed", "completed", "failed"] * 4
        ids = [r.run_id for r in result.runs]
        assert None not in ids
        assert len(set(ids)) == 12
        assert sweep_run_ids(project.reader(), result.sweep_id) == ids
        # Every run's events are there once, and the chain holds.
        events = list(project.ledger.iter_events())
        kinds = Counter(e.kind for e in events)
        assert kinds["run.started"] == 12
        assert kinds["run.completed"] == 8
        assert kinds["run.failed"] == 4
        assert len({e.seq for e in events}) == len(events)
        assert project.ledger.verify().ok
    finally:
        project.close()


def test_a_sweep_on_a_dask_cluster(
    project: Project, files: PipelineFiles, dask_client: Any
) -> None:
    definition = files.load("sweep_dask", PIPELINE)
    dask_client.wait_for_workers(2, timeout=60)
    options = RunOptions(executor=DaskExecutor(client=dask_client))
    result = run_sweep(
        definition, {"C": [1, 2, 3], "penalty": ["l1", "l2"]}, project, options, max_parallel=2
    )
    assert [r.status for r in result.runs] == ["completed"] * 6
    for row in result.runs:
        expected = 45 * float(row.params["C"]) / (2 if row.params["penalty"] == "l1" else 3)
        assert row.metrics["train.score"] == pytest.approx(expected)
    started = {r.run_id: r for r in _started(project)}
    assert {started[str(r.run_id)].payload["executor"] for r in result.runs} == {"dask"}
    assert project.ledger.verify().ok
    # The given client stays open for its owner.
    assert dask_client.status == "running"


def test_a_concurrent_executor_object_is_not_shared_by_parallel_runs(
    project: Project, files: PipelineFiles
) -> None:
    from pipetrail.execution.executors.processes import ProcessExecutor

    class Pool(ProcessExecutor):
        name = "pool"

    definition = files.load("sweep_obj", PIPELINE)
    with pytest.raises(ParamError, match="cannot be shared by concurrent runs"):
        run_sweep(definition, {"C": [1, 2]}, project, RunOptions(executor=Pool(1)), max_parallel=2)
    assert list(project.ledger.iter_events()) == []


def test_the_python_api(project: Project, files: PipelineFiles) -> None:
    definition = files.load("sweep_api", PIPELINE)
    runner = definition.with_options(project=project, tags={"stage": "try"})  # type: ignore[attr-defined]
    result = runner.sweep({"C": [1, 2]}, params={"penalty": "l1", "n": 3}, max_parallel=2)
    assert [r.params for r in result.runs] == [{"C": 1}, {"C": 2}]
    assert [r.metrics["train.score"] for r in result.runs] == [1.5, 3.0]
    started = {r.run_id: r for r in _started(project)}
    assert {started[str(r.run_id)].tags["stage"] for r in result.runs} == {"try"}
