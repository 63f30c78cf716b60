"""`pipetrail run -c/--parity`, `env diff` and `env export` in a subprocess."""

from __future__ import annotations

import json
import textwrap
import tomllib
from typing import TYPE_CHECKING

import pytest

from tests.integration.test_params_parity import CONFIGURED
from tests.support.cli import cli_inline

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

pytestmark = pytest.mark.e2e


PIPELINE = CONFIGURED  # a pipeline whose params are a pydantic model


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_inline(root, *args)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "pipetrail.toml").write_text("[pipetrail]\n")
    (folder / "train.py").write_text(textwrap.dedent(PIPELINE))
    (folder / "base.yaml").write_text("epochs: 5\nmodel:\n  C: 0.5\n")
    (folder / "fast.toml").write_text("[model]\nC = 0.7\n")
    return folder


def events(root: Path) -> int:
    found = cli(root, "audit", "verify", "--json")
    return int(json.loads(found.stdout)["checked"]) if found.returncode == 0 else 0


def test_run_with_params_files_and_overrides(root: Path) -> None:
    done = cli(root, "run", "train.py", "-c", "base.yaml", "-c", "fast.toml", "-p", "epochs=2",
               "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["params"] == {"epochs": 2, "model": {"C": 0.7}}
    shown = json.loads(cli(root, "show", "latest", "--json").stdout)
    assert [f["name"] for f in shown["params_files"]] == ["base.yaml", "fast.toml"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "model:\n  C: [0.5\n", "bad.yaml, line 3, column 1: malformed YAML"),
        ("bad.toml", "epochs = \n", "bad.toml, line 1, column 10: malformed TOML"),
        ("bad.yaml", "model:\n  D: 1\n", "params file bad.yaml: key 'model.D' is unknown"),
        ("bad.json", '{"epochs": "many"}', "params file bad.json: key 'epochs' expects int"),
    ],
)
def test_bad_params_files_exit_2_and_record_nothing(
    root: Path, name: str, text: str, message: str
) -> None:
    (root / name).write_text(text)
    failed = cli(root, "run", "train.py", "-c", name, "-q")
    assert failed.returncode == 2
    assert message in failed.stderr
    assert events(root) == 0
    objects = root / ".pipetrail" / "objects"
    assert not objects.exists() or not any(objects.rglob("*"))


def test_parity_strict_and_env_commands(root: Path, tmp_path: Path) -> None:
    first = cli(root, "run", "train.py", "-q", "--json")
    assert first.returncode == 0, first.stderr
    ref = json.loads(first.stdout)["run_id"]
    again = cli(root, "run", "train.py", "-p", "epochs=4", "--parity", "strict",
                "--reference", ref, "-q", "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    shown = json.loads(cli(root, "show", "latest", "--json").stdout)
    assert shown["parity"] == {"mode": "strict", "reference": ref, "differences": []}

    no_mode = cli(root, "run", "train.py", "--reference", ref, "-q")
    assert no_mode.returncode == 2
    assert "--reference needs --parity" in no_mode.stderr

    diff = cli(root, "env", "diff", ref, "latest", "--json")
    assert diff.returncode == 0, diff.stderr
    data = json.loads(diff.stdout)
    assert data["a"] == ref
    assert data["same"] is True
    assert data["parity"] == []
    text = cli(root, "env", "diff", ref, "latest")
    assert "environments: same" in text.stdout

    out = tmp_path / "pylock.toml"
    exported = cli(root, "env", "export", ref, "--format", "pylock", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    assert tomllib.loads(out.read_text())["lock-version"] == "1.0"
    requirements = cli(root, "env", "export", ref)
    assert "\nclick==" in requirements.stdout
    docker = cli(root, "env", "export", ref, "--format", "dockerfile")
    assert "\nFROM " in docker.stdout
    missing = cli(root, "env", "export", "nope")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ")


def test_parity_differences_warn_or_refuse(root: Path) -> None:
    first = cli(root, "run", "train.py", "-q", "--json")
    ref = json.loads(first.stdout)["run_id"]
    # A distribution that appears after the reference run (the working directory is on
    # sys.path with `python -m`).
    dist_info = root / "fakepkg-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    before = events(root)
    refused = cli(root, "run", "train.py", "-p", "epochs=6", "--parity", "strict",
                  "--reference", ref, "-q")  # fmt: skip
    assert refused.returncode == 2
    assert f"the environment differs from reference run {ref} (parity is strict)" in (
        refused.stderr
    )
    assert "  - package fakepkg: not installed in the reference run, 1.0 here" in refused.stderr
    assert events(root) == before
    warned = cli(root, "run", "train.py", "-p", "epochs=6", "--parity", "warn",
                 "--reference", ref, "-q")  # fmt: skip
    assert warned.returncode == 0, warned.stderr
    assert warned.stderr.startswith(f"warning: the environment differs from reference run {ref}")
    assert "ParityWarning" not in warned.stderr
    shown = json.loads(cli(root, "show", "latest", "--json").stdout)
    assert shown["parity"]["differences"] == [
        {"kind": "package", "name": "fakepkg", "reference": None, "current": "1.0"}
    ]
    text = cli(root, "env", "diff", ref, "latest").stdout
    assert "  + fakepkg 1.0" in text
    assert "package fakepkg: not installed in the reference run, 1.0 here" in text
