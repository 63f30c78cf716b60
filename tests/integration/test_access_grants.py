"""Grants to read sensitive content, and the record of every read and refusal, per backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import (
    GovernanceError,
    IdentityError,
    PermissionDeniedError,
    TamperedLedgerError,
)
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.governance.identity import signed_draft
from pipetrail.governance.keys import load_signer
from pipetrail.governance.verify import verify_governance
from pipetrail.ledger.access_reads import access_records
from pipetrail.ledger.events import EventKind
from pipetrail.store import StoredArtifact
from tests.support.team import Team

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PIPELINE = """
import pandas as pd
from pipetrail import pipeline, source, step

@step
def load(path) -> pd.DataFrame:
    return pd.read_csv(path)

@step
def upper(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["name"] = out["name"].str.upper()
    return out

@pipeline
def p():
    return upper(load(source("patients.csv", classification="pii")))
"""


@pytest.fixture
def pii_project(
    metadata_url: str,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Project, str, Callable[[], object]]]:
    """A project on ``metadata_url`` with one run of a pii pipeline (no users yet)."""
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    (project_root / "patients.csv").write_text("name,city\nZebulon,Paris\nOttilie,Lyon\n")
    monkeypatch.setenv("PIPETRAIL_USER", "alice")
    project = Project.at(project_root)
    definition = files.load(unique("pii"), PIPELINE)
    run = run_pipeline(definition, {}, project, RunOptions())
    yield project, run.id, lambda: run_pipeline(definition, {}, project, RunOptions(cache=False))
    project.close()


def _load_output(project: Project) -> StoredArtifact:
    rows = [r for r in access_records(project.reader()) if r.action == "run"]
    artifact = project.reader().artifact(rows[0].digest)
    assert artifact is not None
    return StoredArtifact.from_dict(artifact)


def _fresh(project: Project) -> Project:
    """The same project opened again (a new process would: the gate reads state once)."""
    return Project(project.config, ledger=project.ledger)


def test_without_users_reads_are_allowed_and_recorded_as_the_configured_identity(
    pii_project: tuple[Project, str, Callable[[], object]],
) -> None:
    project, run_id, _ = pii_project
    records = access_records(project.reader())
    # upper consumed load's pii output: one read, by alice, on no governance at all.
    (read,) = records
    assert (read.kind, read.user, read.label, read.action, read.basis) == (
        "access.read",
        "alice",
        "pii",
        "run",
        "ungoverned",
    )
    assert read.run_id == run_id
    # The artifact is named by the digest the ledger records for it: the keyed one.
    artifact = project.reader().artifact(read.digest)
    assert artifact is not None
    assert artifact["meta"]["sealed"]


def test_a_read_needs_the_admin_role_or_an_open_grant(
    pii_project: tuple[Project, str, Callable[[], object]],
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, _, _ = pii_project
    t = Team(project, project_root.parent / "homes")
    t.key("alice")
    t.as_("alice").bootstrap()
    t.as_("alice").add_user("rita", t.key("rita"), roles=("researcher",))
    record = _load_output(project)

    # rita, a researcher without a grant: refused, the refusal recorded, exit code 7's error.
    monkeypatch.setenv("PIPETRAIL_USER", "rita")
    with pytest.raises(PermissionDeniedError) as refused:
        _fresh(project).store_for(record, action="get")
    message = str(refused.value)
    assert record.digest in message
    assert "labelled pii" in message
    assert "pipetrail grant rita --label pii --purpose" in message
    last = access_records(project.reader())[-1]
    assert (last.kind, last.user, last.label, last.digest, last.reason) == (
        "access.refused",
        "rita",
        "pii",
        record.digest,
        "no open grant for pii",
    )

    # alice grants pii to rita for a purpose: rita reads, and the purpose is recorded.
    grant = t.as_("alice").grant_access("rita", "pii", purpose="churn study", until="2999-12-31")
    value = project.registry.load(record, _fresh(project).store_for(record, action="get"))
    assert list(value["name"]) == ["Zebulon", "Ottilie"]
    last = access_records(project.reader())[-1]
    assert (last.kind, last.user, last.purpose, last.basis) == (
        "access.read",
        "rita",
        "churn study",
        f"grant:{grant['grant_id']}",
    )
    # A grant for pii opens pii only.
    assert access_records(project.reader(), label="phi") == []

    # An admin reads by role.
    monkeypatch.setenv("PIPETRAIL_USER", "alice")
    _fresh(project).store_for(record, action="get")
    assert access_records(project.reader())[-1].basis == "role:admin"

    # Revoked: refused again. Someone who is no user at all is refused, and told so.
    t.as_("alice").revoke_access("rita", "pii")
    monkeypatch.setenv("PIPETRAIL_USER", "rita")
    with pytest.raises(PermissionDeniedError, match="may not read artifact"):
        _fresh(project).store_for(record, action="get")
    monkeypatch.setenv("PIPETRAIL_USER", "mallory")
    with pytest.raises(PermissionDeniedError, match=r"mallory \(not a user") as stranger:
        _fresh(project).store_for(record, action="get")
    assert "`pipetrail user add mallory --key PUBLIC_KEY`, then" in str(stranger.value)
    kinds = [r.kind for r in access_records(project.reader())]
    assert kinds[-2:] == ["access.refused", "access.refused"]
    # Grants are signed governance events: the record verifies.
    assert verify_governance(project.ledger)["ok"]


def test_a_run_that_consumes_pii_without_a_grant_fails_and_records_the_refusal(
    pii_project: tuple[Project, str, Callable[[], object]],
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, _, rerun = pii_project
    t = Team(project, project_root.parent / "homes")
    t.key("alice")
    t.as_("alice").bootstrap()
    t.as_("alice").add_user("rita", t.key("rita"), roles=("researcher",))
    monkeypatch.setenv("PIPETRAIL_USER", "rita")
    project._gate = None  # a new identity: as a new process would see it
    with pytest.raises(PermissionDeniedError, match="may not read artifact") as failed:
        rerun()
    assert "pipetrail grant rita --label pii" in str(failed.value)
    last = access_records(project.reader())[-1]
    assert (last.kind, last.user, last.action) == ("access.refused", "rita", "run")
    assert last.run_id is not None


def test_grants_refuse_bad_input_and_record_nothing(
    pii_project: tuple[Project, str, Callable[[], object]], project_root: Path
) -> None:
    project, _, _ = pii_project
    t = Team(project, project_root.parent / "homes")
    t.key("alice")
    t.as_("alice").bootstrap()
    t.as_("alice").add_user("rita", t.key("rita"), roles=("researcher",))
    before = project.reader().event_count()
    alice = t.as_("alice")
    with pytest.raises(IdentityError, match="'bob' is not a user"):
        alice.grant_access("bob", "pii", purpose="x")
    with pytest.raises(GovernanceError, match="not a known label"):
        alice.grant_access("rita", "secret", purpose="x")
    with pytest.raises(GovernanceError, match="not sensitive and needs no grant"):
        alice.grant_access("rita", "internal", purpose="x")
    with pytest.raises(GovernanceError, match="needs a purpose"):
        alice.grant_access("rita", "pii", purpose="  ")
    with pytest.raises(GovernanceError, match="not a date"):
        alice.grant_access("rita", "pii", purpose="x", until="next week")
    with pytest.raises(GovernanceError, match="in the past"):
        alice.grant_access("rita", "pii", purpose="x", until="2001-01-01")
    needs_admin = r"grant access to labels.*needs the role admin"
    with pytest.raises(PermissionDeniedError, match=needs_admin):
        t.as_("rita").grant_access("rita", "pii", purpose="x")
    with pytest.raises(GovernanceError, match="holds no grant for 'pii'"):
        alice.revoke_access("rita", "pii")
    assert project.reader().event_count() == before


def test_a_grant_written_past_the_rules_is_not_counted_and_reads_fail_closed(
    pii_project: tuple[Project, str, Callable[[], object]],
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, _, _ = pii_project
    t = Team(project, project_root.parent / "homes")
    t.key("alice")
    t.as_("alice").bootstrap()
    t.as_("alice").add_user("rita", t.key("rita"), roles=("researcher",))
    record = _load_output(project)
    # rita signs a grant for herself and appends it straight to the ledger, past the
    # service's checks: the fold refuses it (a researcher may not grant), and no read is
    # allowed on a governance record that does not verify.
    forged = {
        "grant_id": "grant-self",
        "user": "rita",
        "label": "pii",
        "purpose": "curiosity",
        "until": None,
    }
    signer = load_signer("rita", folder=t.home / "rita")
    project.ledger.append([signed_draft(EventKind.ACCESS_GRANTED, forged, signer)])
    state = t.as_("alice").state()
    assert "grant-self" not in state.grants
    assert "grant access to labels" in state.problems[0].reason
    monkeypatch.setenv("PIPETRAIL_USER", "rita")
    with pytest.raises(TamperedLedgerError, match="does not verify"):
        _fresh(project).store_for(record, action="get")
    assert [r.user for r in access_records(project.reader())] == ["alice"]
