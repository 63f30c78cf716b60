"""A project whose artifact store is an S3 bucket (SeaweedFS on loopback), through the CLI.

A whole run, a cached re-run, ``show --logs``, ``get``, ``store verify`` and ``reproduce``
work with ``store = "s3://..."``; nothing lands in the local objects folder; and an
unreachable endpoint, wrong credentials or a missing bucket stop the run with exit 4 and
one line naming the endpoint and the bucket, no object written, the run recorded failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from typing import TYPE_CHECKING

import pytest

from pipetrail.store.s3 import S3Store
from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.seaweedfs import SeaweedServer

pytestmark = pytest.mark.e2e

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]
Completed = subprocess.CompletedProcess[str]

PIPELINE = """
from pathlib import Path
from pipetrail import log_metric, pipeline, source, step

@step
def read(folder: Path) -> list[float]:
    print("reading", sorted(p.name for p in folder.iterdir()))
    return [float(x) for p in sorted(folder.iterdir()) for x in p.read_text().split()]

@step
def scale(xs: list[float], factor: float = 2.0) -> list[float]:
    return [x * factor for x in xs]

@step
def score(xs: list[float]) -> dict[str, float]:
    log_metric("sum", sum(xs))
    return {"mean": sum(xs) / len(xs)}

@pipeline
def numbers(factor: float = 2.0):
    return score(scale(read(source("data")), factor=factor))
"""


def _cli(root: Path, *args: str, env: dict[str, str]) -> Completed:
    return cli_inline(root, *args, env={"COLUMNS": "80", **env}, unset=("AWS_",))


def _project(root: Path, store_url: str, extra: str = "") -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.txt").write_text("1 2 3\n")
    (root / "data" / "b.txt").write_text("4 5\n")
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    (root / "pipetrail.toml").write_text(f'[pipetrail]\nstore = "{store_url}"\n{extra}')
    return root


def _listing(seaweed: SeaweedServer, url: str) -> list[str]:
    store = S3Store(url, cache_dir=seaweed.base_dir / "probe-cache", **_credentials(seaweed))
    return list(store.iter_digests())


def _credentials(seaweed: SeaweedServer) -> dict[str, str]:
    env = seaweed.env()
    return {
        "endpoint": env["AWS_ENDPOINT_URL"],
        "access_key_id": env["AWS_ACCESS_KEY_ID"],
        "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def test_run_rerun_show_get_verify_reproduce(
    tmp_path: Path, seaweed: SeaweedServer, s3_url: str
) -> None:
    root = _project(tmp_path / "proj", s3_url)
    env = seaweed.env()
    first = _cli(root, "run", "pipeline.py", "--json", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    run_id = summary["run_id"]
    stored = _listing(seaweed, s3_url)
    # The outputs, the source files and the captured logs are all in the bucket.
    assert len(stored) >= 6
    local = root / ".pipetrail" / "objects"
    assert not local.exists() or not any(p.is_file() for p in local.rglob("*"))

    again = _cli(root, "run", "pipeline.py", "--json", env=env)
    assert again.returncode == 0, again.stderr
    steps = json.loads(again.stdout)["steps"]
    assert all(s["status"] == "cached" for s in steps), steps

    shown = _cli(root, "show", run_id, "--logs", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "reading ['a.txt', 'b.txt']" in shown.stdout

    target = tmp_path / "scaled.json"
    got = _cli(root, "get", f"{run_id}:scale", "-o", str(target), env=env)
    assert got.returncode == 0, got.stderr
    assert target.exists()
    assert target.stat().st_size > 0

    verified = _cli(root, "store", "verify", "--json", env=env)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"]
    assert report["checked"] == len(_listing(seaweed, s3_url))
    assert report["artifacts"] == s3_url

    again_run = _cli(root, "reproduce", run_id, "--json", env=env)
    assert again_run.returncode == 0, again_run.stderr
    assert json.loads(again_run.stdout)["verdict"] == "reproduced"

    # The read cache sits in .pipetrail/cache/s3; nothing secret reaches the ledger.
    assert any((root / ".pipetrail" / "cache" / "s3").rglob("*"))
    ledger = (root / ".pipetrail" / "ledger.db").read_bytes()
    assert env["AWS_SECRET_ACCESS_KEY"].encode() not in ledger


def test_store_verify_names_an_object_missing_from_the_bucket(
    tmp_path: Path, seaweed: SeaweedServer, s3_url: str
) -> None:
    root = _project(tmp_path / "proj", s3_url)
    env = seaweed.env()
    assert _cli(root, "run", "pipeline.py", env=env).returncode == 0
    store = S3Store(s3_url, cache_dir=tmp_path / "c", **_credentials(seaweed))
    victim = sorted(store.iter_digests())[0]
    assert store.remove([victim], older_than=0) == [victim]
    verified = _cli(root, "store", "verify", env=env)
    assert verified.returncode == 3
    assert f"missing: {victim}" in verified.stderr


def test_settings_from_the_store_s3_table(
    tmp_path: Path, seaweed: SeaweedServer, s3_url: str
) -> None:
    creds = _credentials(seaweed)
    table = (
        "[store.s3]\n"
        f'endpoint = "{creds["endpoint"]}"\n'
        f'access_key_id = "{creds["access_key_id"]}"\n'
        f'secret_access_key = "{creds["secret_access_key"]}"\n'
        'cache_size = "1MiB"\n'
    )
    root = _project(tmp_path / "proj", s3_url, extra=table)
    done = _cli(root, "run", "pipeline.py", env={})
    assert done.returncode == 0, done.stderr
    assert _listing(seaweed, s3_url)


def test_init_writes_the_team_settings(tmp_path: Path) -> None:
    root = tmp_path / "team"
    url = "postgresql://alice@db.example/pipetrail"
    done = _cli(tmp_path, "init", str(root), "--ledger", url, "--store", "s3://b/p", env={})
    assert done.returncode == 0, done.stderr
    settings = tomllib.loads((root / "pipetrail.toml").read_text())["pipetrail"]
    assert settings["metadata"] == url
    assert settings["store"] == "s3://b/p"
    bad = _cli(tmp_path, "init", str(tmp_path / "x"), "--store", "/data/objects", env={})
    assert bad.returncode == 2
    assert "s3://" in bad.stderr


def _bad_env(seaweed: SeaweedServer, case: str) -> tuple[dict[str, str], str]:
    env = seaweed.env()
    if case == "unreachable":
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
        return env, "cannot be reached"
    if case == "credentials":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"  # noqa: S105 - a wrong one on purpose
        return env, "access denied"
    return env, "does not exist"


@pytest.mark.parametrize("case", ["unreachable", "credentials", "bucket"])
def test_store_failures_stop_the_run_with_one_line(
    tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str, case: str
) -> None:
    env, cause = _bad_env(seaweed, case)
    bucket = f"missing-{os.getpid()}" if case == "bucket" else s3_bucket
    url = f"s3://{bucket}/bad-{case}"
    root = _project(tmp_path / "proj", url)
    done = _cli(root, "run", "pipeline.py", env=env)
    assert done.returncode == 4, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"s3://{bucket}" in errors[0]
    assert env["AWS_ENDPOINT_URL"] in errors[0]
    assert cause in errors[0]
    assert env["AWS_SECRET_ACCESS_KEY"] not in done.stderr
    if case != "bucket":
        assert _listing(seaweed, url) == []  # no object, not even a partial one
    shown = _cli(root, "show", "latest", "--json", env=seaweed.env())
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["status"] == "failed"
    assert cause in json.dumps(run)
