"""A library imported inside a step's body costs nothing on a hit, and its key stays honest.

docs/adr/0018-a-pipelines-own-imports.md: a cached re-run imports the pipeline file, so
the libraries it imports at module level are paid on every run; those a step imports in
its body are not imported when the step is a hit. The key still covers them: a library
by its distribution's version (found without importing it), a project module by its
code. These tests install a small library in a folder named ``site-packages`` (so it
counts as installed, not as project code), then check that a hit does not import it and
that a new version of it, or an edit of a project helper imported the same way, forces
the step to run again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pipetrail import pipeline, step


@step
def scaled(x: int) -> int:
    import fakelib
    from helper import offset

    return fakelib.scale(x) + offset()


@pipeline
def in_step_imports():
    return scaled(2)
"""

PROBE = """
import json, runpy, sys
sys.argv = ["pipetrail", *json.loads(sys.argv[1])]
try:
    runpy.run_module("pipetrail.cli.main", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _install(site: Path, version: str) -> None:
    """Install (or replace) ``fakelib`` VERSION in ``site``, as a wheel would."""
    for old in site.glob("fakelib-*.dist-info"):
        for file in old.iterdir():
            file.unlink()
        old.rmdir()
    package = site / "fakelib"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("def scale(x):\n    return 10 * x\n")
    info = site / f"fakelib-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakelib\nVersion: {version}\n")
    (info / "top_level.txt").write_text("fakelib\n")
    (info / "RECORD").write_text("fakelib/__init__.py,,\n")


def _run(project: Path, site: Path) -> tuple[str, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPETRAIL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["run", "pipeline.py", "-q"])],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    output, _, tail = done.stdout.rpartition("\nMODULES ")
    assert tail, done.stderr
    found = json.loads(tail)
    assert found["code"] in (0, None), done.stderr + output
    return output, set(found["modules"])


@pytest.fixture(scope="module")
def _first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the library (1.0) and the project after its first run, made once."""
    folder = tmp_path_factory.mktemp("in-step-imports")
    site = folder / "lib" / "site-packages"
    site.mkdir(parents=True)
    _install(site, "1.0")
    root = folder / "project"
    root.mkdir()
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "helper.py").write_text("def offset():\n    return 1\n")
    output, modules = _run(root, site)
    assert "1 executed, 0 cached of 1 steps" in output
    assert "fakelib" in modules
    return folder


@pytest.fixture
def project(_first_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of :func:`_first_run`'s folder (library, project and its record) of its own."""
    folder = tmp_path / "copy"
    shutil.copytree(_first_run, folder, symlinks=True)
    return folder / "project", folder / "lib" / "site-packages"


def test_a_hit_does_not_import_a_library_the_step_imports_in_its_body(
    project: tuple[Path, Path],
) -> None:
    root, site = project
    output, modules = _run(root, site)
    assert "0 executed, 1 cached of 1 steps" in output
    assert "fakelib" not in modules


def test_a_new_version_of_that_library_forces_the_step_to_run(
    project: tuple[Path, Path],
) -> None:
    root, site = project
    _install(site, "1.1")
    output, modules = _run(root, site)
    assert "1 executed, 0 cached of 1 steps" in output
    assert "fakelib" in modules
    output, _ = _run(root, site)
    assert "0 executed, 1 cached of 1 steps" in output


def test_an_edit_of_a_helper_imported_in_the_body_forces_the_step_to_run(
    project: tuple[Path, Path],
) -> None:
    root, site = project
    (root / "helper.py").write_text("def offset():\n    return 2\n")
    output, _ = _run(root, site)
    assert "1 executed, 0 cached of 1 steps" in output
