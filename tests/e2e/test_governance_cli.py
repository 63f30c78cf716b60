"""The governed promotion story through the CLI, with two people (two key folders).

alice makes the project (its first admin) and trains; bob makes a key and alice adds him
as approver. alice registers the model and asks for production under a metric threshold
policy; she may not approve her own request; bob approves and the alias moves; a second
version goes the same way and is rolled back; the history shows it all, and a signature
edited in the database is named by ``audit verify``.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.cli import cli_as as cli
from tests.support.cli import ok

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pipetrail import pipeline, step

@step
def train(auc: float = 0.97) -> dict:
    return {"roc_auc": auc}

@pipeline
def fit(auc: float = 0.97):
    return train(auc)
"""

POLICY = """
[promotion.production]
approvals = 1
metrics = ["roc_auc >= 0.95"]
checks = ["no_leakage"]
"""


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def test_register_promote_approve_roll_back_and_audit(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    assert "first admin" in ok(cli(root, "alice", "init"))
    (root / "pipetrail.toml").write_text((root / "pipetrail.toml").read_text() + POLICY)
    (root / "fit.py").write_text(textwrap.dedent(PIPELINE))
    bob_key = ok(cli(root, "bob", "user", "key", "create")).strip()
    assert bob_key.startswith("ed25519:")
    ok(cli(root, "alice", "user", "add", "bob", "--key", bob_key, "--role", "approver"))
    assert {u["name"]: u["roles"] for u in as_json(cli(root, "bob", "user", "list", "--json"))} == {
        "alice": ["admin"],
        "bob": ["approver"],
    }
    denied = cli(root, "bob", "user", "grant", "bob", "admin")
    assert denied.returncode == 7
    assert "needs the role admin" in denied.stderr

    runs = []
    for auc in ("0.9", "0.97", "0.98"):
        runs.append(as_json(cli(root, "alice", "run", "fit.py", "-p", f"auc={auc}", "--json")))
    for run in runs:
        ok(cli(root, "alice", "model", "register", "churn", "--from", f"{run['run_id']}:train"))

    low = cli(root, "alice", "promote", "churn:1", "--to", "production", "--rationale", "x",
              "--risk", "low")  # fmt: skip
    assert low.returncode == 7
    assert "metric:roc_auc (value: 0.9)" in low.stderr
    assert "nothing was recorded" in low.stderr

    def promote(version: int) -> str:
        data = as_json(
            cli(root, "alice", "promote", f"churn:{version}", "--to", "production",
                "--rationale", "better recall", "--risk", "medium", "--risk-notes",
                "new features", "--json")
        )  # fmt: skip
        return str(data["request_id"])

    first = promote(2)
    own = cli(root, "alice", "approve", first, "--comment", "mine")
    assert own.returncode == 7
    assert "separation of duties" in own.stderr
    assert "now points at version 2" in ok(cli(root, "bob", "approve", first, "--comment", "ok"))
    again = cli(root, "bob", "approve", first)
    assert again.returncode == 7
    assert "takes no approval" in again.stderr
    second = promote(3)
    ok(cli(root, "bob", "approve", second, "--comment", "ok"))
    assert as_json(cli(root, "alice", "model", "list", "--json"))[0]["aliases"] == {"production": 3}

    ok(cli(root, "bob", "rollback", "churn", "--alias", "production", "--reason", "latency"))
    assert as_json(cli(root, "alice", "model", "list", "--json"))[0]["aliases"] == {"production": 2}
    none_left = cli(root, "bob", "rollback", "churn", "--alias", "production", "--reason", "x")
    assert none_left.returncode == 7
    assert "no previous version" in none_left.stderr
    ok(cli(root, "alice", "decision", "add", "--about", "churn", "--kind", "split", "80/20"))
    source = runs[1]["run_id"]
    ok(cli(root, "alice", "decision", "add", "--about", source, "--kind", "scoping", "EU only"))
    shown_run = as_json(cli(root, "bob", "show", source, "--json"))
    assert [(d["kind"], d["text"], d["by"]) for d in shown_run["decisions"]] == [
        ("scoping", "EU only", "alice")
    ]
    assert "decision (scoping) by alice" in ok(cli(root, "bob", "show", source))
    prov = as_json(cli(root, "bob", "export", source, "--format", "prov"))
    acts = sorted(
        (a["prov:type"]["$"], a["pipetrail:signed_by"])
        for key, a in prov["activity"].items()
        if key.startswith("pipetrail:governance-")
    )
    assert ("pipetrail:Approval", "bob") in acts
    assert ("pipetrail:Rollback", "bob") in acts
    assert ("pipetrail:Decision", "alice") in acts
    lines = ok(cli(root, "bob", "export", source, "--format", "openlineage")).splitlines()
    facet = json.loads(lines[0])["run"]["facets"]["pipetrail_governance"]
    assert {a["action"] for a in facet["acts"]} >= {"promotion request", "approval", "rollback"}

    history = as_json(cli(root, "bob", "model", "history", "churn", "--json"))
    events = [(h["event"], h["by"]) for h in history]
    assert events.count(("promotion.requested", "alice")) == 2
    assert events.count(("promotion.approved", "bob")) == 2
    assert [h.get("cause") for h in history if h["event"] == "alias.moved"] == [
        "promotion", "promotion", "rollback",
    ]  # fmt: skip
    assert all(h["signature"] == "verified" for h in history)
    request = next(h for h in history if h["event"] == "promotion.requested")
    assert request["rationale"] == "better recall"
    assert request["risk"] == "medium"
    assert request["checks"][0]["value"] == 0.97
    text = ok(cli(root, "bob", "model", "history", "churn"))
    assert "rolled production back from 3 to 2: latency" in text
    assert f"bob: moved production to 2 ({first})" in text  # pointed nowhere before
    assert f"bob: moved production from 2 to 3 ({second})" in text
    shown = as_json(cli(root, "bob", "model", "show", "churn:2", "--json"))
    assert shown["aliases"] == ["production"]
    assert shown["source_run"]["metrics"] == {"train.roc_auc": 0.97}
    assert [d["text"] for d in shown["decisions"]] == ["80/20", "EU only"]

    audit = ok(cli(root, "bob", "audit", "verify"))
    assert "governance intact: " in audit

    # Edit bob's first approval in the database: the chain names the row ...
    ledger = root / ".pipetrail" / "ledger.db"
    seq = _forge_signature(ledger, rehash=False)
    tampered = cli(root, "bob", "audit", "verify")
    assert tampered.returncode == 3
    assert f"sequence {seq}" in tampered.stderr
    history_now = cli(root, "bob", "model", "history", "churn")
    assert history_now.returncode == 0, history_now.stderr  # still readable, marked
    assert f"#{seq}" in history_now.stdout
    assert "NOT VERIFIED" in history_now.stdout
    blocked = cli(root, "bob", "rollback", "churn", "--alias", "production", "--reason", "x")
    assert blocked.returncode == 3
    assert f"governance event {seq}" in blocked.stderr

    # ... and one who also re-hashes the chain after it is caught by the signature.
    _forge_signature(ledger, rehash=True)
    forged = cli(root, "bob", "audit", "verify")
    assert forged.returncode == 3, forged.stdout
    assert f"governance event {seq} (promotion.approved)" in forged.stderr
    assert "signature does not verify" in forged.stderr


def _forge_signature(path: Path, *, rehash: bool) -> int:
    """Alter the first approval's signature; with ``rehash``, re-chain every event after."""
    from pipetrail.ledger.events import event_hash

    db = sqlite3.connect(path)
    seq, payload = db.execute(
        "SELECT seq, payload FROM events WHERE kind = 'promotion.approved' ORDER BY seq LIMIT 1"
    ).fetchone()
    edited = json.loads(payload)
    edited["comment"] = "approved, and everything after it too"
    text = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    db.execute("UPDATE events SET payload = ? WHERE seq = ?", (text, seq))
    if rehash:
        prev = db.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()[0]
        rows = db.execute(
            "SELECT seq, ts, actor, kind, run_id, payload FROM events WHERE seq >= ? ORDER BY seq",
            (seq,),
        ).fetchall()
        for n, ts, actor, kind, run_id, body in rows:
            digest = event_hash(
                seq=n, ts=ts, actor=actor, kind=kind, run_id=run_id, payload_text=body,
                prev_hash=prev,
            )  # fmt: skip
            db.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, n))
            prev = digest
        db.execute("UPDATE ledger_head SET hash = ? WHERE id = 1", (prev,))
    db.commit()
    db.close()
    return int(seq)
