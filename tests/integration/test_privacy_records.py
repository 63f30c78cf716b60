"""Privacy operations inside a real step leave a record of what they did in its event."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPELINE = """
import pandas as pd
from pipetrail import pipeline, privacy, step

@step
def raw() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["ann", "bob", "cy", "dee"],
        "age": [17, 34, 52, 70],
        "city": ["Paris", "Paris", "Lyon", "Nice"],
    })

@step
def protect(df: pd.DataFrame) -> pd.DataFrame:
    df = privacy.pseudonymize(df, "name", key=b"0123456789abcdef")
    df = privacy.generalize(df, "age", bins=[0, 18, 65, 120])
    privacy.check_k_anonymity(df, ["age", "city"], 2)
    return privacy.aggregate(df, by="city", aggs={"people": "name:count"}, min_group_size=2)

@pipeline
def p():
    return protect(raw())
"""


def test_each_privacy_call_is_recorded_without_keys_or_values(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    run = run_pipeline(files.load(unique("privacy"), PIPELINE), {}, project, RunOptions())
    (event,) = [
        e
        for e in project.ledger.iter_events()
        if e.run_id == run.id and e.kind == "step.completed" and e.payload["node_id"] == "protect"
    ]
    ops = event.payload["data_ops"]
    assert [op["op"] for op in ops] == [
        "pseudonymize",
        "generalize",
        "check_k_anonymity",
        "aggregate",
    ]
    pseudo, general, kanon, agg = ops
    assert pseudo["columns"] == ["name"]
    assert pseudo["key_id"].startswith("pseudonym:")
    assert "0123456789abcdef" not in event.payload_text
    assert "ann" not in event.payload_text
    assert general["args"]["bins"] == [0.0, 18.0, 65.0, 120.0]
    assert (kanon["k"], kanon["ok"], kanon["violating_groups"]) == (1, False, 4)
    assert "Nice" not in event.payload_text  # the offending groups' values are not recorded
    assert (agg["groups"], agg["groups_suppressed"], agg["rows_suppressed"]) == (3, 2, 2)
    assert agg["outputs"]["aggregate"]["digest"] == event.payload["outputs"]["output"]
    assert pseudo["outputs"]["pseudonymize"]["digest"] == general["input"]["digest"]
