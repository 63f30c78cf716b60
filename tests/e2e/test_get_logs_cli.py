"""`pipetrail get` and `pipetrail logs` in a subprocess: bytes out of the store, verified."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from typing import TYPE_CHECKING

import pytest

from pipetrail.store import LocalStore
from tests.contract.test_content_store import corrupt
from tests.e2e.test_cli import cli, run_json

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    print("reading", path.name)
    return path.read_text()

@step
def split(text: str) -> tuple[list[str], dict[str, int]]:
    print("splitting")
    ws = text.split()
    return ws, {"words": len(ws)}

@step
def bundle(ws: list[str], out_dir: str = "bundle") -> Path:
    folder = Path(out_dir)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "words.txt").write_text("\\n".join(ws))
    (folder / "sub" / "n.txt").write_text(str(len(ws)))
    return folder

@pipeline
def words():
    ws, counts = split(read(source("data/text.txt")))
    return bundle(ws), counts
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "data").mkdir()
    (root / "data" / "text.txt").write_text("one two three")
    (root / "words.py").write_text(textwrap.dedent(PIPELINE))
    return root


def test_get_writes_a_step_output_by_run_step_and_output(project: Path) -> None:
    run = run_json(project, "words.py")
    result = cli(project, "get", "latest:read", "-o", "out/text.json", "--json", check=True)
    written = json.loads(result.stdout)
    assert written["node_id"] == "read"
    assert written["run_id"] == run["run_id"]
    assert json.loads((project / "out" / "text.json").read_text()) == "one two three"
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((project / "out" / "text.json").stat().st_mode)
    assert mode == 0o666 & ~umask

    # a step with several outputs needs the output's name; the error lists them
    result = cli(project, "get", f"{run['run_id']}:split")
    assert result.returncode == 2
    assert "has 2 outputs" in result.stderr
    assert "Traceback" not in result.stderr
    cli(project, "get", f"{run['run_id'][:12]}:split.output_1", "-o", "c.json", check=True)
    assert json.loads((project / "c.json").read_text()) == {"words": 3}


def test_get_by_digest_prefix_to_stdout_and_refuses_to_overwrite(project: Path) -> None:
    run_json(project, "words.py")
    written = json.loads(cli(project, "get", "latest:read", "--json", check=True).stdout)
    digest = written["digest"]
    default = project / written["path"]
    assert default.name == "read.output.json"
    out = cli(project, "get", digest.removeprefix("blake3:")[:14], "-o", "-", check=True)
    assert json.loads(out.stdout) == "one two three"

    before = default.read_bytes()
    result = cli(project, "get", "latest:read")
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert "--force" in result.stderr
    assert default.read_bytes() == before
    cli(project, "get", "latest:read", "--force", check=True)


def test_get_writes_a_folder_artifact_as_a_folder(project: Path) -> None:
    run_json(project, "words.py")
    cli(project, "get", "latest:bundle", "-o", "copy", check=True)
    assert (project / "copy" / "words.txt").read_text() == "one\ntwo\nthree"
    assert (project / "copy" / "sub" / "n.txt").read_text() == "3"
    result = cli(project, "get", "latest:bundle", "-o", "copy")
    assert result.returncode == 2
    (project / "copy" / "stale.txt").write_text("x")
    cli(project, "get", "latest:bundle", "-o", "copy", "--force", check=True)
    assert not (project / "copy" / "stale.txt").exists()
    assert not [p for p in project.iterdir() if p.name.startswith(".copy.")]


def test_get_refuses_a_corrupt_object_and_writes_nothing(project: Path) -> None:
    run_json(project, "words.py")
    written = json.loads(cli(project, "get", "latest:read", "-o", "a.json", "--json").stdout)
    blob = written["digest"]
    # flip the stored object's bytes wherever the store keeps it (loose file or pack row)
    _corrupt(project, blob)
    result = cli(project, "get", "latest:read", "-o", "b.json")
    assert result.returncode == 3, result.stderr
    assert blob in result.stderr
    assert not (project / "b.json").exists()
    assert not [p for p in project.iterdir() if p.name.startswith(".b.json")]


def test_get_bad_refs_get_one_line_errors(project: Path) -> None:
    run = run_json(project, "words.py")
    cases = {
        "": "empty ref",
        "latest:nosuch": "has no step 'nosuch'",
        "latest:split.nope": "has no output 'nope'",
        "NOSUCHRUN:read": "",
        "ffffffffffff": "",
        f"{run['run_id']}:": "both the run and the step",
    }
    for ref, needle in cases.items():
        result = cli(project, "get", ref)
        assert result.returncode == 2, (ref, result.stderr)
        assert needle in result.stderr, (ref, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_logs_prints_each_step_and_the_cached_steps_origin(project: Path) -> None:
    first = run_json(project, "words.py")
    text = cli(project, "logs", "latest", check=True).stdout
    assert "== read (completed)" in text
    assert "reading text.txt" in text
    assert "splitting" in text
    second = run_json(project, "words.py")
    assert {s["status"] for s in second["steps"]} == {"cached"}
    data = json.loads(cli(project, "logs", "latest", "--json", check=True).stdout)
    read = next(s for s in data["steps"] if s["node_id"] == "read")
    original = next(s for s in first["steps"] if s["node_id"] == "read")
    assert read["reused_step_run_id"] == original["step_run_id"]
    assert "reading text.txt" in read["text"]
    one = cli(project, "logs", first["run_id"], "split", check=True).stdout
    assert one.strip() == "[stdout] splitting"
    result = cli(project, "logs", "latest", "nosuch")
    assert result.returncode == 2
    assert "its steps are" in result.stderr


def _corrupt(project: Path, digest: str) -> None:
    """Flip one byte of the stored object ``digest``, behind the store's back."""
    corrupt(LocalStore(project / ".pipetrail" / "objects"), digest)
