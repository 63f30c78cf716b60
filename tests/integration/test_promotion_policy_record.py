"""A whole ``pipetrail promote`` process on an unchanged policy does not import pydantic.

The policy is validated when the file changed (and the validation recorded); the next
request reads the record. A policy made invalid is refused by every request, with the
message validation gives, and nothing is recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pipetrail
from pipetrail.governance.policy import RECORD_PATH
from tests.support.cli import cli_as, ok

SRC = str(Path(pipetrail.__file__).resolve().parents[1])
PIPELINE = """
from pipetrail import pipeline, step

@step
def train() -> dict:
    return {"roc_auc": 0.97}

@pipeline
def fit():
    return train()
"""
POLICY = '\n[promotion.production]\napprovals = 1\nmetrics = ["roc_auc >= 0.95"]\n'


def _promote(root: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``pipetrail promote churn:1 --to production`` as alice, and the modules it imported."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIPETRAIL_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        PYTHONPATH=SRC, PIPETRAIL_USER="alice", PIPETRAIL_HOME=str(root.parent / "home-alice")
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipetrail.cli.main", "promote", "churn:1",
         "--to", "production", "--rationale", "r", "--risk", "low", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    names = [
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    ]
    return done, set(names)


def _pydantic(names: set[str]) -> bool:
    return any(name == "pydantic" or name.startswith("pydantic.") for name in names)


def test_promote_reads_an_unchanged_policy_from_its_record(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    ok(cli_as(root, "alice", "init"))
    (root / "fit.py").write_text(textwrap.dedent(PIPELINE))
    run = json.loads(ok(cli_as(root, "alice", "run", "fit.py", "--json")))
    ok(cli_as(root, "alice", "model", "register", "churn", "--from", f"{run['run_id']}:train"))
    toml = root / "pipetrail.toml"
    toml.write_text(toml.read_text() + POLICY)

    first, imported = _promote(root)
    assert first.returncode == 0, first.stderr
    assert _pydantic(imported)  # the file changed: validated, recorded
    assert (root / RECORD_PATH).is_file()
    again, imported = _promote(root)
    assert again.returncode == 0, again.stderr
    assert not _pydantic(imported)
    assert "tomllib" not in imported  # an unchanged project: no TOML is parsed either
    request = json.loads(again.stdout)
    assert [c["name"] for c in request["checks"]] == ["metric:roc_auc"]

    recorded = (root / RECORD_PATH).read_bytes()
    toml.write_text(toml.read_text().replace("approvals = 1", 'approvals = 1\ncolour = "red"'))
    for _ in range(2):
        refused, imported = _promote(root)
        assert refused.returncode != 0
        assert _pydantic(imported)
        errors = [line for line in refused.stderr.splitlines() if not line.startswith("import")]
        assert errors == [
            f"error: {toml}: the promotion policy of alias 'production' is invalid: "
            "colour: Extra inputs are not permitted"
        ]
    assert (root / RECORD_PATH).read_bytes() == recorded
