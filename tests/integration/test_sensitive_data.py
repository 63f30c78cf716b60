"""Sensitive data in real runs: labels down lineage, sealed content, keyed digests."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from pipetrail.errors import StepFailedError, StoreError
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.hashing import digest_bytes
from pipetrail.store.s3 import S3Store
from pipetrail.store.serializers.parquet_format import table_value_digest

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles
    from tests.support.seaweedfs import SeaweedServer

pytestmark = pytest.mark.integration

SECRET_NAMES = ["Zebulon-Quartermain", "Ottilie-Farnsworth", "Balthazar-Ng"]

PIPELINE = """
import pandas as pd
from pipetrail import pipeline, privacy, source, step

@step
def load(path) -> pd.DataFrame:
    return pd.read_csv(path)

@step
def upper(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["name"] = out["name"].str.upper()
    return out

@step(classification={"output": "public"})
def counts(df: pd.DataFrame) -> pd.DataFrame:
    return privacy.aggregate(df, by="city", aggs={"people": "name:count"}, min_group_size=K)

@step
def plain() -> bytes:
    return b"nothing personal"

@pipeline
def p():
    df = load(source("patients.csv", classification="pii"))
    return upper(df), counts(df), plain()
"""


def _write_csv(root: Path) -> bytes:
    rows = ["name,city"] + [f"{SECRET_NAMES[i % 3]}-{i},Paris" for i in range(12)]
    data = ("\n".join(rows) + "\n").encode()
    (root / "patients.csv").write_bytes(data)
    return data


def _events(project: Project, run_id: str, kind: str) -> list[dict]:
    return [
        e.payload for e in project.ledger.iter_events() if e.run_id == run_id and e.kind == kind
    ]


def _store_bytes(root: Path) -> bytes:
    found = []
    for folder, _, names in os.walk(root / ".pipetrail"):
        for name in names:
            found.append((root / folder / name).read_bytes())
    return b"\n".join(found)


def test_labels_flow_down_lineage_and_content_is_sealed(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    data = _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE.replace("K", "5"))
    run = run_pipeline(definition, {}, project, RunOptions())
    steps = {p["node_id"]: p for p in _events(project, run.id, "step.completed")}
    assert steps["load"]["classification"] == {"output": "pii"}
    assert steps["upper"]["classification"] == {"output": "pii"}
    assert steps["counts"]["classification"] == {"output": "public"}
    assert steps["counts"]["declassified"]["output"]["from"] == "pii"
    assert steps["counts"]["declassified"]["output"]["by"] == [{"op": "aggregate", "k": 5}]
    assert "classification" not in steps["plain"]
    # The privacy operation's record names the table it read by a keyed digest too.
    from pipetrail.data.frames import Frame

    (agg,) = steps["counts"]["data_ops"]
    loaded = pd.read_csv(project_root / "patients.csv")
    assert agg["input"]["digest"] != Frame(loaded, "t").digest()
    assert agg["input"]["rows"] == 12
    (observed,) = _events(project, run.id, "source.observed")
    assert observed["classification"] == "pii"
    # Nothing pipetrail wrote holds the names, the file, or digests a guess would give.
    on_disk = _store_bytes(project_root)
    assert not any(name.encode() in on_disk for name in SECRET_NAMES)
    assert observed["digest"] != digest_bytes(data)
    guess = pd.read_csv(project_root / "patients.csv")
    assert steps["load"]["outputs"]["output"] != table_value_digest(guess)
    assert digest_bytes(data).encode() not in on_disk
    # Reads decrypt transparently and verify.
    value = run.load(steps["upper"]["outputs"]["output"])
    assert value["name"].iloc[0] == f"{SECRET_NAMES[0]}-0".upper()
    from pipetrail.read.project import Project as ReadProject

    reread = ReadProject.at(project_root)
    try:
        again = reread.load(steps["load"]["outputs"]["output"])
        assert list(again["name"]) == list(guess["name"])
    finally:
        reread.close()


def test_cache_hits_work_for_sensitive_steps(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE.replace("K", "5"))
    first = run_pipeline(definition, {}, project, RunOptions())
    second = run_pipeline(definition, {}, project, RunOptions())
    cached = {p["node_id"]: p for p in _events(project, second.id, "step.cached")}
    done = {p["node_id"]: p for p in _events(project, first.id, "step.completed")}
    assert set(cached) == {"load", "upper", "counts", "plain"}
    assert cached["upper"]["outputs"] == done["upper"]["outputs"]
    assert cached["upper"]["classification"] == {"output": "pii"}


def test_a_declassification_without_a_privacy_record_fails_the_step(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE.replace("K", "2"))
    with pytest.raises(StepFailedError, match=r"declares output 'output' as 'public'.*'pii'"):
        run_pipeline(definition, {}, project, RunOptions())


def test_a_missing_key_fails_closed_naming_the_artifact(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    _write_csv(project_root)
    definition = files.load(unique("pii"), PIPELINE.replace("K", "5"))
    run = run_pipeline(definition, {}, project, RunOptions())
    (project_root / ".pipetrail" / "private" / "kek").unlink()
    other = Project.at(project_root)
    try:
        (upper,) = [p for p in _events(other, run.id, "step.completed") if p["node_id"] == "upper"]
        digest = upper["outputs"]["output"]
        record = other.reader().artifact(digest)
        from pipetrail.store import StoredArtifact

        stored = StoredArtifact.from_dict(record)
        with pytest.raises(StoreError, match=f"sensitive artifact {digest}.*no key file"):
            other.registry.load(stored, other.store_for(stored))
    finally:
        other.close()


@pytest.mark.postgres
def test_labels_sealing_and_cache_hits_on_each_backend(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    _write_csv(project_root)
    proj = Project.at(project_root)
    try:
        definition = files.load(unique("pii"), PIPELINE.replace("K", "5"))
        first = run_pipeline(definition, {}, proj, RunOptions())
        second = run_pipeline(definition, {}, proj, RunOptions())
        done = {p["node_id"]: p for p in _events(proj, first.id, "step.completed")}
        cached = {p["node_id"]: p for p in _events(proj, second.id, "step.cached")}
        assert cached["upper"]["outputs"] == done["upper"]["outputs"]
        assert done["upper"]["classification"] == {"output": "pii"}
        from pipetrail.ledger.event_reads import closing_step_events

        typed = {e.node_id: e for e in closing_step_events(proj.reader(), first.id)}
        assert typed["counts"].declassified["output"]["from"] == "pii"
        assert typed["plain"].classification == {}
        value = second.load(cached["upper"]["outputs"]["output"])
        assert value["name"].iloc[0] == f"{SECRET_NAMES[0]}-0".upper()
    finally:
        proj.close()


def test_sealed_content_in_an_s3_store(
    tmp_path: Path,
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
    proj = Project.at(project_root)
    try:
        definition = files.load(unique("pii"), PIPELINE.replace("K", "5"))
        run = run_pipeline(definition, {}, proj, RunOptions())
        bucket = S3Store(
            s3_url,
            cache_dir=tmp_path / "probe",
            endpoint=env["AWS_ENDPOINT_URL"],
            access_key_id=env["AWS_ACCESS_KEY_ID"],
            secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        stored = b"".join(bucket.get_bytes(d) for d in bucket.iter_digests())
        assert stored
        assert not any(name.encode() in stored for name in SECRET_NAMES)
        steps = {p["node_id"]: p for p in _events(proj, run.id, "step.completed")}
        value = run.load(steps["upper"]["outputs"]["output"])
        assert value["name"].iloc[0] == f"{SECRET_NAMES[0]}-0".upper()
    finally:
        proj.close()
