"""``pipetrail sweep`` and ``pipetrail compare --sweep`` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_cli import PIPETRAIL, cli
from tests.support.pipelines import GRID as PIPELINE

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e


def _project(root: Path) -> Path:
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _project(tmp_path / "sweeping")


@pytest.fixture(scope="module")
def ran_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after one run, shared by the refused sweeps and comparisons.

    Each of them checks that it recorded nothing (or only reads), so they can share it.
    """
    root = _project(tmp_path_factory.mktemp("refusals") / "sweeping")
    cli(root, "run", "pipeline.py", "-q", check=True)
    return root


def _events(root: Path) -> int:
    checked: int = json.loads(cli(root, "audit", "verify", "--json", check=True).stdout)["checked"]
    return checked


def test_sweep_runs_the_grid_and_compare_shows_it(project: Path) -> None:
    result = cli(
        project, "sweep", "pipeline.py", "-p", "C=0.1,1,10", "-p", "penalty=l1,l2", "--json"
    )
    assert result.returncode == 0, result.stderr
    sweep = json.loads(result.stdout)  # what steps print went to stderr
    assert "trained" in result.stderr
    assert (sweep["size"], sweep["completed"], sweep["failed"]) == (6, 6, 0)
    assert [(r["params"]["C"], r["params"]["penalty"]) for r in sweep["runs"]] == [
        ("0.1", "l1"),
        ("0.1", "l2"),
        ("1", "l1"),
        ("1", "l2"),
        ("10", "l1"),
        ("10", "l2"),
    ]
    assert sweep["runs"][4]["metrics"]["train.score"] == pytest.approx(225.0)
    run_ids = [r["run_id"] for r in sweep["runs"]]
    # The upstream step ran once for the whole sweep.
    second = json.loads(cli(project, "show", run_ids[1], "--json", check=True).stdout)
    assert {s["node_id"]: s["status"] for s in second["steps"]}["load"] == "cached"
    assert second["tags"] == {"sweep": sweep["sweep_id"]}
    compared = json.loads(
        cli(project, "compare", "--sweep", sweep["sweep_id"], "--json", check=True).stdout
    )
    assert [r["run_id"] for r in compared["runs"]] == run_ids
    assert compared["sweep_id"] == sweep["sweep_id"]
    assert compared["runs"][2]["params"] == {"C": 1.0, "n": 10, "penalty": "l1"}
    table = cli(project, "compare", "--sweep", sweep["sweep_id"], check=True).stdout
    assert table.count("completed") == 6
    assert f"{run_ids[0]} (baseline)" in table
    listed = cli(project, "runs", "--tag", f"sweep={sweep['sweep_id']}", "--json", check=True)
    assert len(json.loads(listed.stdout)) == 6


