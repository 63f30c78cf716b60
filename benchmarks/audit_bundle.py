"""Offline audit bundles: writing and verifying the bundle of a model with 10,000 events.

The fixture (built once into benchmarks/.work/audit_bundle/, rebuilt when ``PARAMS``
change): a project whose first admin ran a small training pipeline, then ``EVENTS``
``source.observed`` events of that run (the run read that many files), then 100,000
events of other runs (so the ledger is larger than the bundle, as it always is), and the
model registered from the first run and promoted with one approval. The model's bundle
then holds about 10,000 events with their inclusion proofs.

Timed, each a whole ``pipetrail`` process: ``audit bundle churn -o FILE`` (target <= 2 s:
the checkpoint, the scope's events, 10,000 inclusion proofs from stored nodes, the signed
attestation and exports, the archive), and ``audit verify-bundle FILE --key ...`` in an
empty folder (target <= 2 s: every digest, hash, link, proof and signature).

Run: ``.venv/bin/python benchmarks/audit_bundle.py [--quick]``. The timed commands run
``python -m pipetrail.cli.main`` with this process's environment, so ``PYTHONPATH=src``
(set before running) measures a checkout's own code rather than the installed one.
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import TYPE_CHECKING, Any

from _common import PYTHON, WORK_DIR, Result, bench_env, log, main, run_timed, summarize

if TYPE_CHECKING:
    from pathlib import Path

PARAMS: dict[str, Any] = {"events": 10_000, "others": 100_000, "shape": 1}
TARGET_S = 2.0
CLI = [PYTHON, "-m", "pipetrail.cli.main"]
ROOT = WORK_DIR / "audit_bundle"
PIPELINE = """
from pipetrail import pipeline, step

@step
def train(auc: float = 0.97) -> dict:
    return {"roc_auc": auc}

@pipeline
def fit(auc: float = 0.97):
    return train(auc)
"""


def _source(run_id: str, i: int) -> Any:
    from pipetrail.ledger import EventDraft, EventKind

    return EventDraft(
        EventKind.SOURCE_OBSERVED,
        {
            "run_id": run_id,
            "path": f"data/{i}.csv",
            "digest": "blake3:" + f"{i:064x}",
            "size": i,
            "mtime_ns": i,
            "observed_at": "2026-01-01T00:00:00.000000Z",
        },
        run_id=run_id,
    )


def _build() -> tuple[Path, str]:
    """The project (cached) and alice's public key."""
    folder = ROOT / "project"
    stamp = ROOT / "params.json"
    if stamp.exists() and json.loads(stamp.read_text()) == PARAMS:
        return folder, (ROOT / "alice.pub").read_text().strip()
    from pipetrail.execution.loader import load_pipeline
    from pipetrail.execution.project import Project
    from pipetrail.execution.runner import RunOptions, run_pipeline
    from pipetrail.governance.keys import create_key, load_signer
    from pipetrail.governance.service import Governance

    log("audit_bundle: building the fixture (once)...")
    shutil.rmtree(ROOT, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "pipetrail.toml").write_text("[pipetrail]\n")
    (folder / "fit.py").write_text(PIPELINE)
    homes = {name: ROOT / f"home-{name}" for name in ("alice", "bob")}
    for name, home in homes.items():
        create_key(name, folder=home)
    project = Project.at(folder)
    try:
        definition, _ = load_pipeline(str(folder / "fit.py"))
        run = run_pipeline(definition, {}, project, RunOptions()).id
        ledger = project.ledger
        for start in range(0, PARAMS["events"], 5000):
            ledger.append([_source(run, i) for i in range(start, start + 5000)])
        for start in range(0, PARAMS["others"], 10_000):
            other = f"R{start:025d}"
            ledger.append([_source(other, i) for i in range(start, start + 10_000)])
        alice = Governance(project, signer=load_signer("alice", folder=homes["alice"]))
        bob = Governance(project, signer=load_signer("bob", folder=homes["bob"]))
        alice.bootstrap()
        alice.add_user("bob", bob.signer.public_key.text, roles=("approver",))
        alice.register("churn", f"{run}:train")
        request = alice.request_promotion("churn", 1, "production", rationale="r", risk="low")
        bob.approve(request["request_id"], comment="ok")
        (ROOT / "alice.pub").write_text(alice.signer.public_key.text + "\n")
    finally:
        project.close()
    stamp.write_text(json.dumps(PARAMS))
    return folder, (ROOT / "alice.pub").read_text().strip()


def run(quick: bool) -> list[Result]:
    """Write and verify the model's bundle, as whole processes."""
    folder, key = _build()
    env = bench_env()
    env.update(PIPETRAIL_USER="alice", PIPETRAIL_HOME=str(ROOT / "home-alice"))
    auditor = ROOT / "auditor"
    auditor.mkdir(exist_ok=True)
    out = ROOT / "churn.tar"
    written: list[float] = []
    verified: list[float] = []
    events = 0
    for _ in range(3 if quick else 7):
        seconds, text = run_timed([*CLI, "audit", "bundle", "churn", "-o", str(out),
                                   "--json"], cwd=folder, env=env)  # fmt: skip
        events = json.loads(text)["events"]
        written.append(seconds)
        seconds, text = run_timed([*CLI, "audit", "verify-bundle", str(out), "--key",
                                   f"alice={key}", "--json"], cwd=auditor, env=env)  # fmt: skip
        report = json.loads(text)
        if not report["ok"] or report["proofs"] != events:
            raise RuntimeError(f"the bundle does not verify: {text[:500]}")
        verified.append(seconds)
    label = f"model bundle, {events:,} events"
    return [
        summarize("audit_bundle.write", f"`pipetrail audit bundle`, {label}", written, "s",
                  at_most=TARGET_S),
        summarize("audit_bundle.verify", f"`pipetrail audit verify-bundle`, {label}",
                  verified, "s", at_most=TARGET_S),
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
