"""Audit bundles with the artifacts' content (``--with-data``), on each metadata backend.

A governed project (alice admin, rita researcher) runs a pipeline that reads a ``pii``
source: its loaded table is sealed, a plain step's output and a folder output are not.
The bundle carries the content; sensitive content only for a reader the access gate
allows (each read recorded); a changed byte of any content fails, naming the artifact.
"""

from __future__ import annotations

import json
import tracemalloc
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import PermissionDeniedError
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.governance.bundle_check import verify_bundle
from pipetrail.ledger.access_reads import access_records
from pipetrail.store import StoredArtifact
from pipetrail.verify.bundle import Scope, write_bundle
from tests.support.bundles import Members, read_members, write_members
from tests.support.team import Team

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PIPELINE = """
from pathlib import Path
import pandas as pd
from pipetrail import pipeline, source, step

@step
def load(path) -> pd.DataFrame:
    return pd.read_csv(path)

@step
def train(note: str = "plain") -> dict:
    return {"roc_auc": 0.97, "note": note}

@step
def report(size: int = 0) -> Path:
    folder = Path("report_out")
    folder.mkdir(exist_ok=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * (size // 256 + 1))
    return folder

@pipeline
def clinic(note: str = "plain", size: int = 0):
    return load(source("patients.csv", classification="pii")), train(note), report(size)
"""


class Clinic(Team):
    def __init__(self, project: Project, home: Path, run: Callable[..., str]) -> None:
        super().__init__(project, home)
        self.run = run

    def fresh(self) -> Project:
        """The project opened again, as a new process would (the gate reads state once)."""
        return Project(self.project.config, ledger=self.project.ledger)


@pytest.fixture
def clinic(
    metadata_url: str,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Clinic, str]]:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    (project_root / "patients.csv").write_text("name,city\nZebulon,Paris\nOttilie,Lyon\n")
    monkeypatch.chdir(project_root)
    monkeypatch.setenv("PIPETRAIL_USER", "alice")
    project = Project.at(project_root)
    definition = files.load(unique("clinic"), PIPELINE)

    def run(**params: Any) -> str:
        return run_pipeline(definition, params, project, RunOptions()).id

    c = Clinic(project, project_root.parent / "homes", run)
    c.signer("alice")
    c.as_("alice").bootstrap()
    c.as_("alice").add_user("rita", c.signer("rita").public_key.text, roles=("researcher",))
    yield c, run(note="<script>alert(1)</script>")
    project.close()


def recorded(project: Project, run_id: str) -> list[StoredArtifact]:
    events = project.reader().fetch(
        "SELECT payload FROM events WHERE run_id = :r AND kind = 'artifact.recorded'",
        {"r": run_id},
    )
    return [StoredArtifact.from_dict(json.loads(row["payload"])) for row in events]


def test_an_admin_bundles_the_content_and_every_byte_is_checked(
    clinic: tuple[Clinic, str], tmp_path: Path
) -> None:
    c, run = clinic
    out = tmp_path / "run.tar"
    made = write_bundle(c.fresh(), Scope("run", run), out, c.signer("alice"), data=True)
    members = read_members(out)
    manifest = json.loads(members["manifest.json"])
    artifacts = recorded(c.project, run)
    sealed = [a for a in artifacts if a.meta.get("sealed")]
    assert sealed, "the loaded pii table is sealed"
    for artifact in artifacts:  # every artifact's object is in, each listed with its SHA-256
        name = "data/" + artifact.blob.removeprefix("blake3:")
        assert name in manifest["members"]
        assert artifact.digest in manifest["data"][name]["artifacts"]
    table = next(a for a in sealed if a.serializer == "parquet")
    member = members["data/" + table.blob.removeprefix("blake3:")]
    plain = c.project.store_for(table, action="read").get_bytes(table.blob)
    assert member == plain  # the plaintext, not the ciphertext
    assert manifest["data"]["data/" + table.blob.removeprefix("blake3:")]["label"] == "pii"
    folder_files = [e for e in manifest["data"].values() if e["folder"]]
    assert sorted(e["path"] for e in folder_files) == ["a.txt", "sub/b.bin"]
    assert made.data == len(manifest["data"])
    assert made.left_out == ()
    # The bundle's read of the sealed table went through the gate, was recorded before
    # the checkpoint, and is in the bundle.
    reads = [r for r in access_records(c.project.reader()) if r.action == "bundle"]
    assert sorted((r.user, r.label, r.basis, r.digest) for r in reads) == sorted(
        ("alice", "pii", "role:admin", a.digest) for a in sealed
    )
    kinds = [json.loads(line)["kind"] for line in members["events.jsonl"].splitlines()]
    assert "access.read" in kinds
    report = verify_bundle(out, [("alice", c.signer("alice").public_key)])
    assert report.ok, report.problems
    assert report.data_sealed == len({a.blob for a in sealed})
    assert report.data + report.data_sealed == len(manifest["data"])

    def verdict(edit: Callable[[Members], None]) -> list[str]:
        copy = dict(members)
        edit(copy)
        got = verify_bundle(
            write_members(copy, tmp_path / "edited.tar"), [("alice", c.signer("alice").public_key)]
        )
        return [str(p) for p in got.problems]

    for artifact in artifacts:  # one changed byte of each object's content is named
        name = "data/" + artifact.blob.removeprefix("blake3:")

        def flip(m: Members, name: str = name) -> None:
            m[name] = bytes([m[name][0] ^ 1]) + m[name][1:]

        problems = verdict(flip)
        assert (
            f"{name}: its SHA-256 differs from the manifest's: the member was changed" in problems
        )
        assert any(
            p.startswith(f"data of artifact {artifact.digest}") and "the data was changed" in p
            for p in problems
        ), problems
    folder_file = next(n for n, e in manifest["data"].items() if e["path"] == "sub/b.bin")

    def flip_file(m: Members) -> None:
        m[folder_file] = m[folder_file][:-1] + b"x"

    assert any(
        p.startswith("data of artifact ") and "file 'sub/b.bin'" in p and "was changed" in p
        for p in verdict(flip_file)
    )


