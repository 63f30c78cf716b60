"""Re-encryption under a new data key: every sealed object rewritten, crash-safe, recorded."""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import StoreError
from pipetrail.execution import reencryption
from pipetrail.execution.gc import collect_garbage
from pipetrail.execution.integrity import verify_artifacts
from pipetrail.execution.project import Project
from pipetrail.execution.reencryption import reencrypt_project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.read.project import Project as ReadProject
from pipetrail.store import LocalStore, StoredArtifact
from pipetrail.store.keyring import EncryptionSettings, open_keys
from pipetrail.store.sealed import SealedStore, SealingKeys, header_key_id

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles
    from tests.support.seaweedfs import SeaweedServer

pytestmark = pytest.mark.integration

NAMES = ["Zebulon-Quartermain", "Ottilie-Farnsworth", "Balthazar-Ng"]

PIPELINE = """
import pandas as pd
from pipetrail import pipeline, source, step

@step
def load(path) -> pd.DataFrame:
    return pd.read_csv(path)

@step
def upper(df: pd.DataFrame) -> pd.DataFrame:
    print("first:", df["name"].iloc[0])
    out = df.copy()
    out["name"] = out["name"].str.upper()
    return out

@step
def plain() -> bytes:
    return b"nothing personal"

@pipeline
def p():
    df = load(source("patients.csv", classification="pii"))
    return upper(df), plain()
"""


def _write_csv(root: Path) -> None:
    rows = ["name,city"] + [f"{NAMES[i % 3]}-{i},Paris" for i in range(12)]
    (root / "patients.csv").write_text("\n".join(rows) + "\n")


def _sealed_rows(project: Project) -> dict[str, str]:
    """Sealed artifact digest -> its current blob, as the record gives it."""
    reader = project.reader()
    found = {}
    for row in reader.fetch("SELECT digest FROM artifacts"):
        record = reader.artifact(str(row["digest"]))
        assert record is not None
        if (record.get("meta") or {}).get("sealed"):
            found[str(record["digest"])] = str(record["blob"])
    return found


def _key_ids(project: Project, blobs: dict[str, str]) -> set[str | None]:
    ids = set()
    for blob in blobs.values():
        with project.store.open(blob) as raw:
            ids.add(header_key_id(raw.read(64)))
    return ids


def _outputs(project: Project, run_id: str) -> dict[str, str]:
    return {
        e.payload["node_id"]: e.payload["outputs"]["output"]
        for e in project.ledger.iter_events()
        if e.run_id == run_id and e.kind in ("step.completed", "step.cached")
    }


def _spy(method: Callable[..., Any], seen: list[str]) -> Callable[..., Any]:
    """``method`` of the real store, noting which object it reads."""

    def spied(self: LocalStore, digest: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(digest)
        return method(self, digest, *args, **kwargs)

    return spied


def _rotations(project: Project) -> list[dict[str, Any]]:
    return [e.payload for e in project.ledger.iter_events() if e.kind == "keys.rotated"]


def _check_reencrypted(project_root: Path, definition: Any, run_id: str) -> None:
    """After a re-encryption: one new data key seals everything, reads and caches work."""
    proj = Project.at(project_root)
    try:
        blobs = _sealed_rows(proj)
        keys = proj.sealing_keys()
        assert set(keys.data_keys) == {keys.current}
        assert _key_ids(proj, blobs) == {keys.current}
        outputs = _outputs(proj, run_id)
        again = run_pipeline(definition, {}, proj, RunOptions())
        assert _outputs(proj, again.id) == outputs  # same keyed digests: cache hits
        loaded = again.load(outputs["upper"])
        assert loaded["name"].iloc[0] == f"{NAMES[0]}-0".upper()
        report = verify_artifacts(proj)
        assert report["ok"], report
        assert report["sealed"]["decrypted"] == len(blobs)
    finally:
        proj.close()


def test_reencrypt_rewrites_every_sealed_object_under_a_new_data_key(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE)
    run = run_pipeline(definition, {}, project, RunOptions())
    before = _sealed_rows(project)
    # Outputs of load and upper, the source's sealed copy, upper's sealed log.
    assert len(before) >= 4
    old_keys = project.sealing_keys()
    (old_id,) = old_keys.data_keys
    outputs = _outputs(project, run.id)

    done = reencrypt_project(project)

    assert done["reencrypted"] is True
    assert done["objects"] == len(before)
    assert done["retired_data_keys"] == [old_id]
    assert done["new_data_key"] != old_id
    assert _rotations(project)[-1]["objects"] == len(before)
    after = _sealed_rows(project)
    assert set(after) == set(before)  # keyed digests unchanged
    assert not set(after.values()) & set(before.values())
    ring = json.loads((project_root / ".pipetrail" / "keyring.json").read_text())
    assert [e["id"] for e in ring["data_keys"]] == [done["new_data_key"]]
    assert "pending" not in ring
    # The old data key opens nothing recorded any more.
    old_view = SealedStore(project.store, old_keys)
    for blob in after.values():
        with pytest.raises(StoreError, match="not in the keyring"):
            old_view.get_bytes(blob)
    assert _outputs(project, run.id) == outputs
    _check_reencrypted(project_root, definition, run.id)
    # The old objects are needed by nothing: garbage collection removes them.
    proj = Project.at(project_root)
    try:
        collect_garbage(proj, grace=0)
        assert not any(proj.store.exists(b) for b in before.values())
        assert all(proj.store.exists(b) for b in after.values())
        assert verify_artifacts(proj)["ok"]
    finally:
        proj.close()


@pytest.mark.parametrize("keyring", ["file", "ledger"])
def test_a_long_lived_project_follows_a_reencryption_made_by_another(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str], keyring: str
) -> None:
    """Keys and the map of replaced objects are kept, and still follow the ledger."""
    if keyring == "ledger":
        (project_root / "pipetrail.toml").write_text(
            '[pipetrail]\n[encryption]\nkeyring = "ledger"\n'
        )
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE)
    writer = Project.at(project_root)
    long_lived = ReadProject.at(project_root)
    try:
        run = run_pipeline(definition, {}, writer, RunOptions())
        outputs = _outputs(writer, run.id)
        before = _sealed_rows(writer)
        first = long_lived.load(outputs["upper"])  # unwraps the keys, reads the map
        row = long_lived.reader().artifact(outputs["upper"])
        assert row is not None
        old = StoredArtifact.from_dict(row)
        plain = long_lived.store_for(old).get_bytes(old.blob)
        other = Project.at(project_root)
        try:
            reencrypt_project(other)
            collect_garbage(other, grace=0)
        finally:
            other.close()
        assert not any(writer.store.exists(b) for b in before.values())
        # The artifact's record names the new object, sealed with a key unwrapped by
        # nobody here yet; a step event still names the old object, now collected.
        assert long_lived.load(outputs["upper"]).equals(first)
        assert long_lived.store_for(old).get_bytes(old.blob) == plain
        # The writer seals with the new data key too: what it seals, others open.
        assert writer.sealing_keys().current == _sealing_key_now(project_root)
    finally:
        long_lived.close()
        writer.close()


