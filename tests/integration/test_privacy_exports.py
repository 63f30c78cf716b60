"""Privacy operations in the standard exports of a real run: OpenLineage column lineage
with masking transformations (validated against the vendored schemas), and PROV
activities with what each operation did."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from prov.model import ProvDocument

from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.lineage.exports import export_run
from tests.unit.lineage_exports.ol_schema import validate_event

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
        "name": ["ann", "bob", "cy", "dee", "eve"],
        "age": [17, 34, 52, 70, 40],
        "city": ["Paris", "Paris", "Lyon", "Nice", "Paris"],
        "diagnosis": ["a", "b", "c", "d", "e"],
    })

@step
def masked(df: pd.DataFrame) -> pd.DataFrame:
    df = privacy.pseudonymize(df, "name", key=b"0123456789abcdef")
    df = privacy.drop(df, "diagnosis")
    return privacy.generalize(df, "age", bins=[0, 18, 65, 120])

@step
def by_city(df: pd.DataFrame) -> pd.DataFrame:
    df = privacy.pseudonymize(df, "name", key=b"0123456789abcdef")
    return privacy.aggregate(df, by="city", aggs={"people": "name:count"}, min_group_size=2)

@pipeline
def clinic():
    df = raw()
    return masked(df), by_city(df)
"""


@pytest.fixture
def clinic(files: PipelineFiles, project: Project, unique: Callable[[str], str]) -> tuple[Any, str]:
    definition = files.load(unique("clinic"), PIPELINE)
    return definition, run_pipeline(definition, {}, project, RunOptions()).id


def _step_end(events: list[dict[str, Any]], node: str) -> dict[str, Any]:
    (end,) = [
        e for e in events if e["job"]["name"] == f"clinic.{node}" and e["eventType"] == "COMPLETE"
    ]
    return end


def _transforms(lineage: dict[str, Any], field: str) -> list[dict[str, Any]]:
    (source,) = lineage["fields"][field]["inputFields"]
    assert (source["name"], source["field"]) == (
        "clinic.raw.output",
        field if field != "people" else "name",
    )
    return list(source["transformations"])


def _check_lineage(events: list[dict[str, Any]]) -> None:
    used = {url for event in events for url in validate_event(event)}
    assert any("ColumnLineageDatasetFacet" in url for url in used)

    masked = _step_end(events, "masked")
    (output,) = masked["outputs"]
    lineage = output["facets"]["columnLineage"]
    # Only the columns a privacy operation touched; the dropped one is gone.
    assert set(lineage["fields"]) == {"name", "age"}
    (hashed,) = _transforms(lineage, "name")
    assert (hashed["type"], hashed["subtype"], hashed["masking"]) == (
        "DIRECT",
        "TRANSFORMATION",
        True,
    )
    assert "pseudonymize" in hashed["description"]
    assert "0123456789abcdef" not in json.dumps(events)
    (coarse,) = _transforms(lineage, "age")
    assert (coarse["type"], coarse["masking"]) == ("DIRECT", True)
    assert "3 bins" in coarse["description"]
    operations = masked["run"]["facets"]["pipetrail_privacy"]["operations"]
    assert [op["operation"] for op in operations] == ["pseudonymize", "drop", "generalize"]
    assert operations[1]["columns"] == ["diagnosis"]
    assert operations[1]["masking"] is False

    (table,) = _step_end(events, "by_city")["outputs"]
    lineage = table["facets"]["columnLineage"]
    assert set(lineage["fields"]) == {"city", "people", "n"}
    hashed, counted = _transforms(lineage, "people")
    assert hashed["subtype"] == "TRANSFORMATION"
    assert (counted["type"], counted["subtype"], counted["masking"]) == (
        "DIRECT",
        "AGGREGATION",
        True,
    )
    assert "count of name" in counted["description"]
    (key,) = _transforms(lineage, "city")
    assert (key["subtype"], key["masking"]) == ("IDENTITY", False)
    whole = {
        (d["field"], t["type"], t["subtype"])
        for d in lineage["dataset"]
        for t in d["transformations"]
    }
    assert whole == {("city", "INDIRECT", "GROUP_BY"), ("city", "INDIRECT", "FILTER")}
    (suppressed,) = [
        t for d in lineage["dataset"] for t in d["transformations"] if t["subtype"] == "FILTER"
    ]
    assert suppressed["masking"] is True
    assert "2 groups smaller than 2 suppressed (2 rows)" in suppressed["description"]
    # A step with no privacy operation says nothing about its columns.
    (plain,) = _step_end(events, "raw")["outputs"]
    assert "columnLineage" not in plain["facets"]


def test_openlineage_has_masking_column_lineage_even_for_a_cache_hit(
    clinic: tuple[Any, str], project: Project
) -> None:
    definition, run_id = clinic
    _check_lineage(export_run(project, run_id, "openlineage"))  # type: ignore[arg-type]
    again = run_pipeline(definition, {}, project, RunOptions()).id
    events = export_run(project, again, "openlineage")
    assert {
        e["run"]["facets"]["pipetrail_step"]["status"]
        for e in events
        if "pipetrail_step" in e["run"]["facets"]
    } == {"cached"}  # type: ignore[index]
    _check_lineage(events)  # type: ignore[arg-type]


def test_prov_has_one_activity_per_privacy_operation(
    clinic: tuple[Any, str], project: Project
) -> None:
    _, run_id = clinic
    doc = export_run(project, run_id, "prov")
    ProvDocument.deserialize(content=json.dumps(doc), format="json")  # valid PROV-JSON
    activities = doc["activity"]  # type: ignore[index]
    ops = {k: v for k, v in activities.items() if k.startswith("pipetrail:privacy-")}
    kinds = sorted(v["pipetrail:operation"] for v in ops.values())
    assert kinds == ["aggregate", "drop", "generalize", "pseudonymize", "pseudonymize"]
    (agg,) = [v for v in ops.values() if v["pipetrail:operation"] == "aggregate"]
    assert {"$": "pipetrail:Aggregation", "type": "prov:QUALIFIED_NAME"} in agg["prov:type"]
    assert (agg["pipetrail:groups_suppressed"], agg["pipetrail:rows_suppressed"]) == (2, 2)
    assert agg["pipetrail:masking"] == {"$": "true", "type": "xsd:boolean"}
    (dropped,) = [v for v in ops.values() if v["pipetrail:operation"] == "drop"]
    assert json.loads(dropped["pipetrail:columns"]) == ["diagnosis"]
    informed = {
        (r["prov:informed"], r["prov:informant"])
        for r in doc["wasInformedBy"].values()  # type: ignore[index]
    }
    for identifier, op in ops.items():
        assert (f"pipetrail:steprun-{op['pipetrail:step_run_id']}", identifier) in informed
    assert "0123456789abcdef" not in json.dumps(doc)
