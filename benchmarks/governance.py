"""Governance commands and the governance part of ``audit verify``, on large ledgers.

Two cached fixtures under benchmarks/.work/governance/ (rebuilt when ``PARAMS`` or the
schema revision change; delete the folder to rebuild):

* ``commands``: a project whose ledger holds 100,000 events: the events of one real run
  of a small training pipeline (its step returns ``roc_auc``), copied with fresh run and
  step-run ids until the ledger holds 100,000 events (so the projections hold ~8,000
  runs), plus 1,000 signed governance events (two users, the model, its versions,
  decisions). Each timed command is a whole ``pipetrail`` process, as a user runs it
  (target <= 0.3 s each): ``user list``, ``model list``, ``model show``, ``model
  history``, ``model register``, ``promote`` (a metric-threshold policy, checks read
  from the run), ``approve`` (which also moves the alias), ``reject``, ``rollback``,
  ``decision add``, ``user grant`` / ``user revoke``, and ``show`` of the models' source
  run (its decisions, verified from the users, registrations and that run's decisions
  alone). Acting commands run as two users with keys in two ``PIPETRAIL_HOME`` folders.
* ``audit``: 1,000,000 events, of which 10,000 are signed governance events, the rest
  copies of the real run's events (they project into the derived tables as real runs
  do). Times ``pipetrail audit verify`` (chain, derived tables and every signature;
  target <= 10 s) and reports its CPU time beside (on a shared machine the wall time is
  mostly waiting; the CPU time counts the second process the command starts on a large
  SQLite ledger), and, for context, the governance fold alone in-process.

The first acting commands of a user fold every signature; the user's verification cache
(``$PIPETRAIL_HOME/verified/``, see ``pipetrail.governance.verified``) then spares the
checks of events already verified, so the timed rounds run after one warm-up command.
``pipetrail runs`` is timed in the same rounds, for context on a busy machine.

Run: ``.venv/bin/python benchmarks/governance.py [--quick] [--part commands|audit]``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import time
from typing import TYPE_CHECKING, Any

from _common import PIPETRAIL, WORK_DIR, Result, bench_env, log, main, run_timed, summarize

from pipetrail.ledger.migrate import HEAD_REVISION

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

TARGET_S = 0.3
AUDIT_TARGET_S = 10.0
PARAMS: dict[str, Any] = {
    "commands": 100_000,
    "audit": 1_000_000,
    "signed_audit": 10_000,
    "signed_commands": 1_000,
    "schema": HEAD_REVISION,
    "shape": 1,
}
ROOT = WORK_DIR / "governance"
PIPELINE = """
from pipetrail import pipeline, step

@step
def prepare(n: int = 50) -> list[int]:
    return list(range(n))

@step
def train(xs: list[int]) -> dict:
    return {"roc_auc": 0.97, "rows": len(xs)}

@pipeline
def fit(n: int = 50):
    return train(prepare(n))
