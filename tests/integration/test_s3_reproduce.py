"""``pipetrail reproduce`` of a run whose sources are S3 objects (a real SeaweedFS server).

The run recorded the objects by digest and stored their content: reproducing it restores
them from the store, so it reproduces even after the objects changed in the bucket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from tests.integration.test_s3_sources import _upload

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.seaweedfs import SeaweedServer

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step


@step
def total(folder: Path, one: Path) -> int:
    sizes = sum(len(p.read_bytes()) for p in sorted(folder.rglob("*.txt")))
    return sizes * 100 + len(one.read_bytes())


@pipeline
def objects():
    return total(source("PREFIX"), source("OBJECT"))
"""


def _cli(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipetrail.cli.main", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_a_run_with_s3_sources_reproduces_after_the_objects_changed(
    tmp_path: Path, seaweed: SeaweedServer, s3_url: str
) -> None:
    prefix, single = s3_url + "/in/", s3_url + "/model.bin"
    _upload(seaweed, prefix, {"one.txt": b"1", "sub/two.txt": b"22"})
    _upload(seaweed, s3_url, {"model.bin": b"abc"})
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    source = textwrap.dedent(PIPELINE).replace("PREFIX", prefix).replace("OBJECT", single)
    (root / "pipeline.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(seaweed.env())
    env["PYTHONPATH"] = os.pathsep.join(sys.path)

    done = _cli(root, env, "run", "pipeline.py", "--json")
    assert done.returncode == 0, done.stderr
    run: dict[str, Any] = json.loads(done.stdout)
    assert [s["status"] for s in run["steps"]] == ["completed"]

    # The bucket changes; the recorded run still reproduces, from its stored snapshot.
    _upload(seaweed, prefix, {"one.txt": b"1111"})
    _upload(seaweed, s3_url, {"model.bin": b"abcdef"})
    again = _cli(root, env, "reproduce", run["run_id"], "--json")
    assert again.returncode == 0, again.stderr + again.stdout
    report = json.loads(again.stdout)
    assert report["verdict"] == "reproduced", report
    assert "Traceback" not in again.stderr

    # And a new run sees the new objects.
    changed = _cli(root, env, "run", "pipeline.py", "--json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["steps"][0]["status"] == "completed"
