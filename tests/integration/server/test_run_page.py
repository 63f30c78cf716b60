"""The run page's charts, contracts and data operations, and the runs table's columns."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.server.charts import line_chart

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import PipelineFiles
    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration

CHECKED = """
import pandas as pd
import pandera.pandas as pa
from pipetrail import Contract, data, log_metric, pipeline, step

AGES = pa.DataFrameSchema({"age": pa.Column(int, pa.Check.ge(0))})

@step
def make() -> pd.DataFrame:
    return pd.DataFrame({"age": list(range(40)), "y": [i % 2 for i in range(40)]})

@step(contracts={"df": Contract(AGES, rows=(1, None))}, outputs=("train", "test"))
def prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts = data.split(df, {"train": 0.75, "test": 0.25}, stratify="y")
    for i, loss in enumerate([0.9, 0.5, 0.25, 0.2]):
        log_metric("loss", loss, step=i)
    return parts["train"], parts["test"]

@pipeline
def checked():
    return prepare(make())
"""


@pytest.fixture
def checked_run(served: Served, files: PipelineFiles, unique: Callable[[str], str]) -> str:
    definition = files.load(unique("checked"), CHECKED)
    return run_pipeline(definition, {}, served.project, RunOptions(seed=3)).id


def test_the_run_page_draws_each_series_and_lists_contracts_and_data_operations(
    served: Served, checked_run: str
) -> None:
    page = served.client("vic").get(f"/runs/{checked_run}")
    assert page.status_code == 200, page.text
    html = page.text
    svg = re.search(r'<svg class="chart" role="img".*?</svg>', html, re.S)
    assert svg is not None
    assert '<title id="chart-0-t">loss</title>' in svg.group(0)
    assert "4 point(s) from step 0 to 3; first 0.9, last 0.2, lowest 0.2, highest 0.9" in html
    assert svg.group(0).count(",") >= 4  # a polyline of four points
    assert 'style="' not in svg.group(0)  # the CSP allows no inline style
    contracts = html[html.index('id="contracts"') : html.index('id="data-operations"')]
    assert "prepare" in contracts
    assert "held" in contracts
    assert "input:df" in contracts
    ops = html[html.index('id="data-operations"') :]
    assert "split" in ops
    assert "train: 30 rows" in ops
    assert "test: 10 rows" in ops
    assert '<th scope="col">Leakage check</th>' in ops


def test_a_run_without_contracts_or_operations_says_so(served: Served) -> None:
    html = served.client("vic").get(f"/runs/{served.runs[0]}").text
    assert "No step of this run declares a contract." in html
    assert "recorded a sample, split or privacy operation." in html
    assert '<title id="chart-0-t">loss</title>' in html


def test_the_runs_table_shows_the_chosen_param_and_metric_columns(
    served: Served, checked_run: str
) -> None:
    vic = served.client("vic")
    html = vic.get("/", params=[("col", "params.auc"), ("col", "metrics.roc_auc")]).text
    head = re.search(r"<thead>(.*?)</thead>", html, re.S)
    assert head is not None
    assert '<th scope="col">params.auc</th>' in head.group(1)
    assert '<th scope="col">metrics.roc_auc</th>' in head.group(1)
    assert "params.rows" not in head.group(1)
    row = re.search(rf'href="/runs/{served.runs[1]}".*?</tr>', html, re.S)
    assert row is not None
    assert row.group(0).count("<td>0.91</td>") == 2  # the param, and the metric it returned
    default = vic.get("/").text
    assert '<th scope="col">params.rows</th>' in default
    refused = vic.get("/", params={"col": "metric.f1"})
    assert refused.status_code == 422
    assert "'metric.f1' is not a column" in refused.json()["detail"]


def test_a_chart_of_one_point_or_no_finite_value_still_describes_itself() -> None:
    one = line_chart("c", "f1", [0], [0.5])
    assert "<circle" in one.svg
    assert "1 point(s)" in one.description
    none = line_chart("c", "<b>x</b>", [0, 1], [None, float("nan")])
    assert "no finite value" in none.description
    assert "<b>" not in none.svg
    assert "&lt;b&gt;" in none.svg
