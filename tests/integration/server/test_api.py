"""The HTTP API over a real project: runs, steps, logs, metrics, artifacts, lineage, compare,
models and the promotion flow as two people, audit status, and the OpenAPI schema."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

from pipetrail.governance.service import Governance
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration


def test_runs_list_filters_and_pages_with_a_cursor(served: Served) -> None:
    vic = served.client("vic")
    listed = vic.get("/api/v1/runs").json()
    assert [r["run_id"] for r in listed["runs"]] == served.runs[::-1]
    assert listed["next_cursor"] is None
    assert listed["runs"][0]["params"] == {"rows": 12, "auc": 0.99}

    first = vic.get("/api/v1/runs", params={"limit": 2}).json()
    assert [r["run_id"] for r in first["runs"]] == served.runs[:0:-1]
    assert first["next_cursor"] == served.runs[1]
    second = vic.get("/api/v1/runs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["run_id"] for r in second["runs"]] == [served.runs[0]]
    assert second["next_cursor"] is None

    by_param = vic.get("/api/v1/runs", params={"param": "rows=12"}).json()
    assert [r["run_id"] for r in by_param["runs"]] == served.runs[:0:-1]
    by_where = vic.get("/api/v1/runs", params={"where": "params.auc > 0.95"}).json()
    assert {r["run_id"] for r in by_where["runs"]} == {served.runs[0], served.runs[2]}
    sorted_runs = vic.get("/api/v1/runs", params={"sort": "params.auc asc"}).json()
    assert [r["run_id"] for r in sorted_runs["runs"]] == [served.runs[i] for i in (1, 0, 2)]


def test_tags_filter_and_unknown_fields_are_refused_by_name(served: Served) -> None:
    served.project.ledger  # noqa: B018 - open the writer
    from pipetrail.read import Project

    with Project.open(served.root) as project:
        project.tag(served.runs[1], stage="baseline")
    vic = served.client("vic")
    tagged = vic.get("/api/v1/runs", params={"tag": "stage=baseline"}).json()
    assert [r["run_id"] for r in tagged["runs"]] == [served.runs[1]]
    unknown = vic.get("/api/v1/runs", params={"where": "params.nope > 1"})
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "nope" in unknown.json()["detail"]
    assert (
        vic.get("/api/v1/runs", params={"cursor": served.runs[1], "sort": "params.auc"}).status_code
        == 422
    )


def test_a_run_its_steps_why_logs_and_metrics(served: Served) -> None:
    vic = served.client("vic")
    run = vic.get(f"/api/v1/runs/{served.runs[0]}").json()
    assert run["run_id"] == served.runs[0]
    assert run["params"] == {"rows": 10, "auc": 0.97}
    assert run["steps_total"] == 2
    assert vic.get("/api/v1/runs/latest").json()["run_id"] == served.runs[2]

    steps = vic.get(f"/api/v1/runs/{served.runs[1]}/steps").json()["steps"]
    assert [s["node_id"] for s in steps] == ["prepare", "train"]
    assert all(s["cache_decision"] == "miss" for s in steps)
    # What each step asked for, beside what it used (train asks for memory only).
    assert [s["resource_requests"] for s in steps] == [None, {"memory": 64 * 2**20}]
    assert steps[1]["resources"]["wall_ns"] > 0
    # Run 3 has the rows of run 2: its prepare step was reused from the cache.
    why = vic.get(f"/api/v1/runs/{served.runs[2]}/steps/prepare/why").json()
    assert why["cache_decision"] == "hit"
    assert why["previous_run_id"] == served.runs[1]

    logs = vic.get(f"/api/v1/runs/{served.runs[0]}/logs", params={"step": "prepare"}).json()
    assert "preparing 10 rows" in logs["steps"][0]["text"]

    metrics = vic.get(f"/api/v1/runs/{served.runs[0]}/metrics").json()["metrics"]
    assert metrics["loss"]["steps"] == [0, 1, 2]
    assert metrics["loss"]["values"] == pytest.approx([1.0, 0.5, 1 / 3])

    missing = vic.get(f"/api/v1/runs/{served.runs[0]}/steps/nope/why")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
    assert vic.get("/api/v1/runs/ZZZZZZZZ").status_code == 404


def test_an_artifact_s_record_and_verified_bytes(served: Served) -> None:
    vic = served.client("vic")
    ref = f"{served.runs[0]}:train.output"
    record = vic.get(f"/api/v1/artifacts/{ref}").json()
    assert record["node_id"] == "train"
    assert record["suggested_name"] == "train.output.json"
    content = vic.get(f"/api/v1/artifacts/{record['digest']}/content")
    assert content.status_code == 200
    assert content.headers["X-Pipetrail-Digest"] == record["digest"]
    assert json.loads(content.content) == {"roc_auc": 0.97, "rows": 10}
    assert record["blob"] == record["digest"]  # JSON is stored as its own bytes
    assert digest_bytes(content.content) == record["digest"]
    by_prefix = vic.get(f"/api/v1/artifacts/{record['digest'][7:19]}").json()
    assert by_prefix["digest"] == record["digest"]


def test_lineage_up_and_down_and_compare(served: Served) -> None:
    vic = served.client("vic")
    up = vic.get("/api/v1/lineage/up", params={"ref": served.runs[0]}).json()
    assert up["direction"] == "upstream"
    assert {n["kind"] for n in up["nodes"]} >= {"step_run", "artifact"}
    record = vic.get(f"/api/v1/artifacts/{served.runs[1]}:prepare.output").json()
    down = vic.get("/api/v1/lineage/down", params={"ref": record["digest"]}).json()
    runs = {n.get("run_id") for n in down["nodes"] if n["kind"] == "step_run"}
    assert served.runs[1] in runs
    diff = vic.get("/api/v1/compare", params={"a": served.runs[0], "b": served.runs[1]}).json()
    assert diff["params"]["changed"] == {"auc": {"a": 0.97, "b": 0.91}, "rows": {"a": 10, "b": 12}}
    assert diff["verdict"]["comparable"] is False
    assert diff["verdict"]["reasons"][0]["code"] == "different_evaluation_data"


def test_promotion_as_two_people_and_the_requester_cannot_approve(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.gov("rita").register("churn", f"{served.runs[0]}:train.output")
    rita, bob = served.client("rita"), served.client("bob")
    assert [m["model"] for m in rita.get("/api/v1/models").json()["models"]] == ["churn"]

    opened = rita.post(
        "/api/v1/models/churn/versions/1/promotions",
        json={"alias": "production", "rationale": "best auc", "risk": "low"},
    )
    assert opened.status_code == 201, opened.text
    request_id = opened.json()["request_id"]
    listed = rita.get("/api/v1/requests", params={"status": "open"}).json()["requests"]
    assert [(r["request_id"], r["by"]) for r in listed] == [(request_id, "rita")]

    # rita may not approve: her role does not allow it (403 before anything is read).
    with caplog.at_level(logging.WARNING, logger="pipetrail.server"):
        assert rita.post(f"/api/v1/requests/{request_id}/approve", json={}).status_code == 403
    assert any("rita may not approve" in r.getMessage() for r in caplog.records)

    # alice is admin (may approve) but the server holds no key of hers: refused, nothing written.
    events = served.project.reader().event_count()
    alice = served.client("alice")
    refused = alice.post(f"/api/v1/requests/{request_id}/approve", json={"comment": "ok"})
    assert refused.status_code == 403
    assert "holds no signing key for alice" in refused.json()["detail"]
    assert served.project.reader().event_count() == events

    approved = bob.post(f"/api/v1/requests/{request_id}/approve", json={"comment": "looks good"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["moved"] is True
    model = bob.get("/api/v1/models/churn").json()
    assert model["aliases"] == ["production"]
    history = [e["event"] for e in model["history"]]
    assert "promotion.approved" in history
    # The approval is bob's own signed act: the fold verifies it against bob's key.
    state = Governance(served.project, user="bob").state()
    assert state.requests[request_id].approvals[0].by == "bob"
    assert not state.problems
    assert bob.get(f"/api/v1/requests/{request_id[:8]}").json()["status"] == "approved"


def test_the_requester_cannot_approve_even_as_an_approver(served: Served) -> None:
    served.gov("alice").grant("bob", "researcher")
    served.gov("rita").register("churn", f"{served.runs[0]}:train.output")
    bob = served.client("bob")
    opened = bob.post(
        "/api/v1/models/churn/versions/1/promotions",
        json={"alias": "production", "rationale": "mine", "risk": "low"},
    )
    assert opened.status_code == 201, opened.text
    before = served.project.reader().event_count()
    own = bob.post(f"/api/v1/requests/{opened.json()['request_id']}/approve", json={})
    assert own.status_code == 403
    assert "separation of duties" in own.json()["detail"]
    assert served.project.reader().event_count() == before


def test_me_audit_and_the_openapi_schema(served: Served) -> None:
    bob = served.client("bob")
    me = bob.get("/api/v1/me").json()
    assert me["user"] == "bob"
    assert me["roles"] == ["approver"]
    assert me["csrf_token"] is None  # a bearer token needs none
    audit = bob.get("/api/v1/audit").json()
    assert audit["governance"]["intact"] is True
    assert audit["events"] > 0
    schema = bob.get("/api/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert "/api/v1/runs" in paths
    assert "/api/v1/requests/{request_id}/approve" in paths
    assert "requestBody" in paths["/api/v1/requests/{request_id}/approve"]["post"]
    assert not any(p.startswith("/login") for p in paths)


def test_an_edited_governance_event_is_not_trusted_after_the_server_cached_it(
    served: Served,
) -> None:
    import sqlite3

    nora = served.client("nora")
    assert nora.get("/api/v1/runs").status_code == 403  # no role; the events are now cached
    database = served.project.config.metadata_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        (seq, payload) = db.execute(
            "SELECT seq, payload FROM events WHERE kind = 'user.added' AND payload LIKE ?",
            ('%"user":"nora"%',),
        ).fetchone()
        edited = payload.replace('"roles":[]', '"roles":["admin"]')
        assert edited != payload
        db.execute("UPDATE events SET payload = ? WHERE seq = ?", (edited, seq))
    assert nora.get("/api/v1/runs").status_code == 403
    audit = served.client("vic").get("/api/v1/audit").json()["governance"]
    assert audit["intact"] is False
    assert [p["seq"] for p in audit["problems"]] == [seq]
