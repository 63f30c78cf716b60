"""Quotas hold between coordinators: ``pipetrail run`` processes racing for the last place.

Several ``pipetrail run`` processes on one ledger (SQLite and PostgreSQL) are released
at the same moment against ``concurrent_steps = 1``. The check and the step's start
share one write transaction under the ledger's lock, so the ledger never shows two
steps executing at once, and every run refused says why (failed run, exit code 7).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.project import Project

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

RACERS = 6

# Every process waits at import for the same "go" file, so they all reach their first
# step's admission together. A step admitted holds its place until every racer has asked:
# each has ended (the test marks it, refused or not) or is holding a place too (two
# holding at once then both show in the ledger).
RACE = """
import os
import time
from pathlib import Path

from pipetrail import pipeline, step

_GATE = Path(os.environ["RACE_GATE"])
(_GATE / f"ready-{os.getpid()}").write_text("")
while not (_GATE / "go").exists():
    time.sleep(0.002)


def _asked() -> int:
    return len(list(_GATE.glob("holding-*"))) + len(list(_GATE.glob("ended-*")))


@step(cache=False)
def hold(n: int) -> int:
    (_GATE / f"holding-{os.getpid()}").write_text("")
    deadline = time.monotonic() + 60
    while _asked() < int(os.environ["RACERS"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return n


@pipeline
def race(n: int = 0):
    return hold(n)
"""


def _executing_at_most(events: list[tuple[str, dict[str, Any]]]) -> int:
    """The most step runs the ledger shows executing at once, in the order it recorded."""
    running: set[str] = set()
    most = 0
    for kind, payload in events:
        if kind == "step.started":
            running.add(payload["step_run_id"])
            most = max(most, len(running))
        elif kind in ("step.completed", "step.failed"):
            running.discard(payload["step_run_id"])
    return most


def test_racing_runs_never_exceed_a_concurrency_quota_of_one(
    metadata_url: str, project_root: Path, tmp_path: Path
) -> None:
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\nmetadata = "{metadata_url}"\n\n[quotas]\nconcurrent_steps = 1\n'
    )
    (project_root / "race.py").write_text(textwrap.dedent(RACE))
    gate = tmp_path / "gate"
    gate.mkdir()
    Project.at(project_root).close()  # the schema exists before the racers open it
    env = {
        **os.environ,
        "RACE_GATE": str(gate),
        "RACERS": str(RACERS),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "pipetrail.cli.main", "run", "race.py", "-p", f"n={i}"],
            cwd=project_root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(RACERS)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(gate.glob("ready-*"))) < RACERS:
            assert time.monotonic() < deadline, "the racers never got ready"
            assert all(p.poll() is None for p in racers), [p.communicate() for p in racers]
            time.sleep(0.02)
        (gate / "go").write_text("")
        running = list(racers)
        while running:
            assert time.monotonic() < deadline + 180, "the racers never ended"
            for ended in [p for p in running if p.poll() is not None]:
                (gate / f"ended-{ended.pid}").write_text("")
                running.remove(ended)
            time.sleep(0.01)
        outcomes = [(p.returncode, *p.communicate()) for p in racers]
    finally:
        for p in racers:
            if p.poll() is None:
                p.kill()
                p.communicate()

    codes = [code for code, _, _ in outcomes]
    assert set(codes) <= {0, 7}, outcomes
    assert 0 in codes, outcomes
    assert 7 in codes, outcomes  # six asked at once for one place
    for code, _, err in outcomes:
        assert "Traceback" not in err
        if code == 7:
            assert "error: step 'hold' refused: the project's quota of concurrent steps (1)" in (
                err
            )

    project = Project.at(project_root)
    try:
        events = [
            (e.kind, json.loads(e.payload_text))
            for e in project.ledger.iter_events()
            if e.kind.startswith(("step.", "run."))
        ]
        assert _executing_at_most(events) == 1
        runs = project.reader().list_runs(limit=100)
        assert len(runs) == RACERS
        started = {p["run_id"] for kind, p in events if kind == "step.started"}
        refused = [r for r in runs if r["run_id"] not in started]
        assert len(refused) == codes.count(7)
        for run in refused:
            assert run["status"] == "failed"
            assert "quota of concurrent steps (1) is used up" in run["error"]
        assert all(r["status"] == "completed" for r in runs if r["run_id"] in started)
        assert project.ledger.verify().ok
    finally:
        project.close()
