"""``pipetrail audit checkpoint``, ``audit verify --checkpoints`` and ``audit prove``.

Run as a user would, in subprocesses, on a SQLite project: the attacks are made on the
database file itself (rows deleted with sqlite3, an old copy of the file restored), and
the inclusion proof is checked with the standard library alone, as docs/audit.md tells.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from pipetrail.governance.keys import create_key
from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]
Completed = subprocess.CompletedProcess[str]

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()]

@step
def total(xs: list[float], scale: int) -> float:
    return sum(xs) * scale

@pipeline
def p(scale: int = 1):
    return total(read(source("data/nums.txt", by_reference=True)), scale)
"""


class Project:
    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home
        self.db = root / ".pipetrail" / "ledger.db"

    def cli(self, *args: str, user: str = "alice") -> Completed:
        env = {"PIPETRAIL_HOME": str(self.home), "PIPETRAIL_USER": user, "COLUMNS": "80"}
        return cli_inline(self.root, *args, env=env, unset=("PIPETRAIL_",))

    def run(self, scale: int) -> None:
        done = self.cli("run", "pipeline.py", "-p", f"scale={scale}", "-q")
        assert done.returncode == 0, done.stderr

    def sql(self, *statements: str) -> None:
        with sqlite3.connect(self.db) as conn:
            for statement in statements:
                conn.execute(statement)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    (root / "data" / "nums.txt").write_text("1 2 3\n")
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    made = Project(root, tmp_path / "home")
    create_key("alice", folder=made.home)
    made.run(1)
    return made


def verify(project: Project, where: Path, *extra: str) -> Completed:
    return project.cli("audit", "verify", "--checkpoints", str(where), *extra)


