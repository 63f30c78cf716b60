"""The README's example: its cache counts, the gate, and the tutorial's broken variants."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "breast_cancer"
PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]

# The tutorial's two broken variants, as edits of the example (docs/tutorial.md).
LOG_AFTER_SCALING = (
    "        scaled[TARGET] = frame[TARGET].to_numpy()\n",
    "        scaled[columns] = np.log(scaled[columns] + 1)  # compress the tails\n"
    "        scaled[TARGET] = frame[TARGET].to_numpy()\n",
)
TIMESTAMP = (
    '        "positives_share": float(np.mean(y)),\n',
    '        "positives_share": float(np.mean(y)),\n'
    '        "evaluated_at": __import__("time").time(),\n',
)


Completed = subprocess.CompletedProcess[str]
# A folder after the README's runs; per run: its arguments, the counts the README states
# (executed, cached, steps), the steps it says run again, and what the run printed.
Walk = tuple[Path, list[tuple[list[str], tuple[int, int, int], set[str] | None, Completed]]]


def _cli(root: Path, *args: str) -> Completed:
    return subprocess.run(
        [*PIPETRAIL, *args], cwd=root, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def example(example_copy: Callable[[str], Path]) -> Path:
    return example_copy("example")


_COUNTS = re.compile(r"(\d+) executed(?:, (\d+) cached)?(?: of (\d+) steps)?")
_SUMMARY = re.compile(r"completed: (\d+) executed, (\d+) cached of (\d+) steps")
_STEP_LINE = re.compile(r"\[\d+/\d+\] (\w+): (\w+)")


def _readme_runs(text: str) -> list[tuple[list[str], tuple[int, int, int], set[str] | None]]:
    """The walk-through's `pipetrail run` commands and the counts the README states for them.

    Returns (extra arguments, (executed, cached, steps), the steps said to execute or
    None) per command, in order. The first two counts sit in the commands' comments; the
    third run's in the sentence under the block, whose comment names the steps that run.
    """
    walk = text.split("## Walk-through: the example", 1)[1]
    block, after = walk.split("```bash", 1)[1].split("```", 1)
    commands: list[tuple[list[str], str]] = []
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        words = shlex.split(command)
        if words[:3] == ["pipetrail", "run", "pipeline.py"]:
            commands.append((words[3:], comment.strip()))
    third = re.search(r"The third run prints `([^`]+)`", after)
    assert len(commands) == 3, f"the README's walk-through changed: {commands}"
    assert third is not None, "the README no longer says what the third run prints"
    first, second = (_COUNTS.search(comment) for _, comment in commands[:2])
    assert first, f"no counts in the README's comment: {commands[0]}"
    assert second, f"no counts in the README's comment: {commands[1]}"
    counts = _COUNTS.fullmatch(third.group(1))
    assert counts is not None, third.group(1)
    assert counts.group(3), f"the third run's counts lack the number of steps: {third.group(1)}"
    steps = int(counts.group(3))

    def triple(found: re.Match[str]) -> tuple[int, int, int]:
        executed = int(found.group(1))
        cached = int(found.group(2)) if found.group(2) else steps - executed
        return executed, cached, steps

    named = re.fullmatch(r"only (.+) run again", commands[2][1])
    again = set(re.split(r", | and ", named.group(1))) if named else None
    return [
        (commands[0][0], triple(first), None),
        (commands[1][0], triple(second), None),
        (commands[2][0], triple(counts), again),
    ]


def test_the_counts_are_read_from_the_walk_through() -> None:
    text = (
        "## Walk-through: the example\n```bash\npython prepare_data.py\n"
        "pipetrail run pipeline.py   # 1st run: 9 executed\n"
        "pipetrail run pipeline.py   # 2nd run: 1 executed, 8 cached\n"
        "pipetrail run pipeline.py -p 'k=a b'  # only fit, score and plot run again\n"
        "pipetrail runs\n```\n\nThe third run prints `3 executed, 6 cached of 9 steps`.\n"
    )
    assert _readme_runs(text) == [
        ([], (9, 0, 9), None),
        ([], (1, 8, 9), None),
        (["-p", "k=a b"], (3, 6, 9), {"fit", "score", "plot"}),
    ]


@pytest.fixture(scope="module")
def walked(
    example_copy: Callable[[str], Path],
    example_two_runs: tuple[Path, list[Completed]],
) -> Walk:
    """A copy of the example after the README walk-through's runs, and what each printed.

    Each ``pipetrail run`` runs in a child process, once: the cache counts are read from
    what they printed, and the governance walk-through goes on from them in the same
    folder, as the README does. The walk-through's first two runs, when they are plain
    ``pipetrail run pipeline.py``, are the session's :func:`example_two_runs`.
    """
    runs = _readme_runs((ROOT / "README.md").read_text(encoding="utf-8"))
    root, printed = example_two_runs
    if [args for args, *_ in runs[:2]] != [[], []]:
        root, printed = example_copy("walk_through"), []
    printed = printed + [
        _cli(root, "run", "pipeline.py", *args) for args, *_ in runs[len(printed) :]
    ]
    return root, [(*run, result) for run, result in zip(runs, printed, strict=True)]


def test_the_runs_print_the_cache_counts_the_readme_states(
    walked: Walk,
) -> None:
    for args, (executed, cached, steps), again, result in walked[1]:
        assert result.returncode == 0, result.stderr
        summary = _SUMMARY.search(result.stdout)
        assert summary is not None, result.stdout
        got = tuple(int(g) for g in summary.groups())
        ran = {name for name, status in _STEP_LINE.findall(result.stderr) if status != "cached"}
        assert got == (executed, cached, steps), (
            f"`pipetrail run pipeline.py {' '.join(args)}`: the README says {executed} "
            f"executed, {cached} cached of {steps}; the run printed {summary.group(0)!r} "
            f"(executed: {sorted(ran)})"
        )
        if again is not None:
            assert ran == again


def _edit(root: Path, name: str, change: tuple[str, str]) -> str:
    text = (root / "pipeline.py").read_text()
    assert change[0] in text, "the example changed: update the tutorial and this test"
    (root / name).write_text(text.replace(change[0], change[1]))
    return name


def test_the_example_passes_the_gate(example: Path) -> None:
    result = _cli(example, "check", "pipeline.py", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True
    assert report["contracts"]["checks"] == report["contracts"]["passed"] == 33
    assert report["reproduction"]["verdict"] == "reproduced"
    shown = json.loads(_cli(example, "show", report["run_id"], "--json").stdout)
    assert {s["node_id"] for s in shown["steps"]} == {
        "ingest", "clean", "split", "features", "train", "evaluate",
    }  # fmt: skip


def test_a_transform_that_makes_nulls_breaks_the_features_contract(example: Path) -> None:
    broken = _edit(example, "broken_log.py", LOG_AFTER_SCALING)
    result = _cli(example, "check", broken)
    assert result.returncode == 5, result.stderr
    assert "## pipetrail check: FAILED" in result.stdout
    assert "step 'features'" in result.stdout
    assert "| features | output train_x | not_nullable | mean_radius |" in result.stdout


def test_a_timestamp_in_the_metrics_fails_the_reproduction(example: Path) -> None:
    broken = _edit(example, "broken_time.py", TIMESTAMP)
    result = _cli(example, "check", broken, "--json")
    assert result.returncode == 5, result.stderr
    reproduction = json.loads(result.stdout)["reproduction"]
    assert reproduction["verdict"] == "not reproduced"
    assert reproduction["first_differences"] == [{"node_id": "evaluate", "step": "evaluate"}]
    outside = [m["name"] for m in reproduction["metrics"] if not m["within"]]
    assert outside == ["evaluate.evaluated_at"]


def test_the_integrity_commands_print_what_the_readme_shows(example: Path) -> None:
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    assert "# ledger intact: N events verified, M derived rows match them" in readme
    assert "# every stored object re-hashed: store intact" in readme
    if _cli(example, "runs", "--json").stdout.strip() in ("", "[]"):
        assert _cli(example, "run", "pipeline.py").returncode == 0
    audit = _cli(example, "audit", "verify")
    assert audit.returncode == 0, audit.stderr
    assert re.fullmatch(
        r"ledger intact: \d+ events verified, \d+ derived rows match them\n", audit.stdout
    ), audit.stdout
    store = _cli(example, "store", "verify")
    assert store.returncode == 0, store.stderr
    assert store.stdout.strip().splitlines()[-1] == "store intact"


# How the README writes what changes from run to run in the governance walk-through.
_PLACEHOLDERS = {
    "<key id>": r"[0-9a-f]{16}",
    "<digest>": r"[0-9a-f]{64}",
    "<run id>": r"[0-9A-HJKMNP-TV-Z]{26}",
    "<id>": r"[0-9a-f]{10}",
    "<time>": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z",
    "<n>": r"\d+",
}
_PLACEHOLDER = re.compile("(" + "|".join(map(re.escape, _PLACEHOLDERS)) + ")")


def _governance_output(text: str) -> list[str]:
    """The lines the README says the governance walk-through prints."""
    section = text.split("## Walk-through: governed promotion", 1)[1]
    return section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()


def _line_pattern(line: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(line)
    return re.compile("".join(_PLACEHOLDERS.get(part, re.escape(part)) for part in parts))


def test_a_readme_line_matches_only_what_it_says() -> None:
    line = "<time>  #<n>  ben: approved req-<id>: agreed (blake3:<digest>)"
    pattern = _line_pattern(line)
    printed = "2026-01-02T03:04:05.123456Z  #17  ben: approved req-0a1b2c3d4e: agreed"
    assert pattern.fullmatch(printed + " (blake3:" + "e" * 64 + ")")
    assert not pattern.fullmatch(printed.replace("agreed", "agree") + " (blake3:" + "e" * 64 + ")")
    assert not pattern.fullmatch(printed.replace("#17", "#x") + " (blake3:" + "e" * 64 + ")")
    assert not _line_pattern("roc_auc = 0.98834").fullmatch("roc_auc = 0.98835")


def test_the_governance_walk_through_prints_what_the_readme_shows(
    walked: Walk,
) -> None:
    root, runs = walked
    assert [args for args, *_ in runs] == [[], [], ["-p", "C=0.3"]]  # the walk-through's runs
    for *_, result in runs:
        assert result.returncode == 0, result.stderr
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "example_governance.sh")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIPETRAIL_EXAMPLE_PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    wanted, printed = _governance_output(readme), result.stdout.splitlines()
    for number, (want, got) in enumerate(zip(wanted, printed, strict=False), start=1):
        assert _line_pattern(want).fullmatch(got), (
            f"line {number} of the README's governance output:\n  README:  {want}\n  printed: {got}"
        )
    assert len(printed) == len(wanted), result.stdout
    requests = re.findall(r"^(req-[0-9a-f]{10})$", result.stdout, flags=re.MULTILINE)
    assert len(requests) == len(set(requests)) == 2
    audit = _cli(root, "audit", "verify")
    assert audit.returncode == 0, audit.stderr
    said = re.search(r"`(governance intact: \d+ signatures verified)`", readme)
    assert said is not None, "the README no longer says what audit verify adds"
    assert said.group(1) in audit.stdout
    assert not (root / ".pipetrail" / "example-keys" / "ben" / "keys" / "ada.key").exists()
