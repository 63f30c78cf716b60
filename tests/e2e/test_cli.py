"""The CLI on a sample project: exit codes, JSON output, integrity checks, crashes and
concurrent runs.

Commands run in this process (:func:`cli`) unless the process itself is tested: the
entry point's exit codes and help, a killed run, two runs at once (:func:`cli_process`).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    return path.read_text()

@step
def words(text: str) -> list[str]:
    print("splitting words")
    return text.split()

@step
def count(ws: list[str], minimum: int = 0) -> dict[str, int]:
    return {"words": len(ws), "long": sum(1 for w in ws if len(w) > minimum)}

@pipeline
def wordcount(minimum: int = 3):
    return count(words(read(source("data/text.txt"))), minimum=minimum)
"""

FAILING = """
from pipetrail import pipeline, step

@step
def ok() -> int:
    return 1

@step
def broken(x: int) -> int:
    raise RuntimeError("deliberate failure")

@pipeline
def failing():
    return broken(ok())
"""

SLOW = """
import time
from pipetrail import pipeline, step

@step
def first() -> int:
    return 1

@step(cache=False)
def slow(x: int, seconds: float = 0.0) -> int:
    time.sleep(seconds)
    return x + 1

@pipeline
def slowpipe(seconds: float = 30.0):
    return slow(first(), seconds=seconds)
"""


def cli(cwd: Path, *args: str, check: bool | None = None) -> subprocess.CompletedProcess[str]:
    """``pipetrail ARGS`` in ``cwd``, run in this process."""
    result = cli_inline(cwd, *args)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def cli_process(
    cwd: Path, *args: str, check: bool | None = None
) -> subprocess.CompletedProcess[str]:
    """``pipetrail ARGS`` in ``cwd``, run by the entry point in a child process."""
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [*PIPETRAIL, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def make_sample(root: Path) -> Path:
    """Make the sample project (``pipetrail init``, a text file, ``wc.py``) in ROOT."""
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "data").mkdir()
    (root / "data" / "text.txt").write_text("the quick brown fox jumps over the lazy dog")
    (root / "wc.py").write_text(textwrap.dedent(PIPELINE))
    return root


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample(tmp_path / "sample")


