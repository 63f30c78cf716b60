"""A contract failing on sensitive data: the report is sealed, nothing on disk quotes a value."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import ContractViolationError
from pipetrail.execution.runner import RunOptions, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

NAMES = ["Zebulon-Quartermain", "Ottilie-Farnsworth", "Balthazar-Ng"]

PIPELINE = """
import pandas as pd
import pandera.pandas as pa
from pipetrail import Contract, pipeline, source, step

SHORT = pa.DataFrameSchema({"name": pa.Column(str, pa.Check.str_length(max_value=5))})

@step
def load(path) -> pd.DataFrame:
    return pd.read_csv(path)

@step(contracts={"output": SHORT})
def names(df: pd.DataFrame) -> pd.DataFrame:
    return df[["name"]]

@step(contracts={"df": SHORT})
def count(df: pd.DataFrame) -> int:
    return len(df)

@pipeline
def p(which: str = "output"):
    df = load(source("patients.csv", classification="pii"))
    return names(df) if which == "output" else count(df)
"""

PLAIN = PIPELINE.replace(', classification="pii"', "")


def _write_csv(root: Path) -> None:
    rows = ["name,city"] + [f"{NAMES[i % 3]},Paris" for i in range(6)]
    (root / "patients.csv").write_text("\n".join(rows) + "\n")


def _on_disk(root: Path) -> bytes:
    found = []
    for folder, _, names in os.walk(root / ".pipetrail"):
        for name in names:
            found.append((root / folder / name).read_bytes())
    return b"\n".join(found)


@pytest.mark.parametrize("which", ["output", "input"])
def test_a_failing_contract_on_pii_data_writes_no_value_in_clear(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
    which: str,
) -> None:
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE)
    with pytest.raises(ContractViolationError) as caught:
        run_pipeline(definition, {"which": which}, project, RunOptions())
    assert "values not shown: the step handles pii data" in str(caught.value)
    assert not any(name in str(caught.value) for name in NAMES)
    on_disk = _on_disk(project_root)
    assert not any(name.encode() in on_disk for name in NAMES)
    # The sealed report keeps the failing values for a reader with the keys.
    digest = caught.value.report_digest
    assert digest is not None
    record = project.reader().artifact(digest)
    assert record is not None
    assert record["meta"]["sealed"]
    assert record["meta"]["classification"] == "pii"
    from pipetrail.store import StoredArtifact

    stored = StoredArtifact.from_dict(record)
    report = project.registry.load(stored, project.store_for(stored))
    assert NAMES[0] in str(report)
    # The step event still says which check failed and how often.
    (failed,) = [e.payload for e in project.ledger.iter_events() if e.kind == "step.failed"]
    checks = [c for b in failed["contracts"]["boundaries"] for c in b["checks"]]
    (check,) = [c for c in checks if c["status"] == "failed"]
    assert check["column"] == "name"
    assert check["failures"] == 6
    assert check["examples"] == []


def test_a_failing_contract_on_plain_data_still_quotes_values(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    _write_csv(project_root)
    definition = files.load(unique("plain"), PLAIN)
    with pytest.raises(ContractViolationError) as caught:
        run_pipeline(definition, {}, project, RunOptions())
    assert NAMES[0] in str(caught.value)
    assert NAMES[0].encode() in _on_disk(project_root)
