"""``pipetrail drift`` in a subprocess: text, JSON, pictures, and bad input."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from tests.e2e.test_cli import cli, sample

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e
__all__ = ["sample"]

PIPELINE = """
from pathlib import Path
import pandas as pd
from pipetrail import pipeline, source, step

@step
def load(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)

@step
def enrich(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(double=frame["amount"] * 2)

@pipeline
def shop():
    return enrich(load(source("data/sales.csv")))
"""


def _sales(root: Path, shift: float) -> None:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {"amount": rng.normal(50 + shift, 5, 2000).round(2), "kind": rng.choice(["a", "b"], 2000)}
    )
    (root / "data").mkdir(exist_ok=True)
    frame.to_csv(root / "data" / "sales.csv", index=False)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Two runs of the shop, before and after the drift, shared by the module's tests.

    Drift only reads the ledger; a test that changes the settings puts them back.
    """
    root = tmp_path_factory.mktemp("drift") / "shop"
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "shop.py").write_text(textwrap.dedent(PIPELINE))
    runs = []
    for shift in (0.0, 20.0):
        _sales(root, shift)
        done = cli(root, "run", "shop.py", "-q", "--json", check=True)
        runs.append(json.loads(done.stdout)["run_id"])
    return root, runs[0], runs[1]


def test_drift_names_the_step_where_the_column_enters(shop: tuple[Path, str, str]) -> None:
    root, first, second = shop
    text = cli(root, "drift", first, second, check=True).stdout
    assert f"Drift of run {second} against run {first}" in text
    assert "drift starts at step load (output output): amount" in text
    assert "carried to: enrich" in text
    assert "kind" not in text.split("drift starts")[1].split("\n")[0]
    data = json.loads(cli(root, "drift", first, second, "--json", check=True).stdout)
    assert data["first"]["node"] == "load"
    assert data["first"]["columns"] == ["amount"]
    assert data["first"]["downstream"] == ["enrich"]
    assert data["thresholds"]["psi"] == 0.2
    same = json.loads(cli(root, "drift", first, first, "--json", check=True).stdout)
    assert same["drifted"] is False
    assert "no drift" in cli(root, "drift", first, first, check=True).stdout


def test_drift_pictures_are_svg_files(shop: tuple[Path, str, str]) -> None:
    root, first, second = shop
    out = cli(root, "drift", first, second, "--picture", "pictures", check=True).stdout
    assert "picture(s) written to pictures" in out
    svg = (root / "pictures" / "load.output.amount.svg").read_text()
    assert svg.startswith("<svg")
    assert "PSI" in svg


def test_drift_bad_input_is_one_message(shop: tuple[Path, str, str], sample: Path) -> None:
    root, first, second = shop
    unknown = cli(root, "drift", first, "ZZZZ")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: no run matches 'ZZZZ'")
    assert "Traceback" not in unknown.stderr
    settings = (root / "pipetrail.toml").read_text()
    (root / "pipetrail.toml").write_text(settings + "\n[drift]\npsi = 'high'\n")
    try:
        bad = cli(root, "drift", first, second)
    finally:
        (root / "pipetrail.toml").write_text(settings)
    assert bad.returncode == 2
    assert "[drift] psi = 'high'; it must be a non-negative number" in bad.stderr
    (root / "taken").write_text("a file")
    blocked = cli(root, "drift", first, second, "--picture", "taken/pictures")
    assert blocked.returncode == 2
    assert blocked.stderr.startswith("error: cannot write the drift picture taken/pictures")
    assert "Traceback" not in blocked.stderr


def test_runs_of_unrelated_pipelines_are_refused(
    shop: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, first, _ = shop
    (root / "other.py").write_text(
        textwrap.dedent(
            """
            from pipetrail import pipeline, step

            @step
            def count(n: int) -> int:
                return n

            @pipeline
            def other(n: int = 3):
                return count(n)
            """
        )
    )
    other = json.loads(cli(root, "run", "other.py", "-q", "--json", check=True).stdout)["run_id"]
    refused = cli(root, "drift", first, other)
    assert refused.returncode == 2
    assert "have no step in common, so no table corresponds" in refused.stderr


def test_drift_against_pooled_baseline_runs(shop: tuple[Path, str, str]) -> None:
    root, first, second = shop
    text = cli(root, "drift", second, "--baseline-runs", "3", check=True).stdout
    assert f"Drift of run {second} against 1 pooled run(s) (pipeline shop)" in text
    assert f"baseline runs: {first}\n" in text
    assert "drift starts at step load (output output): amount" in text
    data = json.loads(cli(root, "drift", first, second, "--baseline-runs", "2", "--json").stdout)
    assert data["baseline_runs"] == [first]
    assert data["first"]["node"] == "load"
    none_before = cli(root, "drift", first, "--baseline-runs", "2")
    assert none_before.returncode == 2
    assert "no completed run of pipeline 'shop' started before run" in none_before.stderr
    alone = cli(root, "drift", second)
    assert alone.returncode == 2
    assert "give two runs (RUN_A RUN_B), or one run with --baseline-runs N" in alone.stderr
    assert "Traceback" not in alone.stderr + none_before.stderr