def run_json(root: Path, *args: str) -> dict[str, Any]:
    result = cli(root, "run", *args, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_run_cache_show_why_and_listing(sample: Path) -> None:
    first = run_json(sample, "wc.py")
    assert first["status"] == "completed"
    assert [s["status"] for s in first["steps"]] == ["completed"] * 3
    second = run_json(sample, "wc.py")
    assert [s["status"] for s in second["steps"]] == ["cached"] * 3
    third = run_json(sample, "wc.py", "-p", "minimum=4")
    assert [s["status"] for s in third["steps"]] == ["cached", "cached", "completed"]
    assert third["params"] == {"minimum": 4}

    listing = json.loads(cli(sample, "runs", "--json", check=True).stdout)
    assert [r["run_id"] for r in listing] == [third["run_id"], second["run_id"], first["run_id"]]
    assert listing[0]["steps_cached"] == 2
    assert listing[0]["steps_executed"] == 1

    why = json.loads(cli(sample, "why", third["run_id"], "count", "--json", check=True).stdout)
    assert why["changed"] == ["params"]
    assert why["previous"]["run_id"] == second["run_id"]
    text = cli(sample, "why", third["run_id"][:10], "count", check=True).stdout
    assert "params" in text
    assert "minimum" in text

    shown = cli(sample, "show", "latest", check=True).stdout
    assert third["run_id"] in shown
    assert "data/text.txt" in shown
    words = next(s for s in first["steps"] if s["node_id"] == "words")
    assert words["logs"] is not None


def test_exit_codes_for_bad_input_and_failures(sample: Path) -> None:
    result = cli_process(sample, "run", "wc.py", "-p", "minimum=abc")
    assert result.returncode == 2
    assert "minimum" in result.stderr
    result = cli_process(sample, "run", "wc.py", "-p", "nope=1")
    assert result.returncode == 2
    assert "no parameter 'nope'" in result.stderr
    assert json.loads(cli(sample, "runs", "--json").stdout) == []  # nothing recorded
    assert cli_process(sample, "run", "missing.py").returncode == 2
    assert cli_process(sample, "show", "ZZZZ").returncode == 2
    (sample / "failing.py").write_text(textwrap.dedent(FAILING))
    result = cli_process(sample, "run", "failing.py")
    assert result.returncode == 1
    assert "deliberate failure" in result.stderr
    failed = json.loads(cli(sample, "runs", "--json").stdout)[0]
    assert failed["status"] == "failed"


def test_run_rehash_ignores_the_stat_cache(sample: Path) -> None:
    from pipetrail.capture.statcache import StatCache, signature
    from pipetrail.hashing import digest_file

    text = sample / "data" / "text.txt"
    old_digest = digest_file(text)[0]
    first = run_json(sample, "wc.py")
    # Same size, mtime restored, cache entry re-signed: the change is invisible to stat.
    before = text.stat()
    text.write_text(text.read_text().replace("quick", "QUICK"))
    os.utime(text, ns=(before.st_atime_ns, before.st_mtime_ns))
    entry = (os.path.realpath(text), signature(text.stat()), old_digest, time.time_ns() - 10**11)
    with StatCache(sample / ".pipetrail" / "cache" / "stat.db") as cache:
        assert cache.update([entry], cached_ns=time.time_ns())
    stale = run_json(sample, "wc.py")
    assert [s["status"] for s in stale["steps"]] == ["cached"] * 3
    fresh = run_json(sample, "wc.py", "--rehash")
    statuses = {s["node_id"]: s["status"] for s in fresh["steps"]}
    assert statuses["read"] == "completed"  # the source's new digest reached the step
    assert fresh["run_id"] != first["run_id"]
    assert "--rehash" in cli(sample, "run", "--help", check=True).stdout


def test_audit_verify_detects_tampering_and_names_the_sequence(sample: Path) -> None:
    run_json(sample, "wc.py")
    ok = cli(sample, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout
    db = sample / ".pipetrail" / "ledger.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = 3")
    bad = cli(sample, "audit", "verify", "--json")
    assert bad.returncode == 3
    report = json.loads(bad.stdout)
    assert report["first_bad_seq"] == 3
    human = cli(sample, "audit", "verify")
    assert human.returncode == 3
    assert "sequence 3" in human.stderr


def test_store_verify_reports_corrupt_and_missing_objects(sample: Path) -> None:
    # Above the small-object pack's 16 KiB: the source is stored as a loose file.
    (sample / "data" / "text.txt").write_text("the quick brown fox " * 1000)
    run_json(sample, "wc.py")
    assert cli(sample, "store", "verify").returncode == 0
    objects = sample / ".pipetrail" / "objects"
    stored = sorted(p for p in objects.rglob("*") if p.is_file() and p.parent.name != "tmp")
    victim, gone = stored[0], stored[1]
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes() + b"x")
    gone.chmod(0o644)
    gone.unlink()
    result = cli(sample, "store", "verify", "--json")
    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert len(report["corrupt"]) == 1
    assert len(report["missing"]) >= 1


FOLDER_PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def total(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())

@pipeline
def sizes():
    return total(source("data/shards"))
