"""An input whose intact stored bytes cannot be loaded fails the run in one line, exit 1.

The pipeline registers a serializer whose ``load`` fails the way real ones do (a library
error, a garbled format, an unpickling error, a pyarrow error) when an environment
variable says so, or that reads an older format version than the artifact's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]

BOXES = """
import os
import pickle

from pipetrail import pipeline, register_serializer, step
from pipetrail.store.serializers.base import StoredArtifact


class Box:
    def __init__(self, value: int) -> None:
        self.value = value


class BoxSerializer:
    name = "box"
    version = int(os.environ.get("BOX_VERSION", "1"))

    def handles(self, value):
        return isinstance(value, Box)

    def dump(self, value, store):
        data = str(value.value).encode()
        digest = store.put_bytes(data)
        return StoredArtifact(digest, digest, self.name, "boxes.Box", len(data), {})

    def load(self, record, store):
        data = store.get_bytes(record.blob)
        mode = os.environ.get("BOX_FAILS", "")
        if mode == "runtime":
            raise RuntimeError("box reader lost its place")
        if mode == "value":
            return Box(int(data + b"x"))
        if mode == "unpickle":
            return pickle.loads(data)
        if mode == "arrow":
            import pyarrow as pa
            import pyarrow.parquet as pq

            return pq.read_table(pa.BufferReader(data))
        return Box(int(data))


register_serializer(BoxSerializer())


@step
def make() -> Box:
    return Box(3)


@step
def use(b: Box, tag: int = 0) -> int:
    return b.value + tag


@pipeline
def boxes(tag: int = 0):
    return use(make(), tag=tag)
"""


def cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``pipetrail ARGS`` in ``root`` in a child process: a run imports ``boxes.py``, whose
    serializer registers itself for the process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIPETRAIL_", "BOX_"))}
    return subprocess.run(
        [*PIPETRAIL, *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean, "COLUMNS": "200", **env},
    )


def cli_read(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pipetrail ARGS`` in ``root``, run in this process (for commands that import no
    pipeline)."""
    return cli_inline(root, *args, unset=("PIPETRAIL_", "BOX_"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    assert cli_read(folder, "init").returncode == 0
    (folder / "boxes.py").write_text(BOXES)
    return folder


def _run(root: Path, tag: int, **env: str) -> subprocess.CompletedProcess[str]:
    return cli(root, "run", "boxes.py", "-q", "-p", f"tag={tag}", **env)


def _make_output(root: Path) -> str:
    runs = json.loads(cli_read(root, "runs", "--json").stdout)
    completed = next(r for r in runs if r["status"] == "completed")
    shown = json.loads(cli_read(root, "show", completed["run_id"], "--json").stdout)
    digest: str = next(s for s in shown["steps"] if s["node_id"] == "make")["outputs"]["output"]
    return digest


def _failed_run(root: Path) -> dict[str, Any]:
    runs = json.loads(cli_read(root, "runs", "--json").stdout)
    assert runs[0]["status"] == "failed"
    shown: dict[str, Any] = json.loads(cli_read(root, "show", runs[0]["run_id"], "--json").stdout)
    return shown


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("mode", "cause"),
    [
        ("runtime", "RuntimeError: box reader lost its place"),
        ("value", "ValueError: invalid literal for int()"),
        ("unpickle", "UnpicklingError"),
        ("arrow", "ArrowInvalid"),
    ],
)
def test_a_serializer_failing_on_intact_bytes_is_one_line_naming_step_input_artifact(
    root: Path, mode: str, cause: str
) -> None:
    assert _run(root, 0).returncode == 0
    digest = _make_output(root)

    done = _run(root, 1, BOX_FAILS=mode)  # `make` is a hit; `use` loads its output

    assert done.returncode == 1, done.stderr
    line = _one_line(done)
    failed = _failed_run(root)
    assert re.match(
        rf"error: step 'use' of run {failed['run_id']} cannot load its input 'b' \(output "
        rf"'output' of step 'make', artifact {digest}\): Artifact {digest} \(boxes\.Box\) "
        r"could not be loaded by the 'box' serializer: ",
        line,
    ), line
    assert cause in line
    assert "compatible version" in line  # the fix
    assert {s["node_id"]: s["status"] for s in failed["steps"]} == {
        "make": "cached",
        "use": "failed",
    }
    assert failed["error"] == line.removeprefix("error: ")


READ_OUTPUT = """
import sys
from pathlib import Path

from pipetrail.errors import PipetrailError
from pipetrail.execution.loader import load_pipeline
from pipetrail.execution.project import Project
from pipetrail.execution.run import Run

load_pipeline("boxes.py")  # registers the box serializer
project = Project.at(Path("."))
try:
    Run(sys.argv[1], project, pipeline="boxes", status="completed", result=None).output_of("make")
except PipetrailError as exc:
    print(exc)
finally:
    project.close()
"""


def test_an_artifact_in_a_newer_format_version_is_read_as_its_step_recorded_or_refused(
    root: Path,
) -> None:
    assert _run(root, 0, BOX_VERSION="2").returncode == 0  # make's output: box@2
    newer = json.loads(cli_read(root, "runs", "--json").stdout)[0]["run_id"]
    # Version 1 is another cache key: `make` runs again and writes the same bytes, which
    # its step event records as box@1 (the artifact's own record stays box@2). The next
    # run's hit reads them as make's step event says (docs/adr/0013), not as box@2.
    assert _run(root, 1, BOX_VERSION="1").returncode == 0
    done = _run(root, 2, BOX_VERSION="1")
    assert done.returncode == 0, done.stderr
    assert "1 executed, 1 cached" in done.stdout

    # Reading the output of the run made with version 2, with version 1, says to upgrade.
    read = subprocess.run(
        [sys.executable, "-c", READ_OUTPUT, newer],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "BOX_VERSION": "1"},
    )
    assert read.returncode == 0, read.stderr
    digest = _make_output(root)
    assert f"Artifact {digest} (boxes.Box) was written in version 2 of the 'box' format" in (
        read.stdout
    )
    assert "reads versions up to 1; upgrade" in read.stdout


def test_a_pipeline_that_registers_a_serializer_runs_twice_in_one_process(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipetrail.store.serializers import registry

    monkeypatch.setattr(registry, "_default", None)  # this test's own shared registry
    first = cli_read(root, "run", "boxes.py", "-q")
    assert first.returncode == 0, first.stderr
    again = cli_read(root, "run", "boxes.py", "-q")  # registers `box` once more
    assert again.returncode == 0, again.stderr
    runs = json.loads(cli_read(root, "runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["completed", "completed"]
    assert registry.default_registry().names.count("box") == 1
