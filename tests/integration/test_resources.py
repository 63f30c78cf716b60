"""Resource requests on every executor: recorded, admitted, refused; deviations flagged.

The ``processes`` executor runs real worker processes; the ``dask`` tests use one real
``LocalCluster`` of two worker processes, each declaring ``cpu = 1`` and 1 GiB of memory.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import ProjectError, StepFailedError
from pipetrail.execution.executors.dask_cluster import DaskExecutor, _local_cluster
from pipetrail.execution.executors.processes import ProcessExecutor
from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    import distributed

    cluster, client = _local_cluster(distributed, 2, {"cpu": 1.0, "memory": float(2**30)})
    yield client
    client.close()
    cluster.close()


def _events(project: Project, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (event.kind, json.loads(event.payload_text))
        for event in project.ledger.iter_events()
        if event.run_id == run_id
    ]


def _ends(project: Project, run_id: str) -> dict[str, dict[str, Any]]:
    return {
        p["node_id"]: {**p, "kind": k}
        for k, p in _events(project, run_id)
        if k in ("step.completed", "step.failed", "step.cached")
    }


HEAVY = """
import json
import time
from pathlib import Path

from pipetrail import pipeline, step


def _span(folder: str, name: str) -> str:
    start = time.time()
    time.sleep(0.4)
    Path(folder, name).write_text(json.dumps([start, time.time()]))
    return name


@step(cache=False, resources={"cpu": 2, "memory": "1MiB"})
def a(folder: str) -> str:
    return _span(folder, "a")


@step(cache=False, resources={"cpu": 2})
def b(folder: str) -> str:
    return _span(folder, "b")


@step(cache=False, resources={"cpu": 1.5})
def c(folder: str) -> str:
    return _span(folder, "c")


@step(cache=False)
def join(x: str, y: str, z: str) -> str:
    return x + y + z


@pipeline
def heavy(folder: str):
    return join(a(folder), b(folder), c(folder))
"""


@pytest.fixture
def spans_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "spans"
    folder.mkdir()
    return folder


# The same steps, each holding on until all three have started (at most 60 s) instead of
# for a fixed time, so they overlap whenever they may run at once, however busy the host.
TOGETHER = HEAVY.replace(
    "    time.sleep(0.4)\n",
    "    started = Path(folder, 'started')\n"
    "    started.mkdir(exist_ok=True)\n"
    "    (started / name).write_text('')\n"
    "    deadline = time.monotonic() + 60\n"
    "    while len(list(started.iterdir())) < 3 and time.monotonic() < deadline:\n"
    "        time.sleep(0.01)\n",
)


def _spans(folder: Path) -> list[tuple[float, float]]:
    return sorted(
        tuple(json.loads(p.read_text()))  # type: ignore[misc]
        for p in folder.iterdir()
        if p.is_file()
    )


def test_requests_are_recorded_with_what_was_used_inline(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], spans_dir: Path
) -> None:
    definition = files.load(unique("heavy"), HEAVY)
    run = run_pipeline(definition, {"folder": str(spans_dir)}, project, RunOptions())
    ends = _ends(project, run.id)
    assert ends["a"]["resource_requests"] == {"cpu": 2, "memory": 1024**2}
    assert ends["c"]["resource_requests"] == {"cpu": 1.5}
    assert ends["a"]["resources"]["cpu_ns"] >= 0
    assert ends["a"]["resources"]["wall_ns"] >= 0.4e9
    assert "resource_requests" not in ends["join"]  # declares nothing: no key


def test_with_options_requests_for_steps_that_declare_none(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], spans_dir: Path
) -> None:
    definition = files.load(unique("heavy"), HEAVY)
    options = RunOptions(resources=(("cpu", 0.5),))
    run = run_pipeline(definition, {"folder": str(spans_dir)}, project, options)
    ends = _ends(project, run.id)
    assert ends["join"]["resource_requests"] == {"cpu": 0.5}
    assert ends["b"]["resource_requests"] == {"cpu": 2}  # its own declaration wins


def test_processes_never_run_more_than_the_pool_holds(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], spans_dir: Path
) -> None:
    # Three workers, but a capacity of 2 CPUs: a (2), b (2) and c (1.5) must run one
    # after the other, where without admission all three would run at once.
    definition = files.load(unique("heavy"), HEAVY)
    executor = ProcessExecutor(workers=3, resources={"cpu": 2, "memory": "1GiB"})
    run = run_pipeline(
        definition, {"folder": str(spans_dir)}, project, RunOptions(executor=executor)
    )
    assert run.outputs == "abc"
    spans = _spans(spans_dir)
    assert len(spans) == 3
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01, spans
    ends = _ends(project, run.id)
    assert ends["a"]["resource_requests"] == {"cpu": 2, "memory": 1024**2}
    assert ends["a"]["worker"]["pid"] > 0


def test_processes_run_requests_that_fit_together_at_once(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], spans_dir: Path
) -> None:
    # The same steps with room for all of them: they overlap (the test above can fail).
    definition = files.load(unique("together"), TOGETHER)
    executor = ProcessExecutor(workers=3, resources={"cpu": 6})
    run_pipeline(definition, {"folder": str(spans_dir)}, project, RunOptions(executor=executor))
    spans = _spans(spans_dir)
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans


GREEDY = """
from pipetrail import pipeline, step


@step(cache=False, resources={"gpu": 1, "cpu": 1})
def train(n: int) -> int:
    return n * 2


@step(cache=False)
def steady(n: int) -> int:
    return n + 1


@pipeline
def greedy(n: int = 3):
    return train(n), steady(n)