"""


def test_store_verify_finds_a_corrupt_object_inside_a_segment(sample: Path) -> None:
    # Ten files of 20 KiB: copied in one batch, they share one segment file (ADR 0009).
    shards = sample / "data" / "shards"
    shards.mkdir()
    for i in range(10):
        (shards / f"part-{i}.bin").write_bytes(bytes([i]) * 20_000)
    (sample / "sizes.py").write_text(textwrap.dedent(FOLDER_PIPELINE))
    run_json(sample, "sizes.py")
    (segment,) = (sample / ".pipetrail" / "objects" / "segments").iterdir()
    assert segment.stat().st_size == 200_000
    assert cli(sample, "store", "verify").returncode == 0
    segment.chmod(0o644)
    with open(segment, "r+b") as f:
        f.seek(3 * 20_000 + 7)
        f.write(b"\xff")
    result = cli(sample, "store", "verify", "--json")
    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert len(report["corrupt"]) == 1
    assert report["missing"] == []
    again = cli(sample, "store", "verify", "--json")  # quarantined: now missing
    assert json.loads(again.stdout)["missing"] == report["corrupt"]


def test_store_verify_expects_no_copy_of_sources_tracked_by_reference(sample: Path) -> None:
    shards = sample / "data" / "shards"
    shards.mkdir()
    for i in range(10):
        (shards / f"part-{i}.bin").write_bytes(bytes([i]) * 20_000)
    pipeline = FOLDER_PIPELINE.replace(
        'source("data/shards")', 'source("data/shards", by_reference=True)'
    )
    (sample / "sizes.py").write_text(textwrap.dedent(pipeline))
    run_json(sample, "sizes.py")
    assert not (sample / ".pipetrail" / "objects" / "segments").exists()
    result = cli(sample, "store", "verify", "--json")
    assert result.returncode == 0, result.stdout


def test_store_clean_removes_only_old_leftovers(sample: Path) -> None:
    run_json(sample, "wc.py")
    objects = sample / ".pipetrail" / "objects"
    (objects / "segments").mkdir(exist_ok=True)
    stale_tmp = objects / "tmp" / "abc.123.1.0"  # a killed writer's temp file
    orphan = objects / "segments" / ("0" * 32 + ".seg")
    young = objects / "tmp" / "def.456.1.0"  # a writer's, still running
    for path in (stale_tmp, orphan, young):
        path.write_bytes(b"partial")
    old = time.time() - 3 * 3600
    for path in (stale_tmp, orphan):
        os.utime(path, (old, old))
    before = sorted(objects.rglob("*"))
    result = cli(sample, "store", "clean", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["removed"] == 2
    assert sorted(objects.rglob("*")) == [p for p in before if p not in (stale_tmp, orphan)]
    assert cli(sample, "store", "verify").returncode == 0
    human = cli(sample, "store", "clean", "--older-than", "0")
    assert human.returncode == 0
    assert "removed 1 leftover files" in human.stdout
    bad = cli(sample, "store", "clean", "--older-than", "soon")
    assert bad.returncode == 2
    assert "expected a duration such as 90, 30m, 1h or 2d, got 'soon'" in bad.stderr


def test_killed_run_shows_as_crashed(sample: Path) -> None:
    (sample / "slow.py").write_text(textwrap.dedent(SLOW))
    proc = subprocess.Popen(
        [*PIPETRAIL, "run", "slow.py", "-q"],
        cwd=sample,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    running = False
    while time.monotonic() < deadline and not running:
        time.sleep(0.2)
        listing = json.loads(cli(sample, "runs", "--json").stdout or "[]")
        running = (
            bool(listing)
            and listing[0]["status"] == "running"
            and listing[0]["steps_executed"] >= 1
        )
    assert running, "the run never reached its slow step"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    listing = json.loads(cli(sample, "runs", "--json").stdout)
    assert listing[0]["status"] == "crashed"
    # The next run records the crash in the ledger itself.
    cli(sample, "run", "slow.py", "-q", "-p", "seconds=0", check=True)
    with sqlite3.connect(sample / ".pipetrail" / "ledger.db") as conn:
        kinds = [row[0] for row in conn.execute("SELECT kind FROM events ORDER BY seq")]
    assert "run.crashed" in kinds
    assert cli(sample, "audit", "verify").returncode == 0


def test_two_runs_at_once_both_complete(sample: Path) -> None:
    (sample / "slow.py").write_text(textwrap.dedent(SLOW))
    procs = [
        subprocess.Popen(
            [*PIPETRAIL, "run", "slow.py", "-q", "-p", "seconds=0.5"],
            cwd=sample,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    listing = json.loads(cli(sample, "runs", "--json").stdout)
    assert [r["status"] for r in listing] == ["completed", "completed"]
    assert cli(sample, "audit", "verify").returncode == 0


def test_help_and_json_listing_on_empty_project(tmp_path: Path) -> None:
    assert "Usage" in cli_process(tmp_path, "--help", check=True).stdout
    cli(tmp_path, "init", check=True)  # outside a project, read-only commands refuse
    assert json.loads(cli(tmp_path, "runs", "--json", check=True).stdout) == []
