"""Governance acts in the PROV and OpenLineage exports of a hand-made run snapshot."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
from prov.model import ProvDocument

from pipetrail.lineage.exports import (
    GovernanceRecord,
    RunSnapshot,
    openlineage_events,
    prov_document,
)
from pipetrail.lineage.exports.openlineage import GOVERNANCE_FACET_SCHEMA
from pipetrail.lineage.exports.prov import entity_id
from tests.unit.lineage_exports.ol_schema import validate_event
from tests.unit.lineage_exports.test_snapshot_exports import RUN_ID, TABLE, make_snapshot

KEY_A = "ed25519:0123456789abcdef"
KEY_B = "ed25519:fedcba9876543210"
CHECK = {"name": "metric:roc_auc", "passed": True, "value": 0.97, "detail": "meets"}


def _acts() -> tuple[GovernanceRecord, ...]:
    def act(seq: int, kind: str, action: str, by: str, **extra: Any) -> GovernanceRecord:
        key = KEY_A if by == "alice" else KEY_B
        base: dict[str, Any] = {"model": "churn", "version": 1, "digest": TABLE}
        return GovernanceRecord(
            seq=seq,
            ts=f"2026-01-03T00:00:{seq:02d}.000000Z",
            kind=kind,
            action=action,
            by=by,
            key_id=key,
            signature=f"c2lnbmF0dXJl{seq}==",
            **{**base, **extra},
        )

    return (
        act(10, "model.registered", "registration", "alice"),
        act(11, "promotion.requested", "promotion request", "alice", alias="production",
            request_id="req-1", text="better recall", risk="medium", risk_notes="new",
            checks=(CHECK,)),
        act(12, "promotion.approved", "approval", "bob", alias=None, request_id="req-1",
            text="ok"),
        act(13, "alias.moved", "promotion", "bob", alias="production", request_id="req-1",
            previous=None),
        act(14, "alias.moved", "rollback", "bob", alias="production", version=None,
            text="latency", previous=1, model="churn"),
        act(15, "decision.recorded", "decision", "alice", model=None, version=None,
            digest=None, text="EU only", decision_kind="scoping", about_run=RUN_ID),
    )  # fmt: skip


def _snapshot() -> RunSnapshot:
    return dataclasses.replace(make_snapshot(status="completed"), governance=_acts())


def test_openlineage_states_each_act_in_a_facet_that_meets_its_shipped_schema() -> None:
    events = openlineage_events(_snapshot())
    for event in events:
        used = validate_event(event)
        assert all(url.startswith("https://openlineage.io/") or "Governance" in url for url in used)
    start, end = events[0], events[-1]
    facet = start["run"]["facets"]["pipetrail_governance"]
    assert facet == end["run"]["facets"]["pipetrail_governance"]
    assert "pipetrail_governance" not in events[1]["run"]["facets"]  # steps carry none
    assert [a["action"] for a in facet["acts"]] == [
        "registration", "promotion request", "approval", "promotion", "rollback", "decision",
    ]  # fmt: skip
    request = facet["acts"][1]
    assert (request["by"], request["keyId"], request["risk"]) == ("alice", KEY_A, "medium")
    assert request["checks"] == [CHECK]
    assert facet["acts"][2]["signature"] == "c2lnbmF0dXJl12=="
    assert facet["acts"][5]["aboutRun"] == RUN_ID
    assert any("PipetrailGovernanceRunFacet" in url for url in validate_event(start))


def test_the_shipped_schema_refuses_a_facet_that_breaks_it() -> None:
    facet = openlineage_events(_snapshot())[0]["run"]["facets"]["pipetrail_governance"]
    schema = json.loads(GOVERNANCE_FACET_SCHEMA.read_text(encoding="utf-8"))
    registry_free = copy.deepcopy(schema["$defs"]["PipetrailGovernanceRunFacet"]["allOf"][1])
    jsonschema.validate(facet, registry_free)
    for broken in ({"keyId": "rsa:1"}, {"action": "vetoed"}, {"signature": ""}):
        bad = copy.deepcopy(facet)
        bad["acts"][2].update(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, registry_free)
    event = openlineage_events(_snapshot())[0]
    del event["run"]["facets"]["pipetrail_governance"]["acts"][0]["by"]
    with pytest.raises(jsonschema.ValidationError):
        validate_event(event)


def test_prov_makes_each_act_an_activity_with_its_signer_as_agent() -> None:
    doc = prov_document(_snapshot())
    read = ProvDocument.deserialize(content=json.dumps(doc), format="json")
    assert read.get_records()  # the prov package reads it back
    activities = doc["activity"]
    approval = activities["pipetrail:governance-12"]
    assert approval["prov:type"]["$"] == "pipetrail:Approval"
    assert approval["pipetrail:key_id"] == KEY_B
    assert approval["pipetrail:signature"] == "c2lnbmF0dXJl12=="
    assert approval["pipetrail:signed_by"] == "bob"
    assert activities["pipetrail:governance-14"]["prov:type"]["$"] == "pipetrail:Rollback"
    assert activities["pipetrail:governance-15"]["pipetrail:text"] == "EU only"
    assert doc["agent"]["pipetrail:user-bob"]["prov:type"]["$"] == "prov:Person"
    roles = {
        (a["prov:activity"], a["prov:agent"], a.get("prov:role"))
        for a in doc["wasAssociatedWith"].values()
    }
    assert ("pipetrail:governance-11", "pipetrail:user-alice", "requester") in roles
    assert ("pipetrail:governance-12", "pipetrail:user-bob", "approver") in roles
    version = "pipetrail:model-churn-v1"
    assert doc["entity"][version]["pipetrail:digest"] == TABLE
    derived = {
        (d["prov:generatedEntity"], d["prov:usedEntity"]) for d in doc["wasDerivedFrom"].values()
    }
    assert (version, entity_id(TABLE)) in derived
    generated = {(g["prov:entity"], g["prov:activity"]) for g in doc["wasGeneratedBy"].values()}
    assert (version, "pipetrail:governance-10") in generated
    informed = {(i["prov:informed"], i["prov:informant"]) for i in doc["wasInformedBy"].values()}
    assert ("pipetrail:governance-12", "pipetrail:governance-11") in informed
    assert ("pipetrail:governance-13", "pipetrail:governance-11") in informed
    assert ("pipetrail:governance-15", f"pipetrail:run-{RUN_ID}") in informed


def test_a_snapshot_without_governance_exports_none() -> None:
    snap = make_snapshot(status="completed")
    assert "pipetrail_governance" not in openlineage_events(snap)[0]["run"]["facets"]
    doc = prov_document(snap)
    assert not [a for a in doc["activity"] if a.startswith("pipetrail:governance-")]
