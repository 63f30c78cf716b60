"""Approvals from several processes at once: check-then-act holds under the write lock.

Four processes approve one request that needs two people: bob twice, carol and dave.
Whatever order the database serializes them in, exactly two distinct people's approvals
are recorded, the alias moves exactly once, in the transaction of the second, and every
other process is refused with a message saying why.
"""

from __future__ import annotations

import multiprocessing
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.governance.keys import create_key, load_signer
from pipetrail.governance.service import Governance
from pipetrail.governance.verify import verify_governance

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TRAIN = """
from pipetrail import pipeline, step

@step
def train() -> dict:
    return {"roc_auc": 0.99}

@pipeline
def fit_many():
    return train()
"""


def _approve(root: str, home: str, name: str, request_id: str, go: Any, out: Any) -> None:
    project = Project.at(__import__("pathlib").Path(root))
    try:
        gov = Governance(project, signer=load_signer(name, folder=__import__("pathlib").Path(home)))
        project.ledger.db  # noqa: B018 - connect before the start signal
        go.wait(60)
        try:
            out.put((name, "ok", gov.approve(request_id)["status"]))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            out.put((name, type(exc).__name__, str(exc)))
    finally:
        project.close()


def test_concurrent_approvals_count_each_person_once_and_move_the_alias_once(
    metadata_url: str, files: PipelineFiles, project_root: Path
) -> None:
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\nmetadata = "{metadata_url}"\n\n[promotion.production]\napprovals = 2\n'
    )
    homes = project_root.parent / "homes"
    project = Project.at(project_root)
    try:
        run = run_pipeline(files.load("fit_many", TRAIN), {}, project, RunOptions())
        create_key("alice", folder=homes / "alice")
        admin = Governance(project, signer=load_signer("alice", folder=homes / "alice"))
        admin.bootstrap()
        for name in ("rita", "bob", "carol", "dave"):
            key = create_key(name, folder=homes / name).text
            admin.add_user(name, key, roles=("researcher",) if name == "rita" else ("approver",))
        rita = Governance(project, signer=load_signer("rita", folder=homes / "rita"))
        rita.register("churn", f"{run.id}:train")
        rid = rita.request_promotion("churn", 1, "production", rationale="r", risk="low")[
            "request_id"
        ]
    finally:
        project.close()

    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    who = ["bob", "bob", "carol", "dave"]
    procs = [
        ctx.Process(target=_approve, args=(str(project_root), str(homes / n), n, rid, go, out))
        for n in who
    ]
    for proc in procs:
        proc.start()
    go.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    succeeded = [r for r in results if r[1] == "ok"]
    refused = [r for r in results if r[1] != "ok"]
    assert len(succeeded) == 2, results
    assert len({r[0] for r in succeeded}) == 2, results  # two different people
    assert sorted(r[2] for r in succeeded) == ["approved", "open"], results
    assert len(refused) == 2, results
    for _, kind, message in refused:
        assert kind == "GovernanceError", results
        assert "already voted" in message or "takes no approval" in message

    project = Project.at(project_root)
    try:
        gov = Governance(project, signer=load_signer("alice", folder=homes / "alice"))
        state = gov.state()
        assert state.alias_version("churn", "production") == 1
        assert len(state.requests[rid].approvals) == 2
        assert [e.kind for e in state.entries].count("alias.moved") == 1
        assert verify_governance(project.ledger)["ok"]
        assert project.ledger.verify().ok
    finally:
        project.close()
