"""``pipetrail check --baseline RUN`` with ``[drift]``: drift reported, and gated when set."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_cli import cli
from tests.e2e.test_drift_cli import PIPELINE, _sales

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

# Metrics within tolerance let artifacts differ from the baseline's: only drift can fail.
LENIENT = "\n[reproduce]\nrequire_identical_artifacts = false\n"
COUNTED = PIPELINE.replace(
    '    return enrich(load(source("data/sales.csv")))',
    '    return count(enrich(load(source("data/sales.csv"))))',
) + textwrap.dedent(
    """
    @step
    def count(frame: pd.DataFrame) -> dict[str, float]:
        return {"rows": float(len(frame))}
    """
)


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, str, str]:
    root = tmp_path / "shop"
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "shop.py").write_text(textwrap.dedent(COUNTED))
    _sales(root, 0.0)
    done = cli(root, "run", "shop.py", "-q", "--json", check=True)
    return root, json.loads(done.stdout)["run_id"], ""


def test_check_fails_on_drift_when_the_gate_is_set(shop: tuple[Path, str, str]) -> None:
    root, first, _ = shop
    settings = (root / "pipetrail.toml").read_text() + LENIENT
    (root / "pipetrail.toml").write_text(settings)
    _sales(root, 20.0)
    reported = cli(root, "check", "shop.py", "--baseline", first, "--json", "-q")
    assert reported.returncode == 0, reported.stderr + reported.stdout
    data = json.loads(reported.stdout)
    assert data["drift"]["drifted"] is True
    assert data["drift"]["gate"] is False
    assert data["drift"]["origins"][0]["step"] == "load"
    assert data["drift"]["origins"][0]["columns"] == ["amount"]
    (root / "pipetrail.toml").write_text(settings + "\n[drift]\ngate = true\n")
    gated = cli(root, "check", "shop.py", "--baseline", first, "-q")
    assert gated.returncode == 5, gated.stderr + gated.stdout
    assert (
        f"data drift above the [drift] thresholds against baseline {first}, starting at "
        "step load (output output): amount"
    ) in gated.stdout
    assert "### Data drift from" in gated.stdout
    assert "| load | output | amount | enrich |" in gated.stdout
    _sales(root, 0.0)  # the baseline's data again: nothing drifts, the gate opens
    steady = cli(root, "check", "shop.py", "--baseline", first, "--json", "-q")
    assert steady.returncode == 0, steady.stdout
    assert json.loads(steady.stdout)["drift"]["drifted"] is False


def test_a_malformed_drift_gate_is_refused_before_running(shop: tuple[Path, str, str]) -> None:
    root, first, _ = shop
    settings = (root / "pipetrail.toml").read_text()
    (root / "pipetrail.toml").write_text(settings + "\n[drift]\ngate = 'yes'\n")
    bad = cli(root, "check", "shop.py", "--baseline", first, "-q")
    assert bad.returncode == 2, bad.stderr
    assert "[drift] gate = 'yes'; it must be true or false" in bad.stderr
    assert "Traceback" not in bad.stderr
    (root / "pipetrail.toml").write_text(settings + "\n[drift]\nbaseline_runs = 0\n")
    runs = cli(root, "check", "shop.py", "--baseline", first, "-q")
    assert runs.returncode == 2
    assert "[drift] baseline_runs = 0; it must be a whole number from 1 to 1000" in runs.stderr
    (root / "pipetrail.toml").write_text(settings + "\n[drift]\npsi = 'high'\n")
    limits = cli(root, "check", "shop.py", "--baseline", first, "-q")
    assert limits.returncode == 2
    assert "[drift] psi = 'high'; it must be a non-negative number" in limits.stderr
    runs_before = cli(root, "runs", "--json", check=True).stdout
    assert len(json.loads(runs_before)) == 1  # refused before anything ran