def test_the_summary_table_and_parallel_runs(project: Path) -> None:
    result = cli(
        project,
        "sweep",
        "pipeline.py",
        "-p",
        "C=1,2",
        "-p",
        "penalty=l1,l2",
        "--set",
        "n=4",
        "--max-parallel",
        "2",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("C" in line and "penalty" in line and "train.score" in line for line in lines)
    assert sum("completed" in line for line in lines) == 4 + 1  # four rows, the closing line
    assert "4 of 4 runs completed" in result.stdout
    assert "pipetrail compare --sweep" in result.stdout
    assert cli(project, "audit", "verify", check=True).returncode == 0


def test_a_failing_run_fails_the_sweep_and_is_named(project: Path) -> None:
    result = cli(project, "sweep", "pipeline.py", "-p", "C=1,2", "-p", "penalty=boom,l1")
    assert result.returncode == 1, result.stderr
    assert "error: 2 of 4 runs of sweep" in result.stderr
    assert "#0 (C=1, penalty=boom), #2 (C=2, penalty=boom)" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.count("completed") == 2 + 1  # two rows and the closing line
    as_json = cli(project, "sweep", "pipeline.py", "-p", "C=3", "-p", "penalty=boom", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["runs"][0]["status"] == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "error: the sweep's grid is empty"),
        (("-p", "C="), "error: sweep parameter 'C' lists no value"),
        (("-p", "C"), "must be NAME=V1,V2"),
        (("-p", "lr=1,2"), "error: pipeline 'grid' has no parameter 'lr'"),
        (("-p", "C=1,x"), "parameter 'C' expects float"),
        (("-p", "C=1", "--set", "C=2"), "given both by -p and by --set"),
        (("-p", "C=1", "--tag", "sweep=mine"), "the tag 'sweep' is set by the sweep itself"),
        (("-p", "C=1", "--executor", "nope"), "unknown executor 'nope'"),
        (("-p", "C=1", "--max-parallel", "0"), "--max-parallel"),
    ],
)
def test_bad_sweeps_exit_2_and_record_nothing(
    ran_project: Path, args: tuple[str, ...], message: str
) -> None:
    project = ran_project
    before = _events(project)
    result = cli(project, "sweep", "pipeline.py", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert _events(project) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--sweep", "NOPE"), "error: no run belongs to sweep 'NOPE'"),
        ((), "error: give RUN... or --sweep ID"),
        (("latest", "--sweep", "X"), "error: give RUN... or --sweep ID"),
    ],
)
def test_bad_compare_sweep(ran_project: Path, args: tuple[str, ...], message: str) -> None:
    result = cli(ran_project, "compare", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


GATED = """
import time
from pathlib import Path
from pipetrail import pipeline, step

@step(cache=False)
def block(i: int, gate: str) -> int:
    folder = Path(gate)
    (folder / f"ready{i}").write_text("1")
    while not (folder / "release").exists():
        time.sleep(0.01)
    return i

@pipeline
def gated(i: int, gate: str):
    return block(i, gate)
"""


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.005)


@pytest.mark.parametrize("parallel", [1, 2])
def test_ctrl_c_stops_the_sweep(project: Path, parallel: int) -> None:
    (project / "gated.py").write_text(textwrap.dedent(GATED))
    gate = project / "gate"
    gate.mkdir()
    proc = subprocess.Popen(
        [
            *PIPETRAIL,
            *("sweep", "gated.py", "-p", "i=0,1,2,3", "--set", f"gate={gate}"),
            *("--max-parallel", str(parallel)),
        ],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    for i in range(parallel):
        _wait_for(gate / f"ready{i}")
    proc.send_signal(signal.SIGINT)
    if parallel > 1:  # the runs going on finish; no new one starts
        time.sleep(0.5)
        (gate / "release").write_text("1")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    runs = json.loads(cli(project, "runs", "--json", check=True).stdout)
    if parallel == 1:
        assert [r["status"] for r in runs] == ["interrupted"]
        assert f"run {runs[0]['run_id']} interrupted by SIGINT" in err
    else:
        assert sorted(r["status"] for r in runs) == ["completed", "completed"]
        assert "error: interrupted by SIGINT; no new run of the sweep was started" in err
    assert not (gate / f"ready{parallel}").exists()
    assert cli(project, "audit", "verify").returncode == 0


def test_a_failing_run_of_a_sweep_sends_its_alert(tmp_path: Path) -> None:
    from tests.support.receiver import receiving

    for receiver in receiving():
        (tmp_path / "pipetrail.toml").write_text(
            "[pipetrail]\n\n[alerts]\nbackoff = 0.01\n\n"
            f'[[alerts.rules]]\nname = "ops"\non = ["run.failed"]\n'
            f'webhook = "{receiver.url}/ops"\n'
        )
        (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
        result = cli(
            tmp_path,
            *("sweep", "pipeline.py", "-p", "penalty=l1,boom,l2", "--max-parallel", "2"),
            "--json",
        )
        assert result.returncode == 1, result.stderr
        failed = [r for r in json.loads(result.stdout)["runs"] if r["status"] == "failed"]
        [post] = receiver.posts
        assert post["json"]["event"] == "run.failed"
        assert post["json"]["run_id"] == failed[0]["run_id"]
