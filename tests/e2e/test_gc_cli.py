"""`pipetrail runs delete` and `pipetrail gc` in a subprocess: messages, exit codes, JSON."""

from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_cli import PIPETRAIL, SLOW, cli, run_json, sample

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e
__all__ = ["sample"]  # the fixture, shared with test_cli


def _runs(root: Path) -> list[str]:
    return [row["run_id"] for row in json.loads(cli(root, "runs", "--json", check=True).stdout)]


def test_delete_then_gc_frees_objects_and_the_record_explains_it(sample: Path) -> None:
    first = run_json(sample, "wc.py", "-p", "minimum=1")["run_id"]
    second = run_json(sample, "wc.py", "-p", "minimum=2")["run_id"]

    done = cli(sample, "runs", "delete", first, "--reason", "threshold was wrong", check=True)
    assert f"deleted run {first}" in done.stdout
    assert second in done.stdout  # it reused the first run's steps: those outputs stay
    assert _runs(sample) == [second]
    shown = cli(sample, "show", first, check=True).stdout
    assert "DELETED" in shown
    assert "threshold was wrong" in shown

    dry = cli(sample, "gc", "--dry-run", "--grace", "0", check=True).stdout
    assert dry.startswith("would free ")
    report = json.loads(cli(sample, "gc", "--grace", "0", "--json", check=True).stdout)
    assert report["objects"] > 0
    assert report["kinds"]["packed"]["objects"] > 0
    assert report["event_seq"] is not None
    again = cli(sample, "gc", "--grace", "0", check=True).stdout
    assert again.startswith("freed 0 objects")

    verified = cli(sample, "store", "verify", check=True).stdout
    assert "collected by `pipetrail gc` (not an error)" in verified
    assert "store intact" in verified
    assert "ledger intact" in cli(sample, "audit", "verify", check=True).stdout
    shown = json.loads(cli(sample, "show", second, "--json", check=True).stdout)
    assert shown["deleted"] is None


def test_bad_deletions_and_collections_are_refused_with_one_message(sample: Path) -> None:
    run_id = run_json(sample, "wc.py")["run_id"]
    run_json(sample, "wc.py", "-p", "minimum=9")
    cases = [
        (("runs", "delete", run_id), "needs a reason"),
        (("runs", "delete", "ZZZZZZZZ", "--reason", "x"), "ZZZZZZZZ"),
        (("runs", "delete", run_id[:1], "--reason", "x"), "matches"),
        (("runs", "delete", "--reason", "x"), "name at least one run"),
        (("gc", "--grace", "soon"), "expected a duration"),
        (("gc", "--wait", "-3"), "expected a duration"),
    ]
    for args, message in cases:
        result = cli(sample, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert len(_runs(sample)) == 2  # nothing was deleted

    (sample / "pipetrail.toml").write_text('[pipetrail]\ngc_grace = "a while"\n')
    result = cli(sample, "gc", "--dry-run")
    assert result.returncode == 2
    assert "'pipetrail.gc_grace' must be a duration" in result.stderr


def test_gc_while_a_run_writes_refuses_and_a_running_run_cannot_be_deleted(
    sample: Path,
) -> None:
    (sample / "slow.py").write_text(SLOW)
    proc = subprocess.Popen(
        [*PIPETRAIL, "run", "slow.py", "-p", "seconds=20"],
        cwd=sample,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        running: list[str] = []
        while time.monotonic() < deadline and not running:
            time.sleep(0.2)
            rows = json.loads(cli(sample, "runs", "--json").stdout or "[]")
            running = [row["run_id"] for row in rows if row["status"] == "running"]
        assert running
        result = cli(sample, "gc", "--grace", "0")
        assert result.returncode == 4, result.stderr
        assert "a run is writing to the store" in result.stderr
        assert "--wait" in result.stderr
        result = cli(sample, "runs", "delete", running[0], "--reason", "x")
        assert result.returncode == 2
        assert "is still running" in result.stderr
        assert cli(sample, "gc", "--dry-run").returncode == 0  # a dry run reads only
    finally:
        proc.terminate()
        proc.wait(60)
