"""Seeded splits inside real pipelines: the step event's data_ops match the outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import LeakageError, StepFailedError
from pipetrail.execution.explain import run_summary
from pipetrail.execution.runner import RunOptions, run_pipeline
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.project import Project

pytestmark = pytest.mark.integration

PIPELINE = """
import pandas as pd
from pipetrail import data, pipeline, step

@step
def make(rows: int, dup: bool) -> pd.DataFrame:
    values = [0] * 4 + list(range(1, rows - 3)) if dup else list(range(rows))
    return pd.DataFrame({"v": values, "y": [i % 3 for i in range(rows)]})

@step(outputs=("train", "test"))
def prepare(df: pd.DataFrame, stratify: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts = data.split(df, {"train": 0.75, "test": 0.25}, stratify="y" if stratify else None)
    return parts["train"], parts["test"]

@pipeline
def p(rows: int = 40, dup: bool = False, stratify: bool = True):
    return prepare(make(rows, dup), stratify)
"""


def _events(project: Project, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (e.kind, e.payload["node_id"]): e.payload
        for e in project.ledger.iter_events()
        if e.run_id == run_id and e.kind.startswith("step.")
    }


def test_split_in_a_step_records_the_output_digests(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("split"), PIPELINE)
    run = run_pipeline(definition, {}, project, RunOptions(seed=11))
    events = _events(project, run.id)
    made = events[("step.completed", "make")]
    done = events[("step.completed", "prepare")]
    (op,) = done["data_ops"]
    assert op["op"] == "split"
    assert (op["seed"], op["seed_from"]) == (done["seed"], "step")
    assert op["args"]["stratify"] == ["y"]
    assert op["input"] == {"digest": next(iter(made["outputs"].values())), "rows": 40}
    assert {name: o["digest"] for name, o in op["outputs"].items()} == {
        name: done["outputs"][name] for name in ("train", "test")
    }
    assert {name: o["rows"] for name, o in op["outputs"].items()} == {"train": 30, "test": 10}
    assert op["leakage"]["outcome"] == "ok"
    assert "data_ops" not in made  # steps that ran no data operation keep their shape

    # Same input and seed: the same subsets, so the step is served from the cache, and a
    # fresh execution (no cache) records the same digests.
    again = run_pipeline(definition, {}, project, RunOptions(seed=11, cache=False))
    redo = _events(project, again.id)[("step.completed", "prepare")]
    assert redo["data_ops"][0]["outputs"] == op["outputs"]
    # `pipetrail show` has them too.
    steps = {s["node_id"]: s for s in run_summary(project.reader(), run.id)["steps"]}
    assert steps["prepare"]["data_ops"] == [op]
    assert steps["make"]["data_ops"] == []


def test_a_leaking_split_fails_the_step_and_records_the_counts(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("leak"), PIPELINE)
    # Four equal rows; with this run seed the step's seed makes them straddle the cut.
    seed = _leaking_seed(definition, project)
    with pytest.raises(StepFailedError) as info:
        run_pipeline(definition, {"dup": True, "stratify": False}, project, RunOptions(seed=seed))
    assert isinstance(info.value.__cause__, LeakageError)
    assert "'train' and 'test' share 1 row" in str(info.value)
    failed = _events(project, info.value.run_id)[("step.failed", "prepare")]
    (op,) = failed["data_ops"]
    assert op["leakage"]["outcome"] == "refused"
    assert op["leakage"]["overlaps"] == [{"subsets": ["train", "test"], "rows": 1, "groups": None}]


def _leaking_seed(definition: Any, project: Project) -> int:
    """The first run seed whose derived seed for 'prepare' splits the equal rows."""
    import pandas as pd

    from pipetrail import data
    from pipetrail.capture import derive_seed

    frame = pd.DataFrame({"v": [0] * 4 + list(range(1, 37)), "y": [i % 3 for i in range(40)]})
    for seed in range(200):
        parts = data.split(
            frame, {"train": 0.75, "test": 0.25}, seed=derive_seed(seed, "prepare"), leakage="off"
        )
        if data.check_leakage(parts["train"], parts["test"]).rows:
            return seed
    raise AssertionError("no leaking seed found")


def test_cached_steps_are_unchanged(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("cache"), PIPELINE)
    run_pipeline(definition, {}, project, RunOptions(seed=3))
    second = run_pipeline(definition, {}, project, RunOptions(seed=3))
    assert statuses(second)["prepare"] == "cached"
