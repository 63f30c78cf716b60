"""``pipetrail audit bundle`` and ``audit verify-bundle`` as a user and an auditor run them.

The auditor's side runs in an empty folder with no project, and once with SQLAlchemy,
sqlite3 and psycopg made unimportable: the verifier must not need the database layer.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from typing import TYPE_CHECKING

import pytest

from pipetrail.governance.keys import create_key
from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

Completed = subprocess.CompletedProcess[str]

PIPELINE = """
from pipetrail import pipeline, step

@step
def train(auc: float = 0.97) -> dict:
    return {"roc_auc": auc}

@pipeline
def fit(auc: float = 0.97):
    return train(auc)
"""

# Runs the CLI with the database layer unimportable, and says which pipetrail modules it
# loaded; a module of the ledger's database side among them fails the test.
BLOCKED = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sqlalchemy", "sqlite3", "_sqlite3", "psycopg", "alembic"):
            raise ImportError(f"{name} is blocked: the verifier must not need it")
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["pipetrail", *sys.argv[1:]]
from pipetrail.cli.main import main
try:
    main()
finally:
    loaded = sorted(m for m in sys.modules if m.startswith("pipetrail.ledger"))
    print("LOADED " + " ".join(loaded), file=sys.stderr)
"""


def cli(cwd: Path, home: Path, *args: str, user: str = "alice") -> Completed:
    env = {"PIPETRAIL_HOME": str(home), "PIPETRAIL_USER": user}
    return cli_inline(cwd, *args, env=env, unset=("PIPETRAIL_",))


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, str]:
    root, home = tmp_path / "proj", tmp_path / "home"
    root.mkdir()
    key = create_key("alice", folder=home).text
    assert cli(root, home, "init").returncode == 0
    with (root / "pipetrail.toml").open("a") as toml:
        toml.write(f'\n[audit]\ncheckpoints = "{tmp_path / "witness"}"\n')
    (root / "fit.py").write_text(textwrap.dedent(PIPELINE))
    run = json.loads(cli(root, home, "run", "fit.py", "--json").stdout)["run_id"]
    done = cli(root, home, "model", "register", "churn", "--from", f"{run}:train")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "churn.tar"
    made = cli(root, home, "audit", "bundle", "churn@1", "-o", str(out))
    assert made.returncode == 0, made.stderr
    assert "audit bundle of churn@1:" in made.stdout
    assert "signed by alice" in made.stdout
    assert len(list((tmp_path / "witness").glob("*.checkpoint"))) == 1  # kept outside too
    return out, key


def test_an_auditor_verifies_a_bundle_in_an_empty_folder(
    bundle: tuple[Path, str], tmp_path: Path
) -> None:
    out, key = bundle
    empty = tmp_path / "auditor"
    empty.mkdir()
    done = cli(
        empty, tmp_path / "nohome", "audit", "verify-bundle", str(out), "--key", f"alice={key}"
    )
    assert done.returncode == 0, done.stderr
    assert "bundle verified:" in done.stdout
    assert "keys: --key" in done.stdout
    report = json.loads(
        cli(empty, tmp_path / "nohome", "audit", "verify-bundle", str(out), "--json").stdout
    )
    assert report["ok"]
    assert report["scope"] == {"kind": "model", "name": "churn", "version": 1}
    assert report["signatures"] >= 2  # alice's own addition, the registration
    assert list(empty.iterdir()) == []  # nothing extracted


def test_the_verifier_does_not_load_the_database_layer(
    bundle: tuple[Path, str], tmp_path: Path
) -> None:
    out, key = bundle
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPETRAIL_")}
    args = ["audit", "verify-bundle", str(out), "--key", f"alice={key}"]
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, *args],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "bundle verified:" in done.stdout
    loaded = done.stderr.split("LOADED ")[-1].split()
    assert set(loaded) <= {"pipetrail.ledger", "pipetrail.ledger.events", "pipetrail.ledger.merkle"}


