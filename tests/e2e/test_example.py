"""The README's example and the tutorial's broken variants, through `pipetrail check`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "breast_cancer"
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


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPETRAIL, *args], cwd=root, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("example") / "breast_cancer"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".pipetrail", "__pycache__"))
    subprocess.run([sys.executable, "prepare_data.py"], cwd=root, check=True, timeout=120)
    return root


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
