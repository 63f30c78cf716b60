"""Drift over HTTP: the API route and the page, per step and column."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import PipelineFiles
    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration

TABLES = """
import numpy as np
import pandas as pd
from pipetrail import pipeline, step

@step
def load(shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "age": rng.normal(40 + shift, 5, 2000),
        "city": rng.choice(["Paris", "Lyon", "Nice"], 2000),
    })

@step
def scale(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["age_scaled"] = out["age"] / 100
    return out

@pipeline
def tables(shift: float = 0.0):
    return scale(load(shift))
"""


@pytest.fixture
def drift_runs(
    served: Served, files: PipelineFiles, unique: Callable[[str], str]
) -> tuple[str, str, str]:
    """Three runs: a baseline, one equal to it, one whose ages shifted by 15."""
    definition = files.load(unique("tables"), TABLES)
    return tuple(  # type: ignore[return-value]
        run_pipeline(definition, {"shift": shift}, served.project, RunOptions()).id
        for shift in (0.0, 0.0, 15.0)
    )


def test_the_api_names_the_drifting_columns_and_the_step_where_drift_starts(
    served: Served, drift_runs: tuple[str, str, str]
) -> None:
    base, same, shifted = drift_runs
    vic = served.client("vic")
    answer = vic.get("/api/v1/drift", params={"a": base, "b": shifted})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["drifted"] is True
    assert report["first"]["node"] == "load"
    assert "age" in report["first"]["columns"]
    by_node = {a["node_b"]: a for a in report["artifacts"]}
    columns = {c["column"]: c for c in by_node["load"]["columns"]}
    assert columns["age"]["drifted"] is True
    assert columns["city"]["drifted"] is False
    calm = vic.get("/api/v1/drift", params={"a": base, "b": same}).json()
    assert calm["drifted"] is False
    pooled = vic.get("/api/v1/drift", params={"b": shifted, "baseline_runs": 2}).json()
    assert pooled["baseline_runs"] == [same, base]


def test_the_api_refuses_a_missing_run_with_a_problem(served: Served) -> None:
    vic = served.client("vic")
    missing = vic.get("/api/v1/drift", params={"a": served.runs[0]})
    assert missing.status_code == 422
    assert "give b" in missing.json()["detail"]
    unknown = vic.get("/api/v1/drift", params={"a": served.runs[0], "b": "zzzzzzzz"})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


def test_the_drift_page_shows_each_column_per_step_with_labelled_controls(
    served: Served, drift_runs: tuple[str, str, str]
) -> None:
    base, _, shifted = drift_runs
    vic = served.client("vic")
    empty = vic.get("/drift")
    assert empty.status_code == 200
    assert '<label for="a">' in empty.text
    assert '<label for="b">' in empty.text
    html = vic.get("/drift", params={"a": base, "b": shifted}).text
    assert "Drift</span> from" in html
    assert re.search(r"step <strong>load</strong>, output output: columns [^<]*age", html)
    row = re.search(r'<th scope="row">age</th>.*?</tr>', html, re.S)
    assert row is not None
    assert ">yes<" in row.group(0)
    city = re.search(r'<th scope="row">city</th>.*?</tr>', html, re.S)
    assert city is not None
    assert ">no<" in city.group(0)
