"""`pipetrail runs` searching through the CLI: filters, sort, columns and their errors."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_cli import cli, run_json

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pipetrail import log_metric, pipeline, step

@step
def fit(C: float) -> dict[str, float]:
    log_metric("loss", 1.0 / (1 + C))
    return {"f1": min(0.99, 0.5 + C / 10)}

@pipeline
def p(C: float = 1.0):
    return fit(C)
"""


def _project(root: Path) -> Path:
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "p.py").write_text(textwrap.dedent(PIPELINE))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _project(tmp_path / "p")


@pytest.fixture(scope="module")
def ran_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after one run, shared by the refused searches (they only read)."""
    root = _project(tmp_path_factory.mktemp("refusals") / "p")
    run_json(root, "p.py")
    return root


def test_runs_filter_sort_and_add_columns(project: Path) -> None:
    c1 = run_json(project, "p.py", "-p", "C=1")["run_id"]
    c2 = run_json(project, "p.py", "-p", "C=2", "--tag", "stage=prod")["run_id"]
    c5 = run_json(project, "p.py", "-p", "C=5")["run_id"]
    found = json.loads(
        cli(
            project, "runs", "--where", "metrics.f1 > 0.6", "--sort", "metrics.f1 asc",
            "--columns", "params.C,metrics.f1", "--json", check=True,
        ).stdout
    )  # fmt: skip
    assert [r["run_id"] for r in found] == [c2, c5]
    assert found[0]["columns"] == {"params.C": 2, "metrics.f1": pytest.approx(0.7)}
    text = cli(project, "runs", "--param", "C=5", "--columns", "metrics.fit.f1", check=True).stdout
    assert c5 in text
    assert c1 not in text
    assert "metrics.fit.f1" in text
    assert "0.99" in text
    tagged = json.loads(cli(project, "runs", "--tag", "stage=prod", "--json", check=True).stdout)
    assert [r["run_id"] for r in tagged] == [c2]
    assert (
        cli(project, "runs", "--where", "metrics.f1 > 2", check=True).stdout == "no run matches\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "metrics.auc > 1"], "no run records a metric 'auc'"),
        (["--where", "f1 > 1"], "unknown field 'f1'"),
        (["--where", "metrics.f1 >"], "cannot read the condition"),
        (["--sort", "metrics.f1 sideways"], "asc or desc"),
        (["--columns", "f1"], "is not params.NAME"),
        (["--param", "C"], "must be NAME=VALUE"),
        (["--since", "yesterday"], "is not a date or time"),
        (["--status", "done"], "is not a run status"),
    ],
)
def test_bad_filters_are_refused_in_one_line(
    ran_project: Path, args: list[str], message: str
) -> None:
    result = cli(ran_project, "runs", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_show_prints_metric_values(project: Path) -> None:
    run_json(project, "p.py", "-p", "C=1")
    text = cli(project, "show", "latest", check=True).stdout
    assert "metrics" in text
    assert "fit.f1    0.6" in text
    assert "fit.loss  0.5  (last of 1; min 0.5, max 0.5)" in text
    data = json.loads(cli(project, "show", "latest", "--json", check=True).stdout)
    assert {m["name"] for m in data["metrics"]} == {"fit.f1", "fit.loss"}


NAMESPACED = """
from pipetrail import log_metric, pipeline, step

@step
def fit(C: float = 1.0) -> dict[str, float]:
    for i in range(3):
        log_metric("train/loss", 1.0 / (1 + C + i), step=i)
        log_metric("eval/test/f1", 0.5 + i / 10, step=i)
    return {"eval/acc": 0.8}

@pipeline
def q(C: float = 1.0):
    return fit(C)
"""


def test_metrics_lists_values_by_namespace_prefix(project: Path) -> None:
    (project / "q.py").write_text(textwrap.dedent(NAMESPACED))
    run_id = run_json(project, "q.py")["run_id"]
    text = cli(project, "metrics", "latest", "--prefix", "eval/", check=True).stdout
    assert text.splitlines() == [
        "fit.eval/acc      0.8",
        "fit.eval/test/f1  0.7  (last of 3; min 0.5, max 0.7)",
    ]
    data = json.loads(cli(project, "metrics", run_id, "--json", check=True).stdout)
    assert [m["name"] for m in data["metrics"]] == [
        "fit.eval/acc",
        "fit.eval/test/f1",
        "fit.train/loss",
    ]
    assert data["metrics"][2]["count"] == 3
    none = cli(project, "metrics", "latest", "--prefix", "nope/", check=True).stdout
    assert none == f"run {run_id} recorded no metrics under 'nope/'\n"
    bad = cli(project, "metrics", "NOSUCHRUN")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
