"""``pipetrail check --baseline`` in a subprocess: param differences in text and JSON."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pipetrail import pipeline, step

@step
def total(n: int, note: str) -> dict[str, float]:
    return {"sum": float(sum(range(n)))}

@pipeline
def tally(n: int = 3, note: str = "first"):
    return total(n, note)
"""


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_inline(root, *args, env={"COLUMNS": "80"})


def test_check_prints_param_differences_in_text_and_json(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text("[pipetrail]\n")
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    first = _cli(tmp_path, "run", "pipeline.py", "--json")
    assert first.returncode == 0, first.stderr
    base = json.loads(first.stdout)["run_id"]
    as_json = _cli(tmp_path, "check", "-p", "note=second", "--baseline", base, "--json", "-q")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["baseline"]["params"] == [
        {"name": "note", "baseline": "first", "current": "second", "change": "changed"}
    ]
    text = _cli(tmp_path, "check", "-p", "n=4", "--baseline", base, "-q")
    assert text.returncode == 5, text.stderr
    assert f"### Params that differ from baseline `{base}`" in text.stdout
    assert "| n | 3 | 4 |" in text.stdout
    assert "1 param(s) differ: n" in text.stdout
    written = sorted((tmp_path / ".pipetrail" / "reports").glob("check-*.md"))
    assert any("| n | 3 | 4 |" in path.read_text() for path in written)