def test_checkpoints_in_a_folder_and_a_repository_verify(project: Project, tmp_path: Path) -> None:
    folder, repo = tmp_path / "witness", tmp_path / "repo"
    made = project.cli("audit", "checkpoint", "--to", str(folder), "--json")
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)
    assert first["signer"] == "alice"
    assert first["origin"].startswith("pipetrail/")
    project.run(2)
    for where in (["--to", str(folder)], ["--git", str(repo)]):
        done = project.cli("audit", "checkpoint", *where)
        assert done.returncode == 0, done.stderr
        assert "signed by alice" in done.stdout
    assert (folder / "keys").read_text().startswith("alice ed25519:")
    log = subprocess.run(["git", "-C", str(repo), "log", "--oneline"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "checkpoint pipetrail/" in log
    for where in (folder, repo):
        done = verify(project, where)
        assert done.returncode == 0, done.stderr
        assert "consistent with all" in done.stdout
    report = json.loads(verify(project, folder, "--json").stdout)
    assert report["ok"]
    sizes = [c["size"] for c in report["checkpoints"]["checkpoints"]]
    assert sizes == [first["size"], report["checked"]]  # the second: every event


def test_tail_truncation_of_the_file_exits_3_naming_the_checkpoint(
    project: Project, tmp_path: Path
) -> None:
    folder = tmp_path / "witness"
    project.run(2)
    assert project.cli("audit", "checkpoint", "--to", str(folder)).returncode == 0
    with sqlite3.connect(project.db) as conn:
        size = conn.execute("SELECT seq FROM ledger_head").fetchone()[0]
        keep = size - 3
        last = conn.execute("SELECT hash FROM events WHERE seq = ?", (keep,)).fetchone()[0]
        for table, column in (("runs", "last_seq"), ("step_runs", "last_seq"),
                              ("artifacts", "first_seq"), ("sources", "seq")):  # fmt: skip
            conn.execute(f"DELETE FROM {table} WHERE {column} > ?", (keep,))  # noqa: S608
        conn.execute("DELETE FROM step_run_io WHERE step_run_id NOT IN "
                     "(SELECT step_run_id FROM step_runs)")  # fmt: skip
        conn.execute("DELETE FROM events WHERE seq > ?", (keep,))
        conn.execute("UPDATE ledger_head SET seq = ?, hash = ?", (keep, last))
    done = verify(project, folder)
    assert done.returncode == 3
    assert f"holds only {keep}" in done.stderr
    # The insider tidies up the derived rows and the tree: the chain is then happy.
    assert project.cli("audit", "rebuild").returncode == 0
    done = verify(project, folder)
    assert done.returncode == 3
    assert "ledger intact" in done.stdout
    assert f"holds only {keep}" in done.stderr
    assert "checkpoint FAILED: " + str(folder) in done.stderr
    assert "Traceback" not in done.stderr


def test_restoring_an_old_copy_of_the_database_exits_3(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "witness"
    assert project.cli("audit", "checkpoint", "--to", str(folder)).returncode == 0
    backup = tmp_path / "backup.db"
    shutil.copy(project.db, backup)
    project.run(2)
    assert project.cli("audit", "checkpoint", "--to", str(folder)).returncode == 0
    shutil.copy(backup, project.db)
    for extra in ("-wal", "-shm"):
        project.db.with_name(project.db.name + extra).unlink(missing_ok=True)
    done = verify(project, folder)
    assert done.returncode == 3, done.stderr
    assert "restored from an older copy" in done.stderr
    assert "ledger intact" in done.stdout  # the chain alone is happy with the old copy


def test_forged_and_foreign_checkpoints_exit_3(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "witness"
    assert project.cli("audit", "checkpoint", "--to", str(folder)).returncode == 0
    note = next(folder.glob("*.checkpoint"))
    text = note.read_text()
    lines = text.split("\n")
    lines[2] = base64.b64encode(b"\x00" * 32).decode()
    note.write_text("\n".join(lines))
    done = verify(project, folder)
    assert done.returncode == 3
    assert "the text was changed" in done.stderr
    note.write_text(text)
    assert verify(project, folder).returncode == 0
    # Signed by someone whose key is not trusted.
    create_key("mallory", folder=project.home)
    assert project.cli("audit", "checkpoint", "--to", str(folder), user="mallory").returncode == 0
    alice = (folder / "keys").read_text().splitlines()[0].replace(" ", "=", 1)
    done = verify(project, folder, "--key", alice)
    assert done.returncode == 3
    assert "signed by mallory, none of them a known key" in done.stderr


def test_another_projects_checkpoint_exits_3(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "witness"
    other_root = tmp_path / "other"
    shutil.copytree(project.root, other_root, ignore=shutil.ignore_patterns(".pipetrail"))
    other = Project(other_root, project.home)
    other.run(5)
    assert other.cli("audit", "checkpoint", "--to", str(folder)).returncode == 0
    done = verify(project, folder)
    assert done.returncode == 3
    assert "from another project" in done.stderr


def test_bad_input_is_one_clear_message(project: Project, tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    cases = [
        (("audit", "checkpoint", "--to", "a", "--git", "b"), "not both"),
        (("audit", "checkpoint"), "where should the checkpoint go"),
        (("audit", "verify", "--checkpoints", str(nowhere), "--key", "x"), "expected NAME="),
        (("audit", "verify", "--checkpoints", str(nowhere), "--key", "bob=abc"),
         "is not a public key"),
        (("audit", "verify", "--checkpoints", str(nowhere)), "no key is trusted"),
        (("audit", "prove", "999"), "no event 999"),
        (("audit", "prove", "2", "--size", "1"), "cannot hold event 2"),
    ]  # fmt: skip
    for args, message in cases:
        done = project.cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    no_key = project.cli("audit", "checkpoint", "--to", str(tmp_path / "w"), user="bob")
    assert no_key.returncode == 2
    assert "no signing key for 'bob'" in no_key.stderr
    bad_user = project.cli("audit", "checkpoint", "--to", str(tmp_path / "w"), user="Bob Smith")
    assert bad_user.returncode == 2
    assert "cannot name a user" in bad_user.stderr
    (tmp_path / "w2").mkdir()
    (tmp_path / "w2" / "keys").write_text("alice not-a-key\n")
    done = verify(project, tmp_path / "w2")
    assert done.returncode == 2
    assert "line 1" in done.stderr


def test_an_inclusion_proof_checks_by_hand(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "witness"
    assert project.cli("audit", "checkpoint", "--to", str(folder)).returncode == 0
    project.run(3)  # the ledger grows past the checkpoint
    note = next(folder.glob("*.checkpoint")).read_text().splitlines()
    size, signed_root = int(note[1]), note[2]
    for seq in (1, size // 2, size):
        done = project.cli("audit", "prove", str(seq), "--size", str(size))
        assert done.returncode == 0, done.stderr
        proof = json.loads(done.stdout)
        # docs/audit.md, "Checking an inclusion proof by hand", with hashlib alone.
        node = hashlib.sha256(b"\x00" + bytes.fromhex(proof["leaf_data"])).digest()
        index, last = proof["leaf_index"], proof["tree_size"] - 1
        for sibling_hex in proof["inclusion_path"]:
            sibling = bytes.fromhex(sibling_hex)
            if index % 2 == 1 or index == last:
                node = hashlib.sha256(b"\x01" + sibling + node).digest()
                while index % 2 == 0 and index != 0:
                    index, last = index // 2, last // 2
            else:
                node = hashlib.sha256(b"\x01" + node + sibling).digest()
            index, last = index // 2, last // 2
        assert last == 0
        assert base64.b64encode(node).decode() == signed_root
        assert proof["leaf_data"] == proof["event"]["hash"].removeprefix("blake3:")


def test_a_checkpoint_after_every_run_when_configured(project: Project, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (project.root / "pipetrail.toml").write_text(
        f'[pipetrail]\n\n[audit]\ncheckpoints = "{repo}"\ncheckpoint_after_run = true\n'
    )
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    done = project.cli("run", "pipeline.py", "-p", "scale=7", "-q")
    assert done.returncode == 0, done.stderr
    assert "checkpoint of" in done.stderr
    project.run(8)
    assert len(list(repo.glob("*.checkpoint"))) == 2
    assert verify(project, repo).returncode == 0
    made = project.cli("audit", "checkpoint")  # the configured place
    assert made.returncode == 0, made.stderr
    assert str(repo) in made.stdout
    # A run by someone without a key still succeeds, with a warning.
    nokey = project.cli("run", "pipeline.py", "-p", "scale=9", "-q", user="carol")
    assert nokey.returncode == 0
    assert "warning: no checkpoint was signed after the run" in nokey.stderr


def test_a_checkpoint_after_every_governance_act_when_configured(
    project: Project, tmp_path: Path
) -> None:
    witness = tmp_path / "witness"
    (project.root / "pipetrail.toml").write_text(
        f'[pipetrail]\n\n[audit]\ncheckpoints = "{witness}"\ncheckpoint_after_governance = true\n'
    )
    done = project.cli("user", "init")
    assert done.returncode == 0, done.stderr
    assert "checkpoint of" in done.stderr
    run_id = json.loads(project.cli("runs", "--json").stdout)[0]["run_id"]
    done = project.cli("model", "register", "m", "--from", f"{run_id}:total")
    assert done.returncode == 0, done.stderr
    assert len(list(witness.glob("*.checkpoint"))) == 2
    assert project.cli("model", "list").returncode == 0  # records nothing: signs nothing
    refused = project.cli("user", "grant", "alice", "admin")  # holds it already
    assert refused.returncode == 7
    assert len(list(witness.glob("*.checkpoint"))) == 2
    report = json.loads(verify(project, witness, "--json").stdout)
    assert report["ok"]
    newest = report["checkpoints"]["checkpoints"][-1]["size"]
    assert newest == report["checkpoints"]["size"]  # the last act is covered
    (project.root / "pipetrail.toml").write_text(
        '[pipetrail]\n\n[audit]\ncheckpoint_after_governance = "yes"\n'
    )
    done = project.cli("model", "register", "m", "--from", f"{run_id}:total")
    assert done.returncode == 0, done.stderr
    assert "checkpoint_after_governance must be true or false, not 'yes'" in done.stderr
