"""The team setup: one PostgreSQL ledger and one S3 store shared by several checkouts.

Eight processes, each in its own copy of a small project (the same ``pipetrail.toml``),
run pipelines at the same time against one PostgreSQL database and one S3 prefix
(SeaweedFS on loopback). Every run is recorded exactly once, the chain verifies, and
every recorded object is verifiable from every checkout. A database written by a newer
pipetrail is refused with a message that says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.seaweedfs import SeaweedServer

pytestmark = pytest.mark.e2e

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]
CHECKOUTS = 8

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def load(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]

@step
def scale(xs: list[int], k: int = 1) -> list[int]:
    return [x * k for x in xs]

@step
def total(xs: list[int]) -> int:
    return sum(xs)

@pipeline
def team(k: int = 1):
    return total(scale(load(source("data/numbers.txt")), k=k))
"""


def _env(seaweed: SeaweedServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPETRAIL_"))}
    env.update(seaweed.env())
    return env


def _cli(root: Path, seaweed: SeaweedServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``pipetrail ARGS`` in ``root``, run in this process, with the server's credentials."""
    return cli_inline(root, *args, env=seaweed.env(), unset=("AWS_", "PIPETRAIL_"))


def _checkouts(tmp_path: Path, postgres_url: str, s3_url: str) -> list[Path]:
    original = tmp_path / "origin"
    (original / "data").mkdir(parents=True)
    (original / "data" / "numbers.txt").write_text(" ".join(map(str, range(100))) + "\n")
    (original / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    init = cli_inline(tmp_path, "init", str(original), "--ledger", postgres_url, "--store", s3_url)
    assert init.returncode == 0, init.stderr
    copies = []
    for i in range(CHECKOUTS):
        copy = tmp_path / f"checkout-{i}"
        shutil.copytree(original, copy)
        copies.append(copy)
    return copies


def test_eight_checkouts_share_one_ledger_and_one_store(
    tmp_path: Path, seaweed: SeaweedServer, postgres_url: str, s3_url: str
) -> None:
    checkouts = _checkouts(tmp_path, postgres_url, s3_url)
    env = _env(seaweed)
    # Each checkout runs k=1 (the same run everywhere: the same objects, written at
    # once by several processes) and its own k (objects only it writes).
    script = "; ".join(
        [
            f"{' '.join(PIPETRAIL)} run pipeline.py -q -p k=1",
            f"{' '.join(PIPETRAIL)} run pipeline.py -q -p k=$K",
        ]
    )
    procs = [
        subprocess.Popen(
            ["bash", "-c", f"set -e; {script}"],
            cwd=folder,
            env={**env, "K": str(10 + i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, folder in enumerate(checkouts)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err

    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            seqs = [r[0] for r in conn.execute(sa.text("SELECT seq FROM events ORDER BY seq"))]
            kinds = Counter(
                (r[0], r[1]) for r in conn.execute(sa.text("SELECT run_id, kind FROM events"))
            )
            runs = conn.execute(sa.text("SELECT status FROM runs")).scalars().all()
    finally:
        engine.dispose()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no duplicate
    assert len(runs) == 2 * CHECKOUTS
    assert set(runs) == {"completed"}
    started = [run for (run, kind), n in kinds.items() if kind == "run.started"]
    assert len(started) == 2 * CHECKOUTS
    for run_id in started:
        assert kinds[(run_id, "run.started")] == 1
        assert kinds[(run_id, "run.completed")] == 1

    audit = _cli(checkouts[0], seaweed, "audit", "verify", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    checked = set()
    for folder in checkouts:
        verify = _cli(folder, seaweed, "store", "verify", "--json")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        report = json.loads(verify.stdout)
        assert report["missing"] == []
        assert report["corrupt"] == []
        checked.add(report["checked"])
    assert len(checked) == 1  # every checkout sees the same objects


def test_a_database_newer_than_the_code_is_refused(
    tmp_path: Path, seaweed: SeaweedServer, postgres_url: str, s3_url: str
) -> None:
    root = _checkouts(tmp_path, postgres_url, s3_url)[0]
    first = _cli(root, seaweed, "run", "pipeline.py", "-q")
    assert first.returncode == 0, first.stderr
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    # A child process: the refused command leaves a PostgreSQL connection to its exit.
    again = subprocess.run(
        [*PIPETRAIL, "run", "pipeline.py", "-q"],
        cwd=root,
        env=_env(seaweed),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 4
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr
    assert "'9999'" in lines[0]
    assert "upgrade pipetrail" in lines[0]
