"""Governed promotion on each metadata backend: identities, the registry, requests,
separation of duties, rollback, decisions, and what tampering with the database does."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import (
    GovernanceError,
    IdentityError,
    NotFoundError,
    PermissionDeniedError,
    ProjectError,
    TamperedLedgerError,
)
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.governance.keys import load_signer, parse_public_key
from pipetrail.governance.service import Governance
from pipetrail.governance.verify import verify_governance
from pipetrail.ledger.events import EventDraft, EventKind
from tests.support.team import Team

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TRAIN = """
from pipetrail import pipeline, step

@step
def train(auc: float = 0.97) -> dict:
    return {"roc_auc": auc, "rows": 100}

@pipeline
def fit(auc: float = 0.97):
    return train(auc)
"""


@pytest.fixture
def team(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Iterator[tuple[Team, list[str]]]:
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\nmetadata = "{metadata_url}"\n\n'
        '[promotion.production]\napprovals = 2\nmetrics = ["roc_auc >= 0.95"]\n'
        'checks = ["no_leakage"]\n'
    )
    project = Project.at(project_root)
    fit = files.load(unique("fit"), TRAIN)
    runs = [run_pipeline(fit, {"auc": auc}, project, RunOptions()).id for auc in (0.97, 0.9)]
    t = Team(project, project_root.parent / "homes")
    t.key("alice")
    t.as_("alice").bootstrap()
    for name, roles in (("rita", ["researcher"]), ("bob", ["approver"]), ("carol", ["approver"])):
        t.as_("alice").add_user(name, t.key(name), roles=tuple(roles))
    yield t, runs
    project.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    import uuid

    return lambda stem: f"{stem}_{uuid.uuid4().hex[:8]}"


def _register_two(t: Team, runs: list[str]) -> None:
    t.as_("rita").register("churn", f"{runs[0]}:train")
    t.as_("rita").register("churn", f"{runs[0]}:train")


def test_roles_are_checked_in_the_library_and_name_what_is_missing(
    team: tuple[Team, list[str]],
) -> None:
    t, _ = team
    before = t.events()
    with pytest.raises(PermissionDeniedError, match=r"manage users.*needs the role admin"):
        t.as_("rita").grant("bob", "admin")
    with pytest.raises(PermissionDeniedError, match="register a model version"):
        t.as_("bob").register("churn", "latest:train")
    with pytest.raises(GovernanceError, match="already a user"):
        t.as_("alice").add_user("bob", t.key("bob2"))
    with pytest.raises(GovernanceError, match="last admin"):
        t.as_("alice").revoke("alice", "admin")
    with pytest.raises(GovernanceError, match="has users already"):
        t.as_("bob").bootstrap()
    assert t.events() == before  # refusals record nothing
    t.as_("alice").grant("rita", "approver")
    t.as_("alice").revoke("rita", "approver")
    users = {u.name: u for u in t.as_("alice").state().users.values()}
    assert {r.value for r in users["rita"].roles} == {"researcher"}


def test_an_unknown_identity_cannot_act(team: tuple[Team, list[str]]) -> None:
    t, _ = team
    t.key("mallory")
    with pytest.raises(IdentityError, match="'mallory' is not a user"):
        t.as_("mallory").register("churn", "latest:train")


def test_promotion_needs_passing_checks_and_two_distinct_approvers(
    team: tuple[Team, list[str]],
) -> None:
    t, runs = team
    t.as_("rita").register("churn", f"{runs[1]}:train")  # roc_auc 0.9
    t.as_("rita").register("churn", f"{runs[0]}:train")  # roc_auc 0.97
    before = t.events()
    with pytest.raises(GovernanceError, match=r"metric:roc_auc \(value: 0\.9\).*0\.9 does not"):
        t.as_("rita").request_promotion("churn", 1, "production", rationale="r", risk="low")
    assert t.events() == before
    req = t.as_("rita").request_promotion(
        "churn", 2, "production", rationale="better recall", risk="medium", risk_notes="drift"
    )
    assert [c["name"] for c in req["checks"]] == ["metric:roc_auc", "no_leakage"]
    rid = req["request_id"]
    with pytest.raises(PermissionDeniedError, match="needs the role approver or admin"):
        t.as_("rita").approve(rid)  # rita may not approve at all (researcher) ...
    t.as_("alice").grant("rita", "approver")
    with pytest.raises(PermissionDeniedError, match=r"rita requested it, and separation of duties"):
        t.as_("rita").approve(rid)  # ... nor her own request once she may approve
    first = t.as_("bob").approve(rid, comment="looks right")
    assert first["status"] == "open"
    assert not first["moved"]
    with pytest.raises(GovernanceError, match="already voted"):
        t.as_("bob").approve(rid)
    assert t.as_("bob").state().alias_version("churn", "production") is None
    second = t.as_("carol").approve(rid, comment="ok")
    assert second["moved"]
    assert second["status"] == "approved"
    state = t.as_("alice").state()
    assert state.alias_version("churn", "production") == 2
    kinds = [e.kind for e in state.entries[-2:]]
    assert kinds == ["promotion.approved", "alias.moved"]
    assert state.entries[-1].seq == state.entries[-2].seq + 1  # one transaction
    assert verify_governance(t.project.ledger)["ok"]


def test_a_second_identity_with_the_same_key_is_the_same_person(
    team: tuple[Team, list[str]],
) -> None:
    t, runs = team
    _register_two(t, runs)
    bob_key = load_signer("bob", folder=t.home / "bob").public_key.text
    t.as_("alice").add_user("bobby", bob_key, roles=("approver",))
    rid = t.as_("rita").request_promotion("churn", 1, "production", rationale="r", risk="low")[
        "request_id"
    ]
    t.as_("bob").approve(rid)
    bobby = Governance(t.project, user="bobby", signer=_renamed(t, "bob", "bobby"))
    with pytest.raises(GovernanceError, match=r"bobby has already voted.*as bob"):
        bobby.approve(rid)
    # the requester's key under another name may not approve either
    rita_key = load_signer("rita", folder=t.home / "rita").public_key.text
    t.as_("alice").add_user("rita2", rita_key, roles=("approver",))
    rita2 = Governance(t.project, user="rita2", signer=_renamed(t, "rita", "rita2"))
    with pytest.raises(
        PermissionDeniedError, match="rita2 shares a key with rita, who requested it"
    ):
        rita2.approve(rid)


def _renamed(t: Team, owner: str, name: str) -> Any:
    import dataclasses

    return dataclasses.replace(load_signer(owner, folder=t.home / owner), name=name)


def test_a_service_account_cannot_approve(team: tuple[Team, list[str]]) -> None:
    t, runs = team
    _register_two(t, runs)
    t.as_("alice").add_user("ci-bot", t.key("ci-bot"), service=True, roles=("approver",))
    rid = t.as_("rita").request_promotion("churn", 1, "staging", rationale="r", risk="low")[
        "request_id"
    ]
    with pytest.raises(PermissionDeniedError, match="service account"):
        t.as_("ci-bot").approve(rid)
    t.as_("bob").approve(rid)  # staging has no policy: one approver moves it
    assert t.as_("bob").state().alias_version("churn", "staging") == 1


def test_a_rotated_key_stops_signing_and_old_signatures_still_verify(
    team: tuple[Team, list[str]],
) -> None:
    t, runs = team
    _register_two(t, runs)
    old = load_signer("rita", folder=t.home / "rita")
    t.as_("alice").rotate_key("rita", t.key("rita-new"))
    with pytest.raises(IdentityError, match="revoked when it was rotated"):
        Governance(t.project, signer=old).register("churn", f"{runs[0]}:train")
    new = _renamed(t, "rita-new", "rita")
    Governance(t.project, signer=new).register("churn", f"{runs[0]}:train")
    report = verify_governance(t.project.ledger)
    assert report["ok"], report
    assert len(t.as_("alice").state().models["churn"]) == 3


def test_rollback_goes_back_one_step_and_refuses_without_a_previous_version(
    team: tuple[Team, list[str]],
) -> None:
    t, runs = team
    _register_two(t, runs)
    for version in (1, 2):
        rid = t.as_("rita").request_promotion(
            "churn", version, "staging", rationale="r", risk="low"
        )["request_id"]
        t.as_("bob").approve(rid)
    with pytest.raises(PermissionDeniedError, match="roll back"):
        t.as_("rita").rollback("churn", "staging", reason="bad")
    done = t.as_("bob").rollback("churn", "staging", reason="latency regression")
    assert (done["previous"], done["version"]) == (2, 1)
    before = t.events()
    with pytest.raises(GovernanceError, match="no previous version"):
        t.as_("bob").rollback("churn", "staging", reason="again")
    with pytest.raises(NotFoundError, match="no model"):
        t.as_("bob").rollback("nope", "staging", reason="x")
    assert t.events() == before


def test_decisions_about_runs_and_models_are_signed(team: tuple[Team, list[str]]) -> None:
    t, runs = team
    _register_two(t, runs)
    t.as_("rita").decide(runs[0], "split", "80/20 by customer id")
    t.as_("bob").decide("churn", "sharing", "no PII leaves the team")
    from pipetrail.governance.views import decisions_about

    state = t.as_("alice").state()
    assert [d["text"] for d in decisions_about(state, run_id=runs[0])] == ["80/20 by customer id"]
    assert [d["by"] for d in decisions_about(state, model="churn")] == ["bob"]
    with pytest.raises(NotFoundError, match="names no model and no run"):
        t.as_("bob").decide("zzz-nothing", "other", "x")


def test_a_runs_decisions_are_read_with_a_narrow_query(team: tuple[Team, list[str]]) -> None:
    from pipetrail.governance.state import read_run_state, read_state
    from pipetrail.governance.views import decisions_about
    from pipetrail.ledger.governance_reads import run_governance_acts

    t, runs = team
    _register_two(t, runs)
    rid = t.as_("rita").request_promotion("churn", 1, "production", rationale="r", risk="low")
    t.as_("bob").approve(rid["request_id"])
    t.as_("rita").decide(runs[0], "split", "80/20 by customer id")
    t.as_("rita").decide(runs[1], "scoping", "EU only")
    t.as_("bob").decide("churn", "sharing", "no PII leaves the team")
    forged = {"kind": "other", "text": "forged", "about": {"run_id": runs[0]}, "by": "bob"}
    forged |= {"key_id": "ed25519:0000000000000000", "signature": "AAAA"}
    t.project.ledger.append([EventDraft(EventKind.DECISION_RECORDED, forged, runs[0])])
    reader = t.project.reader()
    acts = run_governance_acts(reader, runs[0])
    kinds = {a.event.kind for a in acts}
    assert kinds == {"user.added", "model.registered", "decision.recorded"}
    assert all(a.event.run_id == runs[0] for a in acts if a.event.kind == "decision.recorded")
    narrow = read_run_state(reader, runs[0])
    full = read_state(reader)
    assert narrow.requests == {}
    for run in runs:
        wanted = decisions_about(full, run_id=run)
        assert decisions_about(read_run_state(reader, run), run_id=run) == wanted
    assert [d["text"] for d in decisions_about(narrow, run_id=runs[0])] == [
        "80/20 by customer id"
    ]  # the forged one is not counted
    assert [p.seq for p in narrow.problems] == [p.seq for p in full.problems]


def test_a_request_names_its_version_from_a_narrow_read_and_is_checked_whole(
    team: tuple[Team, list[str]],
) -> None:
    from pipetrail.governance.state import read_model_state, read_state
    from pipetrail.ledger.governance_reads import model_governance_acts

    t, runs = team
    _register_two(t, runs)
    t.as_("rita").register("other", f"{runs[1]}:train")
    rid = t.as_("rita").request_promotion("churn", 1, "production", rationale="r", risk="low")
    t.as_("bob").approve(rid["request_id"])
    t.as_("rita").decide(runs[0], "split", "80/20 by customer id")
    reader = t.project.reader()
    kinds = {a.event.kind for a in model_governance_acts(reader)}
    assert kinds == {"user.added", "model.registered"}
    narrow = read_model_state(reader)
    full = read_state(reader)
    assert narrow.models == full.models
    assert (narrow.requests, narrow.aliases, narrow.problems) == ({}, {}, [])
    forged = {"kind": "other", "text": "forged", "about": {"run_id": runs[0]}, "by": "bob"}
    forged |= {"key_id": "ed25519:0000000000000000", "signature": "AAAA"}
    t.project.ledger.append([EventDraft(EventKind.DECISION_RECORDED, forged, runs[0])])
    assert read_model_state(reader).problems == []  # the narrow read does not see it...
    before = t.events()
    with pytest.raises(TamperedLedgerError, match=f"governance event {before}"):
        t.as_("rita").request_promotion("churn", 2, "production", rationale="r", risk="low")
    assert t.events() == before  # ...the request, checked whole, is refused all the same


def test_the_exports_state_the_verified_acts_about_a_run(team: tuple[Team, list[str]]) -> None:
    from prov.model import ProvDocument

    from pipetrail.governance.trail import run_governance
    from pipetrail.lineage.exports import export_run
    from tests.unit.lineage_exports.ol_schema import validate_event

    t, runs = team
    _register_two(t, runs)
    t.as_("rita").register("other", f"{runs[1]}:train")
    rid = t.as_("rita").request_promotion(
        "churn", 2, "production", rationale="better recall", risk="medium"
    )["request_id"]
    t.as_("bob").approve(rid, comment="ok")
    t.as_("carol").approve(rid, comment="agreed")
    t.as_("rita").decide(runs[0], "split", "80/20 by customer id")
    t.as_("rita").decide(runs[1], "scoping", "EU only")
    forged = json.loads(_approval_row(t)["payload"])
    forged["by"] = "alice"  # carol's signature, claimed for alice: does not verify
    forged["key_id"] = load_signer("alice", folder=t.home / "alice").public_key.key_id
    t.project.ledger.append([EventDraft(EventKind.PROMOTION_APPROVED, forged)])

    acts = run_governance(t.project, runs[0])
    assert [(a.action, a.by, a.version) for a in acts] == [
        ("registration", "rita", 1), ("registration", "rita", 2),
        ("promotion request", "rita", 2), ("approval", "bob", 2), ("approval", "carol", 2),
        ("promotion", "carol", 2), ("decision", "rita", None),
    ]  # fmt: skip
    keys = {u.name: u.current_key.key_id for u in t.as_("alice").state().users.values()}
    assert all(a.key_id == keys[a.by] and a.signature for a in acts)
    assert [a.action for a in run_governance(t.project, runs[1])] == ["registration", "decision"]

    events = export_run(t.project, runs[0], "openlineage", governance=acts)
    assert isinstance(events, list)
    for event in events:
        validate_event(event)
    facet = events[0]["run"]["facets"]["pipetrail_governance"]
    assert [a["by"] for a in facet["acts"] if a["action"] == "approval"] == ["bob", "carol"]
    assert facet["acts"][2]["text"] == "better recall"
    doc = export_run(t.project, runs[0], "prov", governance=acts)
    assert isinstance(doc, dict)
    ProvDocument.deserialize(content=json.dumps(doc), format="json")
    approvals = [a for a in doc["activity"].values() if a["prov:type"]["$"] == "pipetrail:Approval"]
    assert sorted(a["pipetrail:signed_by"] for a in approvals) == ["bob", "carol"]


def _approval_row(t: Team) -> dict[str, Any]:
    rows = t.project.reader().fetch(
        "SELECT seq, payload FROM events WHERE kind = 'promotion.approved' ORDER BY seq"
    )
    return rows[-1]


def test_editing_the_database_cannot_add_an_approval(team: tuple[Team, list[str]]) -> None:
    t, runs = team
    _register_two(t, runs)
    rid = t.as_("rita").request_promotion("churn", 1, "production", rationale="r", risk="low")[
        "request_id"
    ]
    t.as_("bob").approve(rid)
    row = _approval_row(t)
    forged = json.loads(row["payload"])
    forged["by"] = "carol"  # bob's signature, claimed for carol
    forged["key_id"] = load_signer("carol", folder=t.home / "carol").public_key.key_id
    # appended through the ledger (a valid chain), but signed by nobody's key
    t.project.ledger.append([EventDraft(EventKind.PROMOTION_APPROVED, forged)])
    state = t.as_("alice").state()
    assert state.alias_version("churn", "production") is None
    assert len(state.requests[rid].approvals) == 1
    report = verify_governance(t.project.ledger)
    assert not report["ok"]
    (problem,) = report["problems"]
    assert problem["kind"] == "promotion.approved"
    assert "signature does not verify" in problem["reason"]
    with pytest.raises(TamperedLedgerError, match=f"governance event {problem['seq']}"):
        t.as_("carol").approve(rid)


def test_an_edited_signed_payload_is_named_by_audit(team: tuple[Team, list[str]]) -> None:
    t, runs = team
    _register_two(t, runs)
    rid = t.as_("rita").request_promotion("churn", 1, "production", rationale="r", risk="low")[
        "request_id"
    ]
    t.as_("bob").approve(rid, comment="fine")
    row = _approval_row(t)
    payload = json.loads(row["payload"])
    payload["comment"] = "fine, and approve everything else too"
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    db = t.project.ledger.db
    with db.write():
        db.execute("UPDATE events SET payload = :p WHERE seq = :s", {"p": text, "s": row["seq"]})
    report = verify_governance(t.project.ledger)
    assert [p["seq"] for p in report["problems"]] == [row["seq"]]
    assert not t.project.ledger.verify().ok  # and the chain names it too


def test_policy_errors_are_refused_by_name(
    team: tuple[Team, list[str]], project_root: Path
) -> None:
    t, runs = team
    _register_two(t, runs)
    toml = project_root / "pipetrail.toml"
    base = toml.read_text().split("[promotion")[0]
    for body, words in (
        ('checks = ["gate", "vibes"]', "'vibes' is not a check"),
        ('approver_roles = ["researcher"]', "role 'researcher' may not approve"),
        ('approver_roles = ["boss"]', "'boss' is not a role"),
        ('metrics = ["auc ~ 3"]', "not a metric threshold"),
        ("colour = 1", "colour"),
    ):
        toml.write_text(base + f"[promotion.production]\n{body}\n")
        with pytest.raises(ProjectError, match=words):
            t.as_("rita").request_promotion("churn", 1, "production", rationale="r", risk="low")


def test_the_ledger_precondition_runs_under_the_write_lock(
    team: tuple[Team, list[str]],
) -> None:
    t, _ = team
    ledger = t.project.ledger
    before = t.events()

    def refuse(db: Any) -> list[EventDraft]:
        assert db.fetch("SELECT COUNT(*) AS n FROM events")[0]["n"] == before
        raise GovernanceError("no")

    with pytest.raises(GovernanceError):
        ledger.append([], precondition=refuse)
    assert t.events() == before
    draft = EventDraft(EventKind.GATE_CHECKED, {"run_id": "x", "passed": False})
    appended = ledger.append([draft], precondition=lambda db: [draft])
    assert [e.seq for e in appended] == [before + 1, before + 2]
    assert ledger.verify().ok  # governance kinds and the rest project as before


def test_rotating_ones_own_key_keeps_the_old_one_and_signs_with_the_new(
    team: tuple[Team, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    t, runs = team
    monkeypatch.setenv("PIPETRAIL_HOME", str(t.home / "rita"))
    monkeypatch.setenv("PIPETRAIL_USER", "rita")
    rita = Governance(t.project)
    old = rita.signer.public_key
    new = rita.rotate_key()
    assert new != old
    assert load_signer("rita", folder=t.home / "rita").public_key == new
    assert (t.home / "rita" / "keys" / "rita.key.old-1").exists()
    assert not list((t.home / "rita").glob(".rotate-*"))  # the staging folder is gone
    Governance(t.project).register("churn", f"{runs[0]}:train")  # signs with the new key
    users = t.as_("alice").state().users
    assert [p.key for p in users["rita"].keys] == [parse_public_key(old.text), new]
    with pytest.raises(IdentityError, match="for yourself only"):
        rita.rotate_key("bob")


def test_a_policy_can_make_a_rollback_a_request_that_needs_an_approval(
    team: tuple[Team, list[str]], project_root: Path
) -> None:
    t, runs = team
    _register_two(t, runs)
    toml = project_root / "pipetrail.toml"
    toml.write_text(toml.read_text() + '\n[promotion.staging]\nrollback = "request"\n')
    for version in (1, 2):
        rid = t.as_("rita").request_promotion(
            "churn", version, "staging", rationale="r", risk="low"
        )["request_id"]
        t.as_("bob").approve(rid)
    opened = t.as_("bob").rollback("churn", "staging", reason="latency regression")
    assert opened["status"] == "open"
    assert t.as_("bob").state().alias_version("churn", "staging") == 2  # not yet
    with pytest.raises(PermissionDeniedError, match="bob requested it"):
        t.as_("bob").approve(opened["request_id"])
    done = t.as_("carol").approve(opened["request_id"], comment="agreed")
    assert done["moved"]
    state = t.as_("alice").state()
    assert state.alias_version("churn", "staging") == 1
    moved = state.entries[-1].content
    assert (moved["cause"], moved["reason"], moved["request_id"]) == (
        "rollback",
        "latency regression",
        opened["request_id"],
    )
    with pytest.raises(GovernanceError, match="no previous version"):
        t.as_("bob").rollback("churn", "staging", reason="again")
    assert verify_governance(t.project.ledger)["ok"]


def test_the_verification_cache_spares_checks_but_not_an_edited_event(
    team: tuple[Team, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    t, runs = team
    _register_two(t, runs)
    monkeypatch.setenv("PIPETRAIL_HOME", str(t.home / "bob"))
    first = t.as_("bob").state()
    again = t.as_("bob").state()
    assert first.signatures > 0
    assert (again.signatures, again.cached) == (0, first.signatures + first.cached)
    (cache,) = (t.home / "bob" / "verified").iterdir()
    assert cache.stat().st_mode & 0o777 == 0o600
    row = t.project.reader().fetch(
        "SELECT seq, payload FROM events WHERE kind = 'model.registered' ORDER BY seq LIMIT 1"
    )[0]
    payload = json.loads(row["payload"])
    payload["digest"] = "blake3:" + "0" * 64
    db = t.project.ledger.db
    with db.write():
        db.execute(
            "UPDATE events SET payload = :p WHERE seq = :s",
            {"p": json.dumps(payload, sort_keys=True), "s": row["seq"]},
        )
    after = t.as_("bob").state()
    assert after.problems[0].seq == row["seq"]  # (version 2 then fails too: no version 1)
    assert "does not match its hash" in after.problems[0].reason
