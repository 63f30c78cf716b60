"""Run search on each metadata backend: conditions on metrics, params and tags, sort
orders and added columns, all answered by the ledger in SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import pipetrail
from pipetrail.errors import ParamError
from pipetrail.execution.explain import list_runs, run_summary
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger.read_model import RunFilter
from pipetrail.ledger.run_query import parse_sort, parse_where
from tests.conftest import BACKENDS
from tests.integration.conftest import shared_project

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SWEEP = """
from pipetrail import log_metric, pipeline, step

@step
def fit(C: float, model: str) -> dict[str, float]:
    for i in range(3):
        log_metric("loss", 1.0 / (1 + C) + (2 - i) / 10, step=i)
    return {"f1": min(0.99, 0.5 + C / 10), "n": 3, "ok": True}

@step(outputs=("train", "test"))
def scores(r: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    return {"acc": r["f1"]}, {"acc": r["f1"] - 0.1}

@pipeline
def sweep(C: float = 1.0, model: str = "lr"):
    return scores(fit(C, model))
"""


def _searched(
    root: Path, files: PipelineFiles, name: str
) -> Iterator[tuple[pipetrail.Project, dict[str, str]]]:
    """Runs C=1 (lr), C=2 (lr, tagged prod), C=5 (rf), and C=1 again (a full cache hit)."""
    proj = pipetrail.Project.open(root)
    definition = files.load(name, SWEEP)
    ids = {
        "c1": run_pipeline(definition, {"C": 1.0}, proj, RunOptions()).id,
        "c2": run_pipeline(definition, {"C": 2}, proj, RunOptions(tags={"stage": "prod"})).id,
        "c5": run_pipeline(definition, {"C": 5.0, "model": "rf"}, proj, RunOptions()).id,
        "hit": run_pipeline(definition, {"C": 1.0}, proj, RunOptions()).id,
    }
    yield proj, ids
    proj.close()


@pytest.fixture(scope="module", params=BACKENDS)
def searched(request: pytest.FixtureRequest) -> Iterator[tuple[pipetrail.Project, dict[str, str]]]:
    """The runs on each backend, made once for the module's tests that only search them."""
    with shared_project(request, request.param, f"search-{request.param}") as (root, files):
        yield from _searched(root, files, f"search_sweep_{request.param}")


@pytest.fixture
def own_searched(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Iterator[tuple[pipetrail.Project, dict[str, str]]]:
    """The runs on each backend, for a test that edits the ledger."""
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    yield from _searched(project_root, files, unique("sweep"))


def _ids(proj: pipetrail.Project, **query: object) -> list[str]:
    return [run.id for run in proj.runs(**query)]  # type: ignore[arg-type]


def test_metrics_filter_by_name_in_any_step_or_by_node(
    searched: tuple[pipetrail.Project, dict[str, str]],
) -> None:
    proj, ids = searched
    assert _ids(proj, where="metrics.f1 > 0.6") == [ids["c5"], ids["c2"]]
    assert _ids(proj, where="metrics.fit.f1 >= 0.6") == [
        ids["hit"],
        ids["c5"],
        ids["c2"],
        ids["c1"],
    ]
    # a cache hit has the numbers of the step run it reused, and its own logged metrics
    assert _ids(proj, where="metrics.f1 = 0.6") == [ids["hit"], ids["c1"]]
    assert _ids(proj, where="metrics.loss < 0.4 and metrics.n = 3") == [ids["c5"], ids["c2"]]
    # several outputs: OUTPUT.KEY
    assert _ids(proj, where="metrics.scores.test.acc > 0.8") == [ids["c5"]]
    assert _ids(proj, where=["metrics.f1 > 0.6", "params.model = rf"]) == [ids["c5"]]
    assert _ids(proj, where="metrics.f1 > 5") == []


def test_params_tags_and_run_fields(searched: tuple[pipetrail.Project, dict[str, str]]) -> None:
    proj, ids = searched
    assert _ids(proj, where="params.C >= 2") == [ids["c5"], ids["c2"]]
    assert _ids(proj, where="params.C = 1") == [ids["hit"], ids["c1"]]
    assert _ids(proj, where="params.model != lr") == [ids["c5"]]
    assert _ids(proj, where="tags.stage = prod") == [ids["c2"]]
    assert _ids(proj, where="tags.stage != prod") == [ids["hit"], ids["c5"], ids["c1"]]
    assert _ids(proj, where="status = completed", limit=2) == [ids["hit"], ids["c5"]]
    with pytest.raises(ParamError, match=r"no run records a metric 'auc'; .* fit\.f1"):
        proj.runs(where="metrics.auc > 0.5")
    with pytest.raises(ParamError, match="no run records a parameter 'D'"):
        proj.runs(where="params.D > 0.5")


def test_sort_and_columns(searched: tuple[pipetrail.Project, dict[str, str]]) -> None:
    proj, ids = searched
    assert _ids(proj, sort="metrics.f1 desc")[:2] == [ids["c5"], ids["c2"]]
    assert _ids(proj, sort="params.C") == [ids["hit"], ids["c1"], ids["c2"], ids["c5"]]
    assert _ids(proj, sort="started_at") == [ids["c1"], ids["c2"], ids["c5"], ids["hit"]]
    reader = proj.reader()
    rows = list_runs(
        reader,
        query=RunFilter(
            where=tuple(parse_where("metrics.f1 > 0.6")),
            sort=parse_sort("metrics.f1 asc"),
            limit=10,
        ),
        columns=["params.C", "params.model", "metrics.f1", "metrics.loss", "tags.stage"],
    )
    assert [row["run_id"] for row in rows] == [ids["c2"], ids["c5"]]
    assert rows[0]["columns"] == {
        "params.C": 2,
        "params.model": "lr",
        "metrics.f1": pytest.approx(0.7),
        "metrics.loss": pytest.approx(1 / 3),
        "tags.stage": "prod",
    }
    assert rows[1]["columns"]["tags.stage"] is None
    assert rows[0]["steps_executed"] == 2


def test_show_lists_metric_values_with_series_ranges(
    searched: tuple[pipetrail.Project, dict[str, str]],
) -> None:
    proj, ids = searched
    summary = run_summary(proj.reader(), ids["hit"])
    metrics = {m["name"]: m for m in summary["metrics"]}
    assert metrics["fit.f1"]["value"] == pytest.approx(0.6)
    assert metrics["fit.f1"]["origin"] == "output"
    assert "fit.ok" not in metrics  # booleans are not metrics
    loss = metrics["fit.loss"]
    assert (loss["origin"], loss["count"]) == ("logged", 3)
    assert loss["value"] == pytest.approx(0.5)
    assert (loss["min"], loss["max"]) == (pytest.approx(0.5), pytest.approx(0.7))
    assert metrics["scores.train.acc"]["value"] == pytest.approx(0.6)


def test_audit_covers_the_metric_rows(
    own_searched: tuple[pipetrail.Project, dict[str, str]],
) -> None:
    proj, ids = own_searched
    ledger = proj.ledger
    assert ledger.verify().ok
    db = ledger.db
    with db.write():
        db.execute(
            "UPDATE run_metrics SET value = 0.99 WHERE run_id = :r AND key = 'f1'", {"r": ids["c1"]}
        )
    report = ledger.verify()
    assert [p.table for p in report.derived] == ["run_metrics"]
    ledger.rebuild_projections()
    assert ledger.verify().ok
