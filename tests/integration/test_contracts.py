"""Contracts in real runs: a violation stops the run, is stored, shown and listed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from pipetrail import ContractViolationError, StepFailedError
from pipetrail.cli.main import cli
from pipetrail.execution.contract_records import run_contracts
from pipetrail.execution.explain import explain_step, run_summary
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.lineage.compare import compare_runs

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPELINE = """
import pandas as pd
import pandera.pandas as pa
from pipetrail import Contract, pipeline, step

LOW = 0
AGES = pa.DataFrameSchema({"age": pa.Column(int, pa.Check.ge(LOW)), "name": pa.Column(str)})

@step
def make(bad: bool = False) -> pd.DataFrame:
    return pd.DataFrame({"age": [1, -2 if bad else 2, 3], "name": ["a", "b", "c"]})

@step(contracts={"df": Contract(AGES, rows=(1, None)), "output": AGES})
def clean(df: pd.DataFrame, drop_name: bool = False) -> pd.DataFrame:
    return df.drop(columns="name") if drop_name else df

@step
def count(df: pd.DataFrame) -> int:
    return len(df)

@pipeline
def ages(bad: bool = False, drop_name: bool = False):
    return count(clean(make(bad), drop_name=drop_name))
"""


@pytest.fixture
def run_ages(files: PipelineFiles, unique: Callable[[str], str]) -> Callable[..., str]:
    name = unique("ages")

    def run(project: Project, source: str = PIPELINE, **params: object) -> str:
        definition = files.load(name, source)
        return run_pipeline(definition, params, project, RunOptions()).id

    return run


def test_a_violated_input_contract_fails_the_step_before_it_runs(
    project: Project, run_ages: Callable[..., str]
) -> None:
    with pytest.raises(ContractViolationError) as caught:
        run_ages(project, bad=True)
    error = caught.value
    assert isinstance(error, StepFailedError)
    assert error.step == "clean"
    assert "input 'df'" in str(error)
    assert "column 'age' greater_than_or_equal_to(0) failed for 1 value (e.g. row 1: -2)" in str(
        error
    )
    reader = project.reader()
    summary = run_summary(reader, error.run_id)
    assert summary["status"] == "failed"
    by_node = {s["node_id"]: s for s in summary["steps"]}
    assert by_node["clean"]["status"] == "failed"
    assert "count" not in by_node  # nothing downstream ran
    contracts = by_node["clean"]["contracts"]
    assert contracts["ok"] is False
    assert [b["boundary"] for b in contracts["boundaries"]] == ["input"]  # output never made
    boundary = contracts["boundaries"][0]
    assert boundary["artifact"] == by_node["make"]["outputs"]["output"]
    failed = [c for c in boundary["checks"] if c["status"] == "failed"]
    assert failed == [
        {
            "check": "greater_than_or_equal_to(0)",
            "column": "age",
            "status": "failed",
            "failures": 1,
            "examples": [{"index": 1, "value": -2}],
        }
    ]
    # The report is a stored JSON artifact with the role contract-report.
    record = reader.artifact(contracts["report"])
    assert record is not None
    assert record["role"] == "contract-report"
    assert error.report_digest == contracts["report"]
    report = json.loads(project.store.get_bytes(record["blob"]))
    assert report["step"] == "clean"
    assert report["ok"] is False
    assert report["boundaries"][0]["checks"] == boundary["checks"]


def test_a_violated_output_contract_names_the_missing_column_and_stores_nothing(
    project: Project, run_ages: Callable[..., str]
) -> None:
    with pytest.raises(ContractViolationError, match="column 'name' is missing") as caught:
        run_ages(project, drop_name=True)
    assert "the artifact has columns: age" in str(caught.value)
    summary = run_summary(project.reader(), caught.value.run_id)
    clean = next(s for s in summary["steps"] if s["node_id"] == "clean")
    assert clean["outputs"] == {}
    labels = [(b["boundary"], b["ok"], b["artifact"]) for b in clean["contracts"]["boundaries"]]
    assert labels[0][:2] == ("input", True)
    assert labels[1] == ("output", False, None)


def test_passing_contracts_are_recorded_and_cached_runs_show_the_reused_results(
    project: Project, run_ages: Callable[..., str]
) -> None:
    first = run_ages(project)
    second = run_ages(project)
    result = run_contracts(project.reader(), second)
    assert result["ok"] is True
    (step,) = result["steps"]
    assert step["status"] == "cached"
    executed = run_contracts(project.reader(), first)["steps"][0]
    assert step["from_step_run_id"] == executed["step_run_id"]
    assert step["boundaries"] == executed["boundaries"]
    assert [b["name"] for b in step["boundaries"]] == ["df", "output"]
    output = step["boundaries"][1]
    assert output["artifact"] is not None
    assert all(c["status"] == "passed" for b in step["boundaries"] for c in b["checks"])
    assert result["counts"]["failed"] == 0
    record = project.reader().get_run(first)["record"]
    assert set(record["contracts"]["clean"]) == {"input:df", "output:output"}


def test_changing_a_contract_changes_the_cache_key_and_the_verdict(
    project: Project, run_ages: Callable[..., str]
) -> None:
    first = run_ages(project)
    second = run_ages(project, PIPELINE.replace("LOW = 0", "LOW = -1"))
    steps = {s["node_id"]: s for s in run_summary(project.reader(), second)["steps"]}
    assert steps["make"]["status"] == "cached"
    assert steps["clean"]["status"] == "completed"
    why = explain_step(project.reader(), second, "clean")
    assert why["changed"] == ["contracts"]
    contracts = next(c for c in why["components"] if c["component"] == "contracts")
    # Both boundaries use the edited schema; `why` names each one.
    assert [line.split(": ")[0] for line in contracts["detail"]] == [
        "~ input:df",
        "~ output:output",
    ]
    verdict = compare_runs(project, [first, second]).runs[1].verdict
    assert "different_contracts" in [r.code for r in verdict.reasons]


def test_steps_without_contracts_keep_their_keys_and_events(
    project: Project, run_ages: Callable[..., str]
) -> None:
    run_id = run_ages(project)
    make = next(s for s in project.reader().step_runs(run_id) if s["node_id"] == "make")
    assert "contracts" not in make["components"]
    assert run_contracts(project.reader(), run_id)["steps"][0]["node_id"] == "clean"


def test_cli_contracts_json_and_show(
    project: Project,
    run_ages: Callable[..., str],
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ContractViolationError) as caught:
        run_ages(project, bad=True)
    run_id = caught.value.run_id
    monkeypatch.chdir(project_root)
    runner = CliRunner()
    listed = runner.invoke(cli, ["contracts", run_id, "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert data["run_id"] == run_id
    assert data["ok"] is False
    assert data["counts"]["failed"] == 1
    assert data["steps"][0]["node_id"] == "clean"
    text = runner.invoke(cli, ["contracts", run_id])
    assert text.exit_code == 0, text.output
    assert "greater_than_or_equal_to(0)" in text.output
    assert "contracts violated" in text.output
    shown = runner.invoke(cli, ["show", run_id])
    assert shown.exit_code == 0, shown.output
    assert "contracts" in shown.output
    assert "x input 'df' column 'age' greater_than_or_equal_to(0): 1 failing" in shown.output
    unknown = runner.invoke(cli, ["contracts", "nope"])
    assert unknown.exit_code == 2


def test_a_definition_error_records_nothing(
    project: Project, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    from pipetrail import DefinitionError

    broken = PIPELINE.replace('"output": AGES', '"result": AGES')
    with pytest.raises(DefinitionError, match="no input or output named 'result'"):
        files.load(unique("broken"), broken)
    assert project.reader().list_runs() == []


def test_an_output_that_turns_out_to_be_a_dict_is_a_clear_violation(
    project: Project, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    source = """
    from typing import Any
    import pandera.pandas as pa
    from pipetrail import pipeline, step

    @step(contracts={"output": pa.DataFrameSchema({"a": pa.Column(int)})})
    def make() -> Any:
        return {"a": [1, 2]}

    @pipeline
    def loose():
        return make()
    """
    definition = files.load(unique("loose"), source)
    with pytest.raises(ContractViolationError) as caught:
        run_pipeline(definition, {}, project, RunOptions())
    assert (
        "output 'output' breaks its pandera contract: type: the pandera contract checks pandas "
        "DataFrames, but the value is a dict" in str(caught.value)
    )
