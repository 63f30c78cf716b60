"""Offline audit bundles on each metadata backend: written, verified, and tampered with.

A team (alice admin, rita researcher, bob approver) runs a pipeline twice, registers two
models and promotes one. The bundle of a model holds its runs' events and its
governance events, not the other model's; every kind of element is then changed in a
copy of the bundle and the verdict must name that element.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import IntegrityError, NotFoundError, ParamError
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.governance.bundle_check import verify_bundle
from pipetrail.governance.checkpoint import Checkpoint, sign_checkpoint
from pipetrail.governance.dsse import sign_envelope
from pipetrail.ledger.events import event_hash
from pipetrail.verify.bundle import Scope, parse_scope, write_bundle
from tests.support.bundles import Members, read_members, write_members
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


def build_team(url: str, files: PipelineFiles, root: Path) -> tuple[Team, list[str]]:
    (root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{url}"\n')
    project = Project.at(root)
    fit = files.load(f"fit_{abs(hash(str(root))) % 10**8}", TRAIN)
    runs = [run_pipeline(fit, {"auc": auc}, project, RunOptions()).id for auc in (0.97, 0.96)]
    t = Team(project, root.parent / "homes")
    t.signer("alice")
    t.as_("alice").bootstrap()
    for name, roles in (("rita", ("researcher",)), ("bob", ("approver",))):
        t.as_("alice").add_user(name, t.signer(name).public_key.text, roles=roles)
    t.as_("rita").register("churn", f"{runs[0]}:train")
    t.as_("rita").register("other", f"{runs[1]}:train")
    rid = t.as_("rita").request_promotion("churn", 1, "staging", rationale="r", risk="low")
    t.as_("bob").approve(rid["request_id"], comment="fine")
    t.as_("alice").decide("churn", "scoping", "EU only")
    return t, runs


@pytest.fixture
def team(metadata_url: str, files: PipelineFiles, project_root: Path) -> Iterator[Any]:
    t, runs = build_team(metadata_url, files, project_root)
    yield t, runs
    t.project.close()


def kinds(bundle: Path) -> list[tuple[str, str | None]]:
    with tarfile.open(bundle) as archive:
        stream = archive.extractfile("events.jsonl")
        assert stream is not None
        lines = stream.read().splitlines()
    return [(e["kind"], e["run_id"]) for e in map(json.loads, lines)]


def test_a_model_bundle_holds_its_runs_and_governance_and_verifies(
    team: Any, tmp_path: Path
) -> None:
    t, runs = team
    out = tmp_path / "churn.tar"
    made = write_bundle(t.project, Scope("model", "churn"), out, t.signer("alice"), exports=True)
    assert made.runs == (runs[0],)
    found = kinds(out)
    assert {run for _, run in found if run} == {runs[0]}  # not the other model's run
    governance = [
        k for k, _ in found if not k.startswith(("run.", "step.", "artifact.", "source."))
    ]
    assert governance.count("model.registered") == 1  # churn's, not other's
    assert {"user.added", "promotion.requested", "promotion.approved", "decision.recorded"} <= set(
        governance
    )
    report = verify_bundle(out, [t.pinned("alice")])
    assert report.ok, report.problems
    assert report.events == report.proofs == len(found)
    assert report.signatures == len(governance)
    assert report.attestations == 1
    assert report.keys_from == "--key"
    with tarfile.open(out) as archive:
        names = archive.getnames()
        report_md = archive.extractfile("report.md")
        report_html = archive.extractfile("report.html")
        assert report_md is not None
        assert report_html is not None
        text = report_md.read().decode()
        page = report_html.read().decode()
    assert f"exports/{runs[0]}.prov.json" in names
    assert f"exports/{runs[0]}.openlineage.json" in names
    assert "promotion.approved | bob" in text
    assert "<td>promotion.approved</td><td>bob</td>" in page  # who approved it
    assert "<td>decision.recorded</td><td>alice</td>" in page


def test_a_run_bundle_and_a_version_bundle(team: Any, tmp_path: Path) -> None:
    t, runs = team
    out = tmp_path / "run.tar"
    made = write_bundle(t.project, Scope("run", runs[1][:10]), out, t.signer("rita"))
    assert made.scope.name == runs[1]  # the prefix resolved
    assert ("model.registered", None) in kinds(out)  # "other" was registered from it
    assert verify_bundle(out).ok  # the bundle's own keys
    models = {"churn", "other"}
    assert parse_scope("churn@1", models) == Scope("model", "churn", 1)
    assert parse_scope("churn:1", models) == Scope("model", "churn", 1)
    assert parse_scope(runs[0], models) == Scope("run", runs[0])
    with pytest.raises(NotFoundError, match="no model 'nope'"):
        parse_scope("nope@1", models)
    with pytest.raises(NotFoundError, match="a number from 1"):
        parse_scope("churn@x", models)
    version = tmp_path / "v1.tar"
    write_bundle(t.project, Scope("model", "churn", 1), version, t.signer("alice"))
    assert verify_bundle(version, [t.pinned("alice")]).ok


# -- tampering: one fixture bundle (SQLite), then an edited copy per test -------------------
@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Team]]:
    import sys

    from tests.integration.conftest import PipelineFiles

    root = tmp_path_factory.mktemp("bundle") / "project"
    root.mkdir()
    sys.path.insert(0, str(root))
    helper = PipelineFiles(root)
    t, _ = build_team(f"sqlite:///{root / 'ledger.db'}", helper, root)
    out = root.parent / "churn.tar"
    write_bundle(t.project, Scope("model", "churn"), out, t.signer("alice"))
    yield out, t
    t.project.close()
    helper.cleanup()
    sys.path.remove(str(root))


def events_of(members: Members) -> list[dict[str, Any]]:
    return [json.loads(line) for line in members["events.jsonl"].splitlines()]


def set_events(members: Members, events: list[dict[str, Any]]) -> None:
    members["events.jsonl"] = b"".join(
        json.dumps(e, sort_keys=True).encode() + b"\n" for e in events
    )


def rehash(ev: dict[str, Any]) -> None:
    ev["hash"] = event_hash(
        seq=ev["seq"], ts=ev["ts"], actor=ev["actor"], kind=ev["kind"], run_id=ev["run_id"],
        payload_text=ev["payload"], prev_hash=ev["prev_hash"],
    )  # fmt: skip


def verdict(made: tuple[Path, Team], edit: Callable[[Members], None], tmp_path: Path) -> list[str]:
    bundle, t = made
    members = read_members(bundle)
    edit(members)
    report = verify_bundle(write_members(members, tmp_path / "edited.tar"), [t.pinned("alice")])
    assert not report.ok
    return [str(p) for p in report.problems]


def test_an_edited_event_is_named(made: Any, tmp_path: Path) -> None:
    def edit(m: Members) -> None:
        events = events_of(m)
        events[3]["payload"] = events[3]["payload"].replace('"', "'", 1)
        set_events(m, events)

    seq = events_of(read_members(made[0]))[3]["seq"]
    problems = verdict(made, edit, tmp_path)
    assert any(p.startswith(f"event {seq} (") and "does not match its hash" in p for p in problems)
    assert (
        "events.jsonl: its SHA-256 differs from the manifest's: the member was changed" in problems
    )


def test_an_event_rewritten_with_its_hash_recomputed_fails_its_proof_and_the_link(
    made: Any, tmp_path: Path
) -> None:
    events = events_of(read_members(made[0]))
    victim = next(i for i, e in enumerate(events) if events[i + 1]["seq"] == e["seq"] + 1)
    seq = events[victim]["seq"]

    def edit(m: Members) -> None:
        evs = events_of(m)
        evs[victim]["ts"] = "2000-01-01T00:00:00.000000Z"
        rehash(evs[victim])
        set_events(m, evs)

    problems = verdict(made, edit, tmp_path)
    assert any(p.startswith(f"proof of event {seq}: it does not lead") for p in problems)
    assert any(
        p.startswith(f"event {seq + 1} (") and f"not the hash of event {seq}" in p for p in problems
    )
    assert not any("does not match its hash" in p for p in problems)


def test_an_edited_proof_is_named(made: Any, tmp_path: Path) -> None:
    def edit(m: Members) -> None:
        proofs = [json.loads(line) for line in m["proofs.jsonl"].splitlines()]
        proofs[0]["path"][0] = "00" * 32
        m["proofs.jsonl"] = b"".join(json.dumps(p).encode() + b"\n" for p in proofs)

    first = events_of(read_members(made[0]))[0]["seq"]
    problems = verdict(made, edit, tmp_path)
    assert f"proof of event {first}" in {p.split(":")[0] for p in problems}


def test_an_edited_checkpoint_is_named(made: Any, tmp_path: Path) -> None:
    def edit(m: Members) -> None:
        lines = m["checkpoint.note"].decode().split("\n")
        lines[1] = str(int(lines[1]) + 1)
        m["checkpoint.note"] = "\n".join(lines).encode()

    problems = verdict(made, edit, tmp_path)
    assert any(
        p.startswith("checkpoint: the signature by 'alice' does not verify") for p in problems
    )


def test_a_forged_governance_signature_is_named(made: Any, tmp_path: Path) -> None:
    events = events_of(read_members(made[0]))
    at = next(i for i, e in enumerate(events) if e["kind"] == "promotion.approved")

    def edit(m: Members) -> None:
        evs = events_of(m)
        payload = json.loads(evs[at]["payload"])
        payload["comment"] = "approved without reading"
        evs[at]["payload"] = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        rehash(evs[at])
        set_events(m, evs)

    problems = verdict(made, edit, tmp_path)
    seq = events[at]["seq"]
    assert (
        f"governance event {seq} (promotion.approved): the signature by bob does not verify: "
        "the event was changed or forged" in problems
    )


def test_an_edited_manifest_an_added_and_a_missing_member_are_named(
    made: Any, tmp_path: Path
) -> None:
    def edit(m: Members) -> None:
        manifest = json.loads(m["manifest.json"])
        manifest["scope"]["name"] = "innocent"
        m["manifest.json"] = json.dumps(manifest).encode()
        m["extra.txt"] = b"hello"
        del m["proofs.jsonl"]

    problems = verdict(made, edit, tmp_path)
    assert "manifest: its signed copy differs from manifest.json: it was changed" in problems
    assert "extra.txt: not listed in the manifest: a member was added" in problems
    assert "proofs.jsonl: listed in the manifest but missing from the archive" in problems


def test_an_edited_attestation_is_named(made: Any, tmp_path: Path) -> None:
    def edit(m: Members) -> None:
        name = next(n for n in m if n.startswith("attestations/"))
        envelope = json.loads(m[name])
        envelope["payload"] = envelope["payload"][:-8] + "AAAAAAA="
        m[name] = json.dumps(envelope).encode()

    problems = verdict(made, edit, tmp_path)
    assert any(
        p.startswith("attestations/") and "does not verify: the payload was changed" in p
        for p in problems
    )


def test_a_bundle_re_signed_by_another_key_fails_against_the_pinned_key(
    made: Any, tmp_path: Path
) -> None:
    _, t = made
    mallory = t.signer("mallory")

    def edit(m: Members) -> None:
        text = m["checkpoint.note"].decode()
        lines = text.split("\n")
        cp = Checkpoint(lines[0], int(lines[1]), base64.b64decode(lines[2]),
                        lines[3].removeprefix("time "))  # fmt: skip
        m["checkpoint.note"] = sign_checkpoint(cp, mallory).encode()
        m["keys"] += f"mallory {mallory.public_key.text}\n".encode()
        manifest = json.loads(m["manifest.json"])
        for name in ("checkpoint.note", "keys"):
            manifest["members"][name]["sha256"] = hashlib.sha256(m[name]).hexdigest()
        m["manifest.json"] = json.dumps(manifest).encode()
        m["manifest.dsse.json"] = sign_envelope(
            m["manifest.json"], mallory, "application/vnd.pipetrail.audit-bundle+json"
        ).encode()

    problems = verdict(made, edit, tmp_path)
    assert any(
        p.startswith("checkpoint: signed by mallory, none of them a known key") for p in problems
    )
    assert any(p.startswith("manifest: its signature") for p in problems)
    # Trusting the bundle's own keys, the forgery is self-consistent: that is why to pin.
    forged = write_members(read_members(tmp_path / "edited.tar"), tmp_path / "again.tar")
    assert verify_bundle(forged).ok


def test_bad_archives_give_one_verdict_and_extract_nothing(made: Any, tmp_path: Path) -> None:
    bundle, _ = made
    not_tar = tmp_path / "x.tar"
    not_tar.write_text("hello")
    with pytest.raises(ParamError, match="is not a tar archive"):
        verify_bundle(not_tar)
    with pytest.raises(ParamError, match="no such file"):
        verify_bundle(tmp_path / "absent.tar")
    data = bundle.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="truncated or damaged"):
        verify_bundle(cut)
    members = read_members(bundle)
    members["../../escaped.txt"] = b"x"
    members["/abs.txt"] = b"x"
    report = verify_bundle(write_members(members, tmp_path / "evil.tar"))
    messages = [str(p) for p in report.problems]
    assert "archive: member name '../../escaped.txt' leaves the bundle" in messages
    assert "archive: member name '/abs.txt' leaves the bundle" in messages
    assert not (tmp_path.parent / "escaped.txt").exists()
