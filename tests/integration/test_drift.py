"""Profiles recorded by real runs, and drift traced to the step where it enters (SQLite)."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.observability.drift import drift_runs
from pipetrail.observability.drift_config import DriftThresholds
from pipetrail.observability.drift_picture import write_pictures

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

SALES = """
from pathlib import Path
import pandas as pd
from pipetrail import pipeline, source, step

@step
def load_customers(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)

@step
def load_sales(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)

@step
def join(customers: pd.DataFrame, sales: pd.DataFrame) -> pd.DataFrame:
    return sales.merge(customers, on="customer", how="left")

@step
def features(joined: pd.DataFrame) -> pd.DataFrame:
    out = joined.copy()
    out["per_visit"] = out["amount"] / out["visits"]
    return out

@step
def summary(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("segment", as_index=False)["per_visit"].mean()

@pipeline
def sales():
    customers = load_customers(source("data/customers.csv"))
    sales = load_sales(source("data/sales.csv"))
    return summary(features(join(customers, sales)))
"""


def _write_data(root: Path, *, shift: float = 0.0, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    data = root / "data"
    data.mkdir(exist_ok=True)
    customers = pd.DataFrame(
        {
            "customer": np.arange(300),
            "segment": np.array(["retail", "pro", "gov"])[np.arange(300) % 3],
            "visits": 1 + np.arange(300) % 7,
        }
    )
    customers.to_csv(data / "customers.csv", index=False)
    sales = pd.DataFrame(
        {
            "customer": rng.integers(0, 300, n),
            "amount": rng.normal(100.0 + shift, 10.0, n).round(2),
            "channel": rng.choice(["web", "shop"], n),
        }
    )
    sales.to_csv(data / "sales.csv", index=False)


@pytest.fixture
def sales_run(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Callable[..., str]:
    name = unique("sales")

    def run(project: Project, **data: Any) -> str:
        _write_data(project_root, **data)
        definition = files.load(name, SALES)
        return run_pipeline(definition, {}, project, RunOptions()).id

    return run


def test_every_stored_table_links_a_profile_recorded_with_its_run(
    project: Project, sales_run: Callable[..., str]
) -> None:
    run_id = sales_run(project)
    reader = project.reader()
    for step in reader.step_runs(run_id):
        record = reader.artifact(step["outputs"]["output"])
        assert record is not None
        link = record["meta"]["profile"]
        profile_record = reader.artifact(link["digest"])
        assert profile_record is not None, step["node_id"]
        assert profile_record["role"] == "profile"
        profile = project.registry.load(_stored(profile_record), project.store)
        assert profile["rows"] == record["meta"]["rows"]
    # A cache hit records nothing new, and the cache keys did not change with profiles.
    again = sales_run(project)
    assert {s["cache_decision"] for s in reader.step_runs(again)} == {"hit"}


def _stored(record: dict[str, Any]) -> Any:
    from pipetrail.store import StoredArtifact

    return StoredArtifact(
        digest=record["digest"],
        blob=record["blob"],
        serializer=record["serializer"],
        type_name=record["type_name"],
        size=record["size"],
        meta=record["meta"],
    )


def test_a_shifted_source_column_drifts_from_the_step_that_reads_it(
    project: Project, sales_run: Callable[..., str], tmp_path: Path
) -> None:
    first = sales_run(project)
    second = sales_run(project, shift=30.0)
    report = drift_runs(project, first, second)
    assert report.first is not None
    assert report.first.node == "load_sales"
    assert report.first.columns == ("amount",)
    # summary (3 rows, one per segment): its shift is within sampling noise.
    assert set(report.first.downstream) == {"join", "features"}
    assert [o.node for o in report.origins] == ["load_sales"]
    by_node = {a.node_a: a for a in report.artifacts}
    assert by_node["load_customers"].digest_a == by_node["load_customers"].digest_b
    assert by_node["load_customers"].drifted_columns == []
    assert by_node["load_sales"].drifted_columns == ["amount"]  # channel did not move
    amount = next(c for c in by_node["load_sales"].columns if c.column == "amount")
    assert amount.psi is not None
    assert amount.psi > 1.0
    assert amount.ks is not None
    assert amount.ks > 0.5
    assert "per_visit" in by_node["features"].drifted_columns
    summary = next(c for c in by_node["summary"].columns if c.column == "per_visit")
    assert summary.psi is not None
    assert not summary.drifted
    data = json.loads(json.dumps(report.to_dict()))
    assert data["first"]["node"] == "load_sales"
    assert data["drifted"] is True
    pictures = write_pictures(report, tmp_path / "pictures")
    names = {p.name for p in pictures}
    assert "load_sales.output.amount.svg" in names
    assert (tmp_path / "pictures" / "load_sales.output.amount.svg").read_text().startswith("<svg")


def test_resampled_data_from_one_distribution_does_not_drift(
    project: Project, sales_run: Callable[..., str]
) -> None:
    first = sales_run(project, seed=1)
    second = sales_run(project, seed=2)
    report = drift_runs(project, first, second)
    assert report.first is None, report.origins
    sales = next(a for a in report.artifacts if a.node_a == "load_sales")
    assert sales.digest_a != sales.digest_b
    assert all(c.psi is not None and c.psi < 0.1 for c in sales.columns if c.kind == "numeric")


def test_thresholds_come_from_the_project_file(
    project: Project, project_root: Path, sales_run: Callable[..., str]
) -> None:
    first = sales_run(project, seed=1)
    second = sales_run(project, seed=2)
    (project_root / "pipetrail.toml").write_text(
        "[pipetrail]\n\n[drift]\npsi = 0.0\nsignificance = 0.999\n"
    )
    report = drift_runs(project, first, second)
    assert report.thresholds == DriftThresholds(psi=0.0, significance=0.999)
    assert report.first is not None
    assert report.first.node == "load_sales"


def test_profiles_missing_from_the_store_are_named_not_fatal(
    project: Project, project_root: Path, sales_run: Callable[..., str]
) -> None:
    first = sales_run(project)
    second = sales_run(project, shift=30.0)
    (project_root / "pipetrail.toml").write_text('[pipetrail]\nartifacts = "elsewhere"\n')
    emptied = Project.at(project_root)
    try:
        report = drift_runs(emptied, first, second)
    finally:
        emptied.close()
    assert report.first is None
    assert report.artifacts
    assert all(
        a.note is not None and "is missing from the store" in a.note for a in report.artifacts
    )


def test_runs_of_two_pipelines_compare_only_the_steps_that_pair(
    project: Project, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    _write_data(project_root)
    name = unique("sales")
    source = SALES + textwrap.dedent(
        """
        @pipeline
        def sales_lite():
            customers = load_customers(source("data/customers.csv"))
            return join(customers, load_sales(source("data/sales.csv")))
        """
    )
    full = run_pipeline(files.load(name, source, target="sales"), {}, project, RunOptions())
    _write_data(project_root, shift=30.0)
    lite = run_pipeline(files.load(name, source, target="sales_lite"), {}, project, RunOptions())
    report = drift_runs(project, full.id, lite.id)
    assert (report.pipeline_a, report.pipeline_b) == ("sales", "sales_lite")
    assert {a.node_a for a in report.artifacts} == {"load_customers", "load_sales", "join"}
    assert report.first is not None
    assert report.first.node == "load_sales"
    assert any("different pipelines ('sales' and 'sales_lite')" in n for n in report.notes)
    assert any("2 step(s) only in run A" in n for n in report.notes)