def _sealing_key_now(project_root: Path) -> str:
    """The data key the keyring seals with, as a fresh process reads it."""
    fresh = Project.at(project_root)
    try:
        return fresh.sealing_keys().current
    finally:
        fresh.close()


def test_rotating_only_the_kek_keeps_the_keys_a_process_unwrapped(
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process whose key provider still holds the old KEK keeps reading: no data key changed."""
    from pipetrail.execution.key_rotation import rotate_project_keys

    (project_root / "pipetrail.toml").write_text('[pipetrail]\n[encryption]\nprovider = "env"\n')
    old_kek = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("PIPETRAIL_KEK", old_kek)
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE)
    long_lived = ReadProject.at(project_root)
    try:
        run = run_pipeline(definition, {}, long_lived, RunOptions())
        outputs = _outputs(long_lived, run.id)
        first = long_lived.load(outputs["upper"])
        monkeypatch.setenv("OLD_KEK", old_kek)
        monkeypatch.setenv("PIPETRAIL_KEK", base64.b64encode(os.urandom(32)).decode())
        other = Project.at(project_root)
        try:
            rotate_project_keys(other, old_variable="OLD_KEK")
        finally:
            other.close()
        monkeypatch.setenv("PIPETRAIL_KEK", old_kek)  # this process was started with it
        assert long_lived.load(outputs["upper"]).equals(first)
    finally:
        long_lived.close()


def test_an_interrupted_reencryption_reads_correctly_and_a_rerun_finishes(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE)
    run = run_pipeline(definition, {}, project, RunOptions())
    before = _sealed_rows(project)
    outputs = _outputs(project, run.id)
    monkeypatch.setattr(reencryption, "_BATCH", 1)
    real = SealedStore.reseal
    calls = []

    def interrupted(self: SealedStore, blob: str, opener: SealingKeys) -> tuple[str, int]:
        calls.append(blob)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is stopped mid-way
        return real(self, blob, opener)

    monkeypatch.setattr(SealedStore, "reseal", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reencrypt_project(project)
    monkeypatch.setattr(SealedStore, "reseal", real)
    # Half done: two objects switched, the rest not; everything reads.
    ring = json.loads((project_root / ".pipetrail" / "keyring.json").read_text())
    assert "pending" in ring
    middle = Project.at(project_root)
    try:
        blobs = _sealed_rows(middle)
        assert len(set(blobs.values()) - set(before.values())) == 2
        assert len(_key_ids(middle, blobs)) == 2
        reread = ReadProject.at(project_root)
        try:
            loaded = reread.load(outputs["upper"])
        finally:
            reread.close()
        assert loaded["name"].iloc[0] == f"{NAMES[0]}-0".upper()
        assert verify_artifacts(middle)["ok"]
        # The rerun learns which key sealed each object from its header alone: the two
        # objects already sealed with the new key are not read whole (nor hashed).
        switched = set(blobs.values()) - set(before.values())
        read_whole: list[str] = []
        for name in ("open", "get_bytes", "read_with", "local_path"):
            monkeypatch.setattr(LocalStore, name, _spy(getattr(LocalStore, name), read_whole))
        done = reencrypt_project(middle)
        assert done["resumed"] is True
        assert done["objects"] == len(before) - 2
        assert not switched & set(read_whole), read_whole
        assert set(blobs.values()) & set(before.values()) <= set(read_whole)  # sealed again
    finally:
        middle.close()
    _check_reencrypted(project_root, definition, run.id)


def test_a_wrong_old_key_is_refused_and_nothing_changes(
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (project_root / "pipetrail.toml").write_text('[pipetrail]\n[encryption]\nprovider = "env"\n')
    old = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("PIPETRAIL_KEK", old)
    _write_csv(project_root)
    proj = Project.at(project_root)
    try:
        run_pipeline(files.load(unique("pii"), PIPELINE), {}, proj, RunOptions())
        ring = (project_root / ".pipetrail" / "keyring.json").read_bytes()
        events = len(list(proj.ledger.iter_events()))
        blobs = _sealed_rows(proj)
        monkeypatch.setenv("PIPETRAIL_KEK", base64.b64encode(os.urandom(32)).decode())
        monkeypatch.setenv("OLD_KEK", base64.b64encode(os.urandom(32)).decode())
        with pytest.raises(
            StoreError,
            match=r"wrapped with the key \S+, which the configured key provider does not hold",
        ):
            reencrypt_project(proj, old_variable="OLD_KEK")
        assert (project_root / ".pipetrail" / "keyring.json").read_bytes() == ring
        assert len(list(proj.ledger.iter_events())) == events
        assert _sealed_rows(proj) == blobs
        # The right old key: the KEK is rotated and the data re-encrypted.
        monkeypatch.setenv("OLD_KEK", old)
        done = reencrypt_project(proj, old_variable="OLD_KEK")
        assert done["objects"] == len(blobs)
        assert done["new_kek"]
    finally:
        proj.close()
    settings = EncryptionSettings.load(project_root, project_root / ".pipetrail")
    keys = open_keys(settings, create=False)
    assert set(keys.data_keys) == {keys.current}


@pytest.mark.postgres
def test_reencrypt_on_each_backend(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE)
    proj = Project.at(project_root)
    try:
        run = run_pipeline(definition, {}, proj, RunOptions())
        count = len(_sealed_rows(proj))
        done = reencrypt_project(proj)
        assert done["objects"] == count
        proj.ledger.rebuild_projections()  # the reseal events project the same rows
        assert len(_sealed_rows(proj)) == count
    finally:
        proj.close()
    _check_reencrypted(project_root, definition, run.id)


def test_reencrypt_in_an_s3_store(
    seaweed: SeaweedServer,
    s3_url: str,
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
) -> None:
    env = seaweed.env()
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\nstore = "{s3_url}"\n[store.s3]\nendpoint = "{env["AWS_ENDPOINT_URL"]}"\n'
        f'access_key_id = "{env["AWS_ACCESS_KEY_ID"]}"\n'
        f'secret_access_key = "{env["AWS_SECRET_ACCESS_KEY"]}"\n'
    )
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE)
    proj = Project.at(project_root)
    try:
        run = run_pipeline(definition, {}, proj, RunOptions())
        before = _sealed_rows(proj)
        done = reencrypt_project(proj)
        assert done["objects"] == len(before)
        after = _sealed_rows(proj)
        assert all(proj.store.exists(b) for b in after.values())
        assert not set(after.values()) & set(before.values())
    finally:
        proj.close()
    _check_reencrypted(project_root, definition, run.id)


def _damage_header(store: LocalStore, blob: str) -> None:
    """Overwrite the first bytes of a stored object (a loose file, else its pack row)."""
    import sqlite3

    path = store.root / blob[7:9] / blob[9:]
    if path.exists():
        path.chmod(0o644)
        with open(path, "r+b") as f:
            f.write(b"XXXX")
        return
    with sqlite3.connect(store.root / "pack.db") as conn:
        (data,) = conn.execute("SELECT data FROM objects WHERE digest = ?", (blob,)).fetchone()
        conn.execute(
            "UPDATE objects SET data = ? WHERE digest = ?", (b"XXXX" + bytes(data)[4:], blob)
        )


def test_a_sealed_object_whose_header_is_damaged_is_named_not_passed_over(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    _write_csv(project_root)
    run_pipeline(files.load(unique("pii"), PIPELINE), {}, project, RunOptions())
    blobs = _sealed_rows(project)
    digest, blob = sorted(blobs.items())[0]
    store = project.store
    assert isinstance(store, LocalStore)
    _damage_header(store, blob)

    with pytest.raises(StoreError, match=f"cannot re-encrypt sealed artifact {digest}"):
        reencrypt_project(project)
    # Nothing was finished: the old data key still opens what is recorded.
    assert not [p for p in _rotations(project) if p.get("reencrypted")]
