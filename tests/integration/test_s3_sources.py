"""Sources that are S3 objects (SeaweedFS on loopback): recorded by content digest,
re-observed by ETag and size without reading unchanged objects, materialized for steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from pipetrail.capture.s3_source import observe_s3_source
from pipetrail.capture.sources import observe_source
from pipetrail.hashing import digest_bytes
from pipetrail.store import LocalStore
from pipetrail.store.s3 import parse_s3_url

if TYPE_CHECKING:
    from tests.support.seaweedfs import SeaweedServer


def _client(seaweed: SeaweedServer, bucket: str) -> object:
    from obstore.store import S3Store as Client

    env = seaweed.env()
    return Client(
        bucket,
        endpoint=env["AWS_ENDPOINT_URL"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region="us-east-1",
        allow_http=True,
        virtual_hosted_style_request=False,
    )


def _settings(seaweed: SeaweedServer) -> dict[str, str]:
    env = seaweed.env()
    return {
        "endpoint": env["AWS_ENDPOINT_URL"],
        "access_key_id": env["AWS_ACCESS_KEY_ID"],
        "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def _upload(seaweed: SeaweedServer, url: str, objects: dict[str, bytes]) -> None:
    import obstore as obs

    bucket, prefix = parse_s3_url(url)
    client = _client(seaweed, bucket)
    for name, data in objects.items():
        obs.put(client, f"{prefix}/{name}", data)


def test_a_prefix_is_recorded_by_digest_and_reobserved_by_etag(
    tmp_path: Path, seaweed: SeaweedServer, s3_url: str
) -> None:
    url = s3_url + "/raw/"
    _upload(seaweed, url, {"a.csv": b"x,y\n1,2\n", "sub/b.csv": b"x,y\n3,4\n"})
    store = LocalStore(tmp_path / "objects")
    state = tmp_path / ".pipetrail"
    first = observe_s3_source(url, store=store, state_dir=state, settings=_settings(seaweed))
    assert first.kind == "folder"
    assert first.file_count == 2
    assert first.hashed_files == 2
    assert first.digest == digest_bytes(first.manifest_bytes or b"")
    manifest = first.manifest or {}
    assert set(manifest) == {"a.csv", "sub/b.csv"}
    assert manifest["a.csv"]["digest"] == digest_bytes(b"x,y\n1,2\n")
    # The same document as a local folder of the same files: the same digest.
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "a.csv").write_bytes(b"x,y\n1,2\n")
    (local / "sub" / "b.csv").write_bytes(b"x,y\n3,4\n")
    assert observe_source(str(local), root=tmp_path, by_reference=True).digest == first.digest
    assert store.get_bytes(digest_bytes(b"x,y\n3,4\n")) == b"x,y\n3,4\n"
    folder = Path(first.location)
    assert folder.is_relative_to(state / "cache" / "s3-sources")
    assert (folder / "sub" / "b.csv").read_bytes() == b"x,y\n3,4\n"
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [
        "a.csv",
        "b.csv",
    ]

    again = observe_s3_source(url, store=store, state_dir=state, settings=_settings(seaweed))
    assert again.digest == first.digest
    assert again.hashed_files == 0  # nothing read again: ETag and size vouch for it
    assert again.cached_files == 2

    _upload(seaweed, url, {"a.csv": b"x,y\n1,5\n"})
    changed = observe_s3_source(url, store=store, state_dir=state, settings=_settings(seaweed))
    assert changed.digest != first.digest
    assert changed.hashed_files == 1  # only the changed object
    assert (changed.manifest or {})["a.csv"]["digest"] == digest_bytes(b"x,y\n1,5\n")


def test_one_object_is_a_file_source(tmp_path: Path, seaweed: SeaweedServer, s3_url: str) -> None:
    _upload(seaweed, s3_url, {"model.bin": b"\x00\x01weights"})
    store = LocalStore(tmp_path / "objects")
    obs = observe_s3_source(
        s3_url + "/model.bin",
        store=store,
        state_dir=tmp_path / ".pipetrail",
        settings=_settings(seaweed),
    )
    assert obs.kind == "file"
    assert obs.digest == digest_bytes(b"\x00\x01weights")
    assert Path(obs.location).read_bytes() == b"\x00\x01weights"


PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def count(folder: Path) -> dict[str, int]:
    return {p.name: len(p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}

@pipeline
def objects():
    return count(source("URL"))
"""


def test_a_pipeline_reads_an_s3_prefix_and_caches_on_it(
    tmp_path: Path, seaweed: SeaweedServer, s3_url: str
) -> None:
    url = s3_url + "/in/"
    _upload(seaweed, url, {"one.txt": b"1", "two.txt": b"22"})
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE).replace("URL", url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(seaweed.env())

    def run() -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "pipetrail.cli.main", "run", "pipeline.py", "--json"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        return result

    first = run()
    assert first["steps"][0]["status"] == "completed"  # type: ignore[index]
    second = run()
    assert second["steps"][0]["status"] == "cached"  # type: ignore[index]
    _upload(seaweed, url, {"two.txt": b"333"})
    third = run()
    assert third["steps"][0]["status"] == "completed"  # type: ignore[index]
