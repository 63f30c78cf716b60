"""`pipetrail gc --policy` and `pipetrail runs pin` in a subprocess: what is deleted,
what a pin keeps, the tombstone `show` and `get` print, and the refusals."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_cli import cli, run_json, sample

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e
__all__ = ["sample"]  # the fixture, shared with test_cli


def _policy(root: Path, rules: str) -> None:
    (root / "pipetrail.toml").write_text(f"[pipetrail]\n\n[retention]\n{rules}")


def test_policy_deletes_old_runs_keeps_pinned_ones_and_leaves_a_tombstone(sample: Path) -> None:
    old = run_json(sample, "wc.py", "-p", "minimum=1")["run_id"]
    kept = run_json(sample, "wc.py", "-p", "minimum=4")["run_id"]
    pinned = cli(sample, "runs", "pin", kept, "--reason", "audit baseline", check=True)
    assert f"pinned run {kept}" in pinned.stdout
    _policy(sample, 'exploration_runs = "1s"\n')
    time.sleep(1.2)

    dry = json.loads(cli(sample, "gc", "--policy", "--dry-run", "--grace", "0", "--json").stdout)
    assert list(dry["expired"]) == [old]
    assert dry["protected"][kept]["why"] == "pinned (audit baseline)"
    assert dry["collection"] is None
    assert dry["would_free"]["objects"] > 0
    assert 0 < dry["expired"][old]["bytes"] <= dry["would_free"]["bytes"]
    text = cli(sample, "gc", "--policy", "--dry-run", "--grace", "0", check=True).stdout
    assert f"{old} (wordcount, completed): exploration_runs; frees " in text
    assert f"would free {dry['would_free']['objects']} objects" in text

    done = cli(sample, "gc", "--policy", "--grace", "0", check=True).stdout
    assert "deleted 1 runs past their rule" in done
    assert f"{old} (wordcount, completed): exploration_runs" in done
    assert f"{kept}: pinned (audit baseline)" in done
    assert "(store.collected)" in done

    shown = cli(sample, "show", old, check=True).stdout
    assert "retention policy exploration_runs = 1s" in shown
    assert "PURGED" in shown
    assert "by policy exploration_runs on " in shown
    traced = cli(sample, "lineage", old, check=True).stdout
    assert f"run {old} was purged by policy exploration_runs on " in traced
    # The kept run reused the old run's first steps: its lineage reaches the old run
    # (whose shared objects stay, the kept run names them) and says it was purged.
    reused = cli(sample, "lineage", kept, check=True).stdout
    assert f"run {old} was purged" in reused
    assert f"run {kept} was purged" not in reused
    got = cli(sample, "get", f"{old}:count", "-o", str(sample / "out.json"))
    assert got.returncode != 0
    assert "removed on purpose" in got.stderr
    assert "purged by policy exploration_runs" in got.stderr
    assert "Traceback" not in got.stderr
    assert cli(sample, "get", f"{kept}:count", "-o", str(sample / "kept.json")).returncode == 0
    assert "store intact" in cli(sample, "store", "verify", check=True).stdout
    assert "ledger intact" in cli(sample, "audit", "verify", check=True).stdout

    cli(sample, "runs", "unpin", kept, check=True)
    again = json.loads(cli(sample, "gc", "--policy", "--grace", "0", "--json").stdout)
    assert list(again["expired"]) == [kept]


def test_a_step_outputs_rule_keeps_the_run_and_its_record(sample: Path) -> None:
    old = run_json(sample, "wc.py", "-p", "minimum=1")["run_id"]
    _policy(sample, 'step_outputs = "1s"\n')
    time.sleep(1.2)
    dry = cli(sample, "gc", "--policy", "--dry-run", "--grace", "0", check=True).stdout
    assert "would remove the content of 1 runs past a content rule (runs stay)" in dry
    assert f"  {old} (wordcount, completed): step_outputs; frees " in dry
    done = cli(sample, "gc", "--policy", "--grace", "0", check=True).stdout
    assert "removed the content of 1 runs" in done
    assert "(store.collected)" in done
    listed = json.loads(cli(sample, "runs", "--json", check=True).stdout)
    assert [row["run_id"] for row in listed] == [old]  # the run is not deleted
    shown = cli(sample, "show", old, check=True).stdout
    assert "its step outputs by policy step_outputs on " in shown
    assert "DELETED" not in shown
    got = cli(sample, "get", f"{old}:count", "-o", str(sample / "out.json"))
    assert got.returncode != 0
    assert "removed on purpose: the step outputs of run" in got.stderr
    assert "Traceback" not in got.stderr
    traced = cli(sample, "lineage", old, check=True).stdout
    assert f"the step outputs of run {old} were purged by policy step_outputs" in traced
    assert "store intact" in cli(sample, "store", "verify", check=True).stdout
    again = json.loads(cli(sample, "gc", "--policy", "--grace", "0", "--json").stdout)
    assert again["content"] == {}


def test_bad_policies_and_pins_are_refused_with_one_message(sample: Path) -> None:
    run_id = run_json(sample, "wc.py")["run_id"]
    cases = [
        ('old_runs = "3d"\n', ("gc", "--policy"), "unknown key 'retention.old_runs'"),
        ('failed_runs = "soon"\n', ("gc", "--policy"), "must be a duration longer than zero"),
        ('sources = "-2d"\n', ("gc", "--policy"), "'retention.sources' must be a duration"),
        ("", ("gc", "--policy", "--dry-run"), "has no [retention] rules"),
        ('failed_runs = "1d"\n', ("runs", "pin", run_id), "a pin needs a reason"),
        ('failed_runs = "1d"\n', ("runs", "unpin", run_id), "is not pinned"),
        ('failed_runs = "1d"\n', ("runs", "pin", "ZZZZ", "--reason", "x"), "ZZZZ"),
    ]
    for rules, args, message in cases:
        _policy(sample, rules)
        result = cli(sample, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    shown = json.loads(cli(sample, "show", run_id, "--json", check=True).stdout)
    assert shown["deleted"] is None
    assert shown["tags"] == {}


def test_purge_of_a_source_reports_what_a_pin_keeps(sample: Path) -> None:
    first = run_json(sample, "wc.py", "-p", "minimum=1")["run_id"]
    second = run_json(sample, "wc.py", "-p", "minimum=4")["run_id"]
    cli(sample, "runs", "pin", second, "--reason", "legal hold", check=True)

    refused = cli(sample, "purge", "--source", "data/text.txt")
    assert refused.returncode == 2
    assert "a purge needs a reason" in refused.stderr
    unknown = cli(sample, "purge", "--source", "data/other.txt", "--reason", "x")
    assert unknown.returncode == 2
    assert "no run read a source 'data/other.txt'" in unknown.stderr

    done = cli(sample, "purge", "--source", "data/text.txt", "--reason", "erasure 12", check=True)
    assert f"purged 1 runs that read data/text.txt\n  {first} (wordcount)" in done.stdout
    assert f"could not remove 1 runs (and what they name):\n  {second}: pinned (legal hold)" in (
        done.stdout
    )
    assert "the file data/text.txt itself is not touched" in done.stdout
    shown = cli(sample, "show", first, check=True).stdout
    assert "purge of source data/text.txt: erasure 12" in shown
    assert "PURGED" in shown
    assert "store intact" in cli(sample, "store", "verify", check=True).stdout
    again = json.loads(
        cli(sample, "purge", "--source", "data/text.txt", "--reason", "again", "--json").stdout
    )
    assert again["purged"] == {}
    assert again["already_deleted"] == [first]
    assert again["collection"] is None