def test_a_tampered_bundle_exits_3_and_bad_input_exits_2(
    bundle: tuple[Path, str], tmp_path: Path
) -> None:
    out, key = bundle
    with tarfile.open(out) as archive:
        members = {i.name: archive.extractfile(i).read() for i in archive}  # type: ignore[union-attr]
    members["report.md"] = members["report.md"].replace(b"churn", b"chern")
    edited = tmp_path / "edited.tar"
    with tarfile.open(edited, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    done = cli(
        tmp_path, tmp_path / "h", "audit", "verify-bundle", str(edited), "--key", f"alice={key}"
    )
    assert done.returncode == 3
    assert "FAILED report.md: its SHA-256 differs from the manifest's" in done.stderr
    assert "does not verify: 1 problem" in done.stderr
    not_tar = tmp_path / "notes.txt"
    not_tar.write_text("hello")
    done = cli(tmp_path, tmp_path / "h", "audit", "verify-bundle", str(not_tar))
    assert done.returncode == 2
    assert "is not a tar archive" in done.stderr
    done = cli(tmp_path, tmp_path / "h", "audit", "verify-bundle", str(out), "--key", "alice")
    assert done.returncode == 2
    assert "expected NAME=ed25519:BASE64" in done.stderr
    assert "Traceback" not in done.stderr


SENSITIVE = """
import pandas as pd
from pipetrail import pipeline, source, step

@step
def load(path) -> pd.DataFrame:
    return pd.read_csv(path)

@step
def train(note: str = "plain") -> dict:
    return {"roc_auc": 0.97, "note": note}

@pipeline
def clinic():
    return load(source("patients.csv", classification="pii")), train()
"""


def test_with_data_sensitive_content_needs_a_grant_and_a_changed_byte_fails(
    tmp_path: Path,
) -> None:
    root, home = tmp_path / "proj", tmp_path / "home"
    root.mkdir()
    alice = create_key("alice", folder=home).text
    rita = create_key("rita", folder=home).text
    assert cli(root, home, "init").returncode == 0
    (root / "clinic.py").write_text(textwrap.dedent(SENSITIVE))
    (root / "patients.csv").write_text("name,city\nZebulon,Paris\nOttilie,Lyon\n")
    done = cli(root, home, "user", "add", "rita", "--key", rita, "--role", "researcher")
    assert done.returncode == 0, done.stderr
    run = json.loads(cli(root, home, "run", "clinic.py", "--json").stdout)["run_id"]
    out = tmp_path / "run.tar"

    done = cli(root, home, "audit", "bundle", run, "-o", str(out), "--with-data", user="rita")
    assert done.returncode == 7, done.stderr
    assert "labelled pii" in done.stderr
    assert "pipetrail grant rita --label pii" in done.stderr
    assert "--skip-refused" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()

    done = cli(root, home, "audit", "bundle", run, "-o", str(out), "--with-data",
               "--skip-refused", "--json", user="rita")  # fmt: skip
    assert done.returncode == 0, done.stderr
    left = json.loads(done.stdout)["left_out"]
    assert left
    assert {e["label"] for e in left} == {"pii"}
    assert "note: left out the content of artifact" in cli(
        root, home, "audit", "bundle", run, "-o", str(out), "--with-data", "--skip-refused",
        user="rita",
    ).stderr  # fmt: skip
    done = cli(tmp_path, home, "audit", "verify-bundle", str(out), "--key", f"alice={alice}",
               "--key", f"rita={rita}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "note: the bundle leaves out the content of artifact blake3:" in done.stdout
    assert "(pii): no grant to read it" in done.stdout

    done = cli(root, home, "audit", "bundle", run, "-o", str(out), "--with-data")
    assert done.returncode == 0, done.stderr
    assert "with the content of" in done.stdout
    empty = tmp_path / "auditor"
    empty.mkdir()
    args = ["audit", "verify-bundle", str(out), "--key", f"alice={alice}"]
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, *args], cwd=empty, capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PIPETRAIL_")}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sealed (sensitive) members match" in done.stdout
    assert list(empty.iterdir()) == []

    with tarfile.open(out) as archive:
        members = {i.name: archive.extractfile(i).read() for i in archive}  # type: ignore[union-attr]
    name = next(n for n in members if n.startswith("data/"))
    members[name] = members[name][:-1] + bytes([members[name][-1] ^ 0x20])
    edited = tmp_path / "edited.tar"
    with tarfile.open(edited, "w") as archive:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    done = cli(
        empty, tmp_path / "h", "audit", "verify-bundle", str(edited), "--key", f"alice={alice}"
    )
    assert done.returncode == 3
    assert f"FAILED {name}: its SHA-256 differs" in done.stderr
    assert "FAILED data of artifact blake3:" in done.stderr
    assert "the data was changed" in done.stderr

    done = cli(root, home, "audit", "bundle", run, "-o", str(out), "--skip-refused")
    assert done.returncode == 2
    assert "--skip-refused applies to --with-data" in done.stderr