"""


def _assert_refused(project: Project, run_id: str, words: list[str]) -> None:
    ends = _ends(project, run_id)
    assert ends["train"]["kind"] == "step.failed"
    error = ends["train"]["error"]
    for word in ["ResourceError", "step 'train'", *words]:
        assert word in error, error
    assert "attempts" not in ends["train"]  # never retried
    run = project.reader().get_run(run_id)
    assert run["status"] == "failed"
    assert "step 'train'" in run["error"]


def test_processes_refuse_a_step_larger_than_the_pool(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("greedy"), GREEDY)
    executor = ProcessExecutor(workers=2)
    started = time.monotonic()
    with pytest.raises(StepFailedError) as caught:
        run_pipeline(definition, {}, project, RunOptions(executor=executor, retries=2))
    assert time.monotonic() - started < 60
    assert "gpu 1 (has 0)" in str(caught.value)
    _assert_refused(project, caught.value.run_id or "", ["gpu 1 (has 0)", "[executor.resources]"])


def test_a_bad_pool_capacity_is_refused() -> None:
    with pytest.raises(ProjectError, match=r"\[executor.resources\]: unknown resource 'cores'"):
        ProcessExecutor(workers=1, resources={"cores": 2})


def test_dask_honours_requests(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    spans_dir: Path,
    dask_client: Any,
) -> None:
    dask_client.wait_for_workers(2, timeout=60)
    source = HEAVY.replace('"cpu": 2', '"cpu": 1').replace('"cpu": 1.5', '"cpu": 1')
    definition = files.load(unique("heavy"), source)
    run = run_pipeline(
        definition,
        {"folder": str(spans_dir)},
        project,
        RunOptions(executor=DaskExecutor(client=dask_client)),
    )
    assert run.outputs == "abc"
    # Two workers with one CPU each: never three one-CPU steps at once.
    spans = _spans(spans_dir)
    assert not (max(s for s, _ in spans) < min(e for _, e in spans)), spans
    ends = _ends(project, run.id)
    assert ends["a"]["resource_requests"] == {"cpu": 1, "memory": 1024**2}
    assert ends["a"]["worker"]["address"].startswith("tcp://")


def test_dask_refuses_what_no_worker_has_instead_of_waiting(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], dask_client: Any
) -> None:
    dask_client.wait_for_workers(2, timeout=60)
    definition = files.load(unique("greedy"), GREEDY)
    started = time.monotonic()
    with pytest.raises(StepFailedError) as caught:
        run_pipeline(definition, {}, project, RunOptions(executor=DaskExecutor(client=dask_client)))
    assert time.monotonic() - started < 60
    _assert_refused(
        project, caught.value.run_id or "", ["gpu 1", "no worker of the Dask cluster", "cpu 1"]
    )


def test_dask_local_cluster_workers_declare_their_share() -> None:
    executor = DaskExecutor(workers=2, worker_resources={"gpu": 1})
    declared = executor.settings()["worker_resources"]
    assert "gpu 1" in declared
    assert "cpu" in declared
    assert "memory" in declared


SLOW = """
import time

from pipetrail import pipeline, step


@step(cache=False, resources={"memory": "1MiB"})
def work(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pipeline
def slow(seconds: float = 0.01):
    return work(seconds)
"""


def test_deviations_from_history_are_flagged_in_the_run_record(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("slow"), SLOW)
    for _ in range(2):
        usual = run_pipeline(definition, {"seconds": 0.01}, project, RunOptions())
    end = next(p for k, p in _events(project, usual.id) if k == "run.completed")
    # The history is as fast: only the memory above its (tiny) request is flagged.
    assert [d["kind"] for d in end["resource_deviations"]] == ["memory-over-request"]
    over = end["resource_deviations"][0]
    assert over["node_id"] == "work"
    assert over["peak_rss_bytes"] > over["requested_bytes"] == 1024**2
    slow = run_pipeline(definition, {"seconds": 1.3}, project, RunOptions())
    end = next(p for k, p in _events(project, slow.id) if k == "run.completed")
    flagged = {d["kind"]: d for d in end["resource_deviations"]}
    assert flagged["slower"]["node_id"] == "work"
    assert flagged["slower"]["runs"] == 2
    assert flagged["slower"]["seconds"] >= 1.3 > 3 * flagged["slower"]["median_seconds"]


def test_a_step_slower_than_its_history_by_the_configured_minimum_is_flagged(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    # Steps under deviation_min_seconds are not compared with their history (they cannot
    # be flagged); a lower minimum in [alerts] brings short steps back into the comparison.
    (project_root / "pipetrail.toml").write_text(
        "[pipetrail]\n\n[alerts]\ndeviation_min_seconds = 0.05\n"
    )
    definition = files.load(unique("slow"), SLOW)
    for _ in range(2):
        run_pipeline(definition, {"seconds": 0.01}, project, RunOptions())
    slow = run_pipeline(definition, {"seconds": 0.3}, project, RunOptions())
    end = next(p for k, p in _events(project, slow.id) if k == "run.completed")
    flagged = {d["kind"]: d for d in end["resource_deviations"]}
    assert flagged["slower"]["node_id"] == "work"
    assert flagged["slower"]["runs"] == 2
    (project_root / "pipetrail.toml").write_text("[pipetrail]\n")
    same = run_pipeline(definition, {"seconds": 0.3}, project, RunOptions())
    end = next(p for k, p in _events(project, same.id) if k == "run.completed")
    assert [d["kind"] for d in end["resource_deviations"]] == ["memory-over-request"]