"""
POLICY = '\n[promotion.production]\napprovals = 1\nmetrics = ["roc_auc >= 0.95"]\n'
# Run and step-run ids, and digests: each copy of the run gets its own (so every copy is a
# run of its own in the lineage graph, not 8,000 producers of one artifact).
_ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b|blake3:[0-9a-f]{64}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _id(n: int, salt: int) -> str:
    value = (salt << 64) | n
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def _homes(folder: Path) -> dict[str, Path]:
    return {"alice": folder / "home-alice", "bob": folder / "home-bob"}


def _env(folder: Path, who: str) -> dict[str, str]:
    env = bench_env()
    env.update(PIPETRAIL_USER=who, PIPETRAIL_HOME=str(_homes(folder)[who]))
    return env


def _build(folder: Path, total: int, signed: int) -> None:
    """A project with one real run copied to ``total`` events, ``signed`` of them governance."""
    from pipetrail.execution.loader import load_pipeline
    from pipetrail.execution.project import Project
    from pipetrail.execution.runner import RunOptions, run_pipeline
    from pipetrail.governance.identity import signed_draft
    from pipetrail.governance.keys import create_key, load_signer
    from pipetrail.governance.service import Governance
    from pipetrail.ledger.events import EventDraft, EventKind

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "pipetrail.toml").write_text("[pipetrail]\n" + POLICY)
    (folder / "fit.py").write_text(PIPELINE)
    homes = _homes(folder)
    for name, home in homes.items():
        create_key(name, folder=home)
    project = Project.at(folder)
    try:
        definition, _ = load_pipeline(str(folder / "fit.py"))
        run = run_pipeline(definition, {}, project, RunOptions())
        template = [(e.kind, e.run_id, e.payload_text) for e in project.ledger.iter_events()]
        alice = Governance(project, signer=load_signer("alice", folder=homes["alice"]))
        alice.bootstrap()
        bob_key = load_signer("bob", folder=homes["bob"]).public_key.text
        alice.add_user("bob", bob_key, roles=("approver", "researcher"))
        alice.register("churn", f"{run.id}:train")
        signer = load_signer("alice", folder=homes["alice"])
        governance = signed - 3  # bootstrap, add_user and register are signed too
        copies = (total - signed) // len(template) - 1
        ledger = project.ledger
        batch: list[EventDraft] = []
        start = time.perf_counter()
        every = max(1, copies // max(1, governance))
        made = 0
        for copy in range(copies):
            ids: dict[str, str] = {}

            def fresh(match: re.Match[str], copy: int = copy, ids: dict[str, str] = ids) -> str:
                key = match.group(0)
                if key not in ids:
                    n = _id(len(ids), copy + 1)
                    digest = f"blake3:{copy + 1:032x}{len(ids):032x}"
                    ids[key] = digest if key.startswith("blake3:") else n
                return ids[key]

            for kind, run_id, text in template:
                payload = json.loads(_ULID.sub(fresh, text))
                new_run = _ULID.sub(fresh, run_id) if run_id else None
                batch.append(EventDraft(EventKind(kind), payload, new_run))
            if copy % every == 0 and made < governance:
                content = {"kind": "other", "text": f"note {made}", "about": {"model": "churn"}}
                batch.append(signed_draft(EventKind.DECISION_RECORDED, content, signer))
                made += 1
            if len(batch) >= 20_000:
                ledger.append(batch)
                batch.clear()
                done = ledger.reader().event_count()
                log(f"  {done:,} events ({time.perf_counter() - start:.0f} s)")
        while made < governance:
            content = {"kind": "other", "text": f"note {made}", "about": {"model": "churn"}}
            batch.append(signed_draft(EventKind.DECISION_RECORDED, content, signer))
            made += 1
        ledger.append(batch)
        rest = total - ledger.reader().event_count()
        fill = [
            EventDraft(
                EventKind.GATE_CHECKED, {"run_id": run.id, "passed": True, "failures": []}, run.id
            )
        ] * max(0, rest)
        for at in range(0, len(fill), 20_000):
            ledger.append(fill[at : at + 20_000])
    finally:
        project.close()
    (folder / "params.json").write_text(json.dumps({**PARAMS, "total": total}))


def _fixture(name: str, total: int, signed: int) -> Path:
    folder = ROOT / name
    marker = folder / "params.json"
    if not marker.exists() or json.loads(marker.read_text()) != {**PARAMS, "total": total}:
        log(f"governance: building the {name} fixture ({total:,} events, {signed:,} signed)")
        _build(folder, total, signed)
    return folder


def _copy(folder: Path) -> Path:
    """A scratch copy of a fixture (acting commands append to it)."""
    scratch = folder.with_name(folder.name + "-scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(folder, scratch)
    return scratch


def _commands(quick: bool) -> list[Result]:
    reps = 3 if quick else 7
    folder = _copy(_fixture("commands", PARAMS["commands"], PARAMS["signed_commands"]))
    a, b = _env(folder, "alice"), _env(folder, "bob")

    def pt(env: dict[str, str], *args: str) -> tuple[float, str]:
        return run_timed([PIPETRAIL, *args], cwd=folder, env=env)

    def request(version: int, alias: str = "production") -> tuple[float, str]:
        seconds, out = pt(a, "promote", f"churn:{version}", "--to", alias, "--rationale", "r",
                          "--risk", "low", "--json")  # fmt: skip
        return seconds, str(json.loads(out)["request_id"])

    first = json.loads(pt(a, "model", "show", "churn:1", "--json")[1])
    source = f"{first['run_id']}:train"  # the real run (its output is in the store)
    times: dict[str, list[float]] = {}

    def timed(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    pt(b, "approve", request(1)[1])  # production -> 1: each round moves it and rolls back
    pt(a, "model", "list")  # warm-up: fills alice's verification cache (bob's: approve)
    for i in range(reps):
        version = 2 + i
        timed("runs", pt(a, "runs")[0])  # context: a read-only command of the same ledger
        timed("user list", pt(a, "user", "list")[0])
        timed("model list", pt(a, "model", "list")[0])
        timed("model show", pt(a, "model", "show", "churn:1")[0])
        timed("model history", pt(a, "model", "history", "churn")[0])
        timed("show", pt(a, "show", first["run_id"])[0])  # the run's decisions: a narrow read
        timed("model register", pt(a, "model", "register", "churn", "--from", source)[0])
        seconds, req = request(version)
        timed("promote", seconds)
        timed("approve", pt(b, "approve", req, "--comment", "ok")[0])
        timed("rollback", pt(b, "rollback", "churn", "--alias", "production", "--reason", "x")[0])
        timed("reject", pt(b, "reject", request(version, "staging")[1], "--comment", "no")[0])
        timed("decision add", pt(a, "decision", "add", "--about", "churn", "--kind", "split",
                                 "80/20")[0])  # fmt: skip
        timed("user grant", pt(a, "user", "grant", "bob", "admin")[0])
        timed("user revoke", pt(a, "user", "revoke", "bob", "admin")[0])
    shutil.rmtree(folder, ignore_errors=True)
    return [
        summarize(
            f"governance.{name.replace(' ', '_')}",
            f"`pipetrail {name}`, 100k events" + (" (context)" if name == "runs" else ""),
            samples,
            "s",
            at_most=None if name == "runs" else TARGET_S,
        )
        for name, samples in times.items()
    ]


def _audit(quick: bool) -> list[Result]:
    reps = 1 if quick else 3
    folder = _fixture("audit", PARAMS["audit"], PARAMS["signed_audit"])
    env = _env(folder, "alice")
    samples = []
    cpu = []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds, out = run_timed([PIPETRAIL, "audit", "verify"], cwd=folder, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if "governance intact" not in out:
            raise RuntimeError(f"audit verify did not verify the signatures: {out}")
        samples.append(seconds)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    from pipetrail.execution.project import Project
    from pipetrail.governance.verify import verify_governance

    fold = []
    project = Project.at(folder)
    try:
        for _ in range(reps):
            start = time.perf_counter()
            report = verify_governance(project.ledger)
            fold.append(time.perf_counter() - start)
        if report["signatures"] < PARAMS["signed_audit"]:
            raise RuntimeError(f"only {report['signatures']} signatures verified")
    finally:
        project.close()
    return [
        summarize(
            "governance.audit_verify",
            "`pipetrail audit verify`, 1M events, 10k signed",
            samples,
            "s",
            at_most=AUDIT_TARGET_S,
        ),
        summarize(
            "governance.audit_verify_cpu",
            "the same command's CPU time (user + sys, its second process included)",
            cpu,
            "s",
        ),
        summarize(
            "governance.fold", "governance fold + 10k signature checks (in-process)", fold, "s"
        ),
    ]


def run(quick: bool, part: str = "all") -> list[Result]:
    os.environ.pop("PIPETRAIL_METADATA", None)
    results = _commands(quick) if part in ("all", "commands") else []
    return results + (_audit(quick) if part in ("all", "audit") else [])


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--part", choices=["all", "commands", "audit"], default="all")


if __name__ == "__main__":
    raise SystemExit(main(run, __doc__.splitlines()[0], _options))