def test_without_a_grant_the_data_is_refused_or_left_out_and_listed(
    clinic: tuple[Clinic, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, run = clinic
    monkeypatch.setenv("PIPETRAIL_USER", "rita")
    sealed = [a for a in recorded(c.project, run) if a.meta.get("sealed")]
    out = tmp_path / "run.tar"
    with pytest.raises(PermissionDeniedError) as refused:
        write_bundle(c.fresh(), Scope("run", run), out, c.signer("rita"), data=True)
    message = str(refused.value)
    assert sealed[0].digest in message
    assert "labelled pii" in message
    assert "pipetrail grant rita --label pii" in message
    assert "--skip-refused" in message
    assert not any(p.name.endswith((".tar", ".tmp")) for p in tmp_path.iterdir())  # nothing
    (last,) = [r for r in access_records(c.project.reader()) if r.action == "bundle"]
    assert (last.kind, last.user, last.label) == ("access.refused", "rita", "pii")

    made = write_bundle(
        c.fresh(), Scope("run", run), out, c.signer("rita"), data=True, skip_refused=True
    )
    assert sorted(made.left_out, key=str) == sorted(
        ({"artifact": a.digest, "label": "pii", "reason": "no grant to read it"} for a in sealed),
        key=str,
    )
    manifest = json.loads(read_members(out)["manifest.json"])
    assert manifest["left_out"] == list(made.left_out)
    for artifact in sealed:
        assert "data/" + artifact.blob.removeprefix("blake3:") not in manifest["members"]
        assert artifact.digest in read_members(out)["report.md"].decode()
    assert verify_bundle(out).ok
    # nothing was read, so nothing more is recorded
    assert len([r for r in access_records(c.project.reader()) if r.action == "bundle"]) == 1

    c.as_("alice").grant_access("rita", "pii", purpose="audit of the clinic study")
    made = write_bundle(c.fresh(), Scope("run", run), out, c.signer("rita"), data=True)
    assert made.left_out == ()
    reads = [r for r in access_records(c.project.reader()) if r.kind == "access.read"]
    assert reads[-1].user == "rita"
    assert reads[-1].basis.startswith("grant:")
    assert reads[-1].purpose == "audit of the clinic study"
    assert verify_bundle(out).data_sealed == len({a.blob for a in sealed})


def test_a_member_marked_sealed_to_dodge_the_ledger_digest_is_caught(
    clinic: tuple[Clinic, str], tmp_path: Path
) -> None:
    """Claiming a plain object is sealed would let the manifest state any digest."""
    from pipetrail.governance.dsse import sign_envelope
    from pipetrail.hashing import digest_bytes

    c, run = clinic
    out = tmp_path / "run.tar"
    write_bundle(c.fresh(), Scope("run", run), out, c.signer("alice"), data=True)
    members = read_members(out)
    manifest = json.loads(members["manifest.json"])
    name = next(n for n, e in manifest["data"].items() if not e["sealed"] and not e["folder"])
    members[name] = b'{"forged": true}'
    manifest["data"][name].update(sealed=True, blake3=digest_bytes(members[name]))
    import hashlib

    manifest["members"][name] = {"sha256": hashlib.sha256(members[name]).hexdigest(), "size": 16}
    members["manifest.json"] = json.dumps(manifest).encode()
    members["manifest.dsse.json"] = sign_envelope(
        members["manifest.json"], c.signer("alice"), "application/vnd.pipetrail.audit-bundle+json"
    ).encode()
    report = verify_bundle(write_members(members, tmp_path / "forged.tar"))
    assert any(
        str(p).endswith("marked sealed, but the ledger records the object as plain")
        for p in report.problems
    ), report.problems


def test_a_large_artifact_streams_through_in_bounded_memory(
    clinic: tuple[Clinic, str], tmp_path: Path
) -> None:
    c, _ = clinic
    size = 48 << 20
    run = c.run(size=size)
    out = tmp_path / "big.tar"
    tracemalloc.start()
    try:
        write_bundle(c.fresh(), Scope("run", run), out, c.signer("alice"), data=True)
        written = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        report = verify_bundle(out)
        verified = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.ok, report.problems
    assert out.stat().st_size > size
    assert written < 16 << 20, written  # a few 1 MiB blocks, never the whole file
    assert verified < 16 << 20, verified


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def test_the_report_in_html_and_markdown_escapes_user_text(
    clinic: tuple[Clinic, str], tmp_path: Path
) -> None:
    c, run = clinic
    out = tmp_path / "run.tar"
    write_bundle(c.fresh(), Scope("run", run), out, c.signer("alice"))
    members = read_members(out)
    listed = json.loads(members["manifest.json"])["members"]
    assert {"report.md", "report.html"} <= set(listed)
    page = members["report.html"].decode()
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags  # the parameter's <script> is text, not a tag
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "default-src 'none'" in page  # nothing external, nothing inline runs
    assert not any(tag in parser.tags for tag in ("link", "img", "iframe"))
    markdown = members["report.md"].decode()
    assert "<script>" not in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown
    for text in (page, markdown):  # who ran what, with which code, environment and data
        assert run in text
        assert "alice" in text
        assert "patients.csv" in text
        assert "role:admin" not in text  # no read of sensitive content without --with-data
    assert verify_bundle(out).ok


VAULT = """
from pathlib import Path
from pipetrail import pipeline, step

@step(classification={"output": "pii"})
def vault() -> Path:
    folder = Path("vault_out")
    folder.mkdir(exist_ok=True)
    (folder / "notes.txt").write_text("Zebulon lives in Paris")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "ids.txt").write_text("Ottilie 1971")
    return folder

@pipeline
def sealed_folder():
    return vault()
"""


def test_a_sealed_folder_goes_in_as_plaintext_and_every_byte_is_checked(
    clinic: tuple[Clinic, str], files: PipelineFiles, unique: Callable[[str], str], tmp_path: Path
) -> None:
    c, _ = clinic
    definition = files.load(unique("vault"), VAULT)
    run = run_pipeline(definition, {}, c.project, RunOptions()).id
    out = tmp_path / "vault.tar"
    write_bundle(c.fresh(), Scope("run", run), out, c.signer("alice"), data=True)
    members = read_members(out)
    manifest = json.loads(members["manifest.json"])
    files_in = {e["path"]: n for n, e in manifest["data"].items() if e["folder"]}
    assert sorted(files_in) == ["notes.txt", "sub/ids.txt"]
    assert all(manifest["data"][n]["label"] == "pii" for n in files_in.values())
    # The folder's files go in as their plaintext (the store holds them sealed).
    assert members[files_in["notes.txt"]] == b"Zebulon lives in Paris"
    assert members[files_in["sub/ids.txt"]] == b"Ottilie 1971"
    keys = [("alice", c.signer("alice").public_key)]
    report = verify_bundle(out, keys)
    assert report.ok, report.problems
    name = files_in["sub/ids.txt"]
    edited = dict(members)
    edited[name] = b"Ottilie 1972"
    problems = [
        str(p) for p in verify_bundle(write_members(edited, tmp_path / "edited.tar"), keys).problems
    ]
    assert f"{name}: its SHA-256 differs from the manifest's: the member was changed" in problems
