"""Drift against a pooled baseline of several runs (SQLite, real runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import ParamError
from pipetrail.observability.drift import drift_runs
from tests.integration.test_drift import sales_run

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.project import Project

pytestmark = pytest.mark.integration
__all__ = ["sales_run"]


def test_a_run_is_compared_with_the_pooled_runs_before_it(
    project: Project, sales_run: Callable[..., str]
) -> None:
    first = sales_run(project, seed=1)
    second = sales_run(project, seed=2)
    third = sales_run(project, seed=3)
    shifted = sales_run(project, seed=4, shift=30.0)
    report = drift_runs(project, None, shifted, baseline_runs=3)
    assert report.baseline_runs == (third, second, first)
    assert report.run_a == third
    assert report.first is not None
    assert report.first.node == "load_sales"
    assert report.first.columns == ("amount",)
    by_node = {a.node_a: a for a in report.artifacts}
    assert by_node["load_sales"].pooled == 3
    assert by_node["load_sales"].rows_a == 3 * 3000
    # The customers table is the same in every run: pooled once, and equal to run B's.
    assert by_node["load_customers"].pooled == 1
    assert by_node["load_customers"].columns == ()
    assert report.to_dict()["baseline_runs"] == [third, second, first]
    # Fresh samples of the same distribution do not drift from the pool.
    steady = drift_runs(project, None, third, baseline_runs=2)
    assert steady.baseline_runs == (second, first)
    assert steady.first is None, steady.origins


def test_run_a_heads_the_pool_when_named(project: Project, sales_run: Callable[..., str]) -> None:
    first = sales_run(project, seed=1)
    second = sales_run(project, seed=2)
    later = sales_run(project, seed=3)
    report = drift_runs(project, second, later, baseline_runs=5)
    assert report.baseline_runs == (second, first)  # fewer exist: those are pooled
    assert report.first is None
    alone = drift_runs(project, second, later)
    assert alone.baseline_runs == ()
    assert {a.pooled for a in alone.artifacts} == {1}


def test_no_earlier_run_or_a_bad_count_is_one_message(
    project: Project, sales_run: Callable[..., str]
) -> None:
    first = sales_run(project, seed=1)
    with pytest.raises(ParamError, match=r"no completed run of pipeline 'sales' started before"):
        drift_runs(project, None, first, baseline_runs=3)
    with pytest.raises(ParamError, match=r"--baseline-runs must be a whole number from 1"):
        drift_runs(project, first, first, baseline_runs=0)
