"""Node names and pairing through the CLI in a subprocess: run, diff (text and JSON),
compare, why, show, and the names refused."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

pytestmark = pytest.mark.e2e


PIPELINE = """
from pipetrail import pipeline, step

SCORES = {"lr": 0.7, "rf": 0.9, "svm": 0.8}

@step
def train(kind: str, C: float = 1.0) -> dict:
    return {"kind": kind, "C": C}

@step
def evaluate(model: dict) -> dict:
    return {"accuracy": SCORES[model["kind"]] + model["C"] / 100}

@pipeline
def models(kinds: list[str] = ["lr", "rf"], named: bool = False, C: float = 1.0):
    out = []
    for kind in kinds:
        model = train.named(kind)(kind, C=C) if named else train(kind, C=C)
        out.append(evaluate(model))
    return out
"""

DUPLICATE = """
from pipetrail import pipeline, step

@step
def train(kind: str) -> str:
    return kind

@pipeline
def dup():
    return [train.named("same")("a"), train.named("same")("b")]
"""

INVALID = """
from pipetrail import pipeline, step

@step
def train(kind: str) -> str:
    return kind

@pipeline
def bad():
    return train.named("has space")("a")
"""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_inline(cwd, *args)


def run_id(root: Path, *args: str) -> str:
    result = cli(root, "run", "models.py", *args, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return str(data["run_id"])


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    root = tmp_path / "sample"
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "models.py").write_text(textwrap.dedent(PIPELINE))
    return root


def test_diff_pairs_a_grown_list_by_params_in_json_and_text(sample: Path) -> None:
    first = run_id(sample, "-p", 'kinds=["lr", "rf"]')
    second = run_id(sample, "-p", 'kinds=["svm", "lr", "rf"]')
    result = cli(sample, "diff", first, second, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    pairs = {(p["a"], p["b"]) for p in data["nodes"]["pairs"]}
    assert pairs == {
        ("train", "train[1]"),
        ("evaluate", "evaluate[1]"),
        ("train[1]", "train[2]"),
        ("evaluate[1]", "evaluate[2]"),
    }
    assert data["nodes"]["added"] == ["train", "evaluate"]
    assert data["nodes"]["ambiguous"] == []
    deltas = {m["name"]: m["delta"] for m in data["metrics"]}
    # Positional pairing would show lr (0.71) against svm (0.81): a delta of +0.1.
    assert deltas["evaluate.accuracy"] == 0
    assert deltas["evaluate[1].accuracy"] == 0
    text = cli(sample, "diff", first, second)
    assert text.returncode == 0, text.stderr
    assert "nodes paired by name or params, not by call position" in text.stdout
    assert "added" in text.stdout


def test_named_nodes_show_in_show_why_and_diff_text(sample: Path) -> None:
    first = run_id(sample, "-p", "named=true")
    second = run_id(sample, "-p", "named=true", "-p", 'kinds=["rf", "lr"]', "-p", "C=2.0")
    shown = cli(sample, "show", second)
    assert shown.returncode == 0, shown.stderr
    assert "train[lr]" in shown.stdout  # the brackets survive the table markup
    why = cli(sample, "why", second, "train[lr]", "--json")
    assert why.returncode == 0, why.stderr
    report = json.loads(why.stdout)
    assert report["previous"]["node_id"] == "train[lr]"
    assert report["pairing"]["by"] == "name"
    assert "params" in report["changed"]
    text = cli(sample, "diff", first, second)
    steps = text.stdout.split("\nsteps\n", 1)[1]
    row = next(line for line in steps.splitlines() if line.startswith(" train[lr] "))
    assert " name " in row  # the paired column
    compared = json.loads(cli(sample, "compare", first, second, "--json").stdout)
    row = compared["runs"][1]
    assert row["deltas"]["evaluate.accuracy"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (DUPLICATE, "calls step 'train' twice with the node name 'same'"),
        (INVALID, "node name 'has space' may hold only"),
    ],
)
def test_bad_node_names_are_refused_before_anything_is_recorded(
    sample: Path, source: str, message: str
) -> None:
    (sample / "bad.py").write_text(textwrap.dedent(source))
    result = cli(sample, "run", "bad.py")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    listing = cli(sample, "runs", "--json")
    assert json.loads(listing.stdout) == []
