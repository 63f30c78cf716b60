"""Reproducing real runs: snapshots, verdicts, first differences, tolerances (SQLite)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import NotReproducibleError, ProjectError
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.verify import ReproduceSettings, Tolerance, reproduce_run
from pipetrail.verify.settings import parse_tolerance

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

# `noise` is deterministic unless NOISE is set: then it draws from the OS, unseeded.
PIPE = """
import os, random
from pathlib import Path
from pipetrail import log_metric, pipeline, source, step

NOISE = {noise!r}

@step
def load(path: Path, folder: Path) -> list[int]:
    extra = sum(len(p.read_text()) for p in sorted(folder.rglob("*.txt")))
    return [int(x) for x in path.read_text().split()] + [extra]

@step
def noise(xs: list[int]) -> list[float]:
    jitter = (lambda: int.from_bytes(os.urandom(2)) / 1e9) if NOISE else (lambda: 0.0)
    return [x + random.random() + jitter() for x in xs]

@step
def summarize(xs: list[float]) -> dict[str, float]:
    log_metric("eval/mean", sum(xs) / len(xs))
    return {{"total": round(sum(xs), {digits})}}

@pipeline
def pipe(scale: int = 1):
    xs = load(source("data/nums.txt", by_reference={by_ref}), source("data/folder"))
    return summarize(noise(xs))
"""


@pytest.fixture
def make(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Callable[..., Any]:
    (project_root / "data" / "folder" / "sub").mkdir(parents=True)
    (project_root / "data" / "nums.txt").write_text("1 2 3 4\n")
    (project_root / "data" / "folder" / "a.txt").write_text("alpha\n")
    (project_root / "data" / "folder" / "sub" / "b.txt").write_text("beta\n")
    name = unique("pipe")

    def load(*, noise: bool = False, by_ref: bool = False, digits: int = 12) -> Any:
        return files.load(name, PIPE.format(noise=noise, by_ref=by_ref, digits=digits))

    return load


def test_a_deterministic_run_reproduces_bit_for_bit_on_its_snapshots(
    project: Project, project_root: Path, make: Callable[..., Any]
) -> None:
    definition = make()
    original = run_pipeline(definition, {"scale": 2}, project, RunOptions(seed=7)).id
    # The live data changes afterwards: the copies in the store are what counts.
    (project_root / "data" / "nums.txt").write_text("9 9 9\n")
    (project_root / "data" / "folder" / "a.txt").unlink()
    result = reproduce_run(project, original[:12], definition=definition)
    assert result.verdict == "reproduced", result.to_dict()
    assert result.ok
    assert result.identical_share == 1.0
    assert result.artifacts_total == result.artifacts_identical >= 4
    assert result.differences == []
    assert result.code_changes == []
    assert result.environment["same"] is True
    assert {m.name for m in result.metrics} == {"summarize.total", "summarize.eval/mean"}
    reader = project.reader()
    new = reader.get_run(result.run_id)
    assert new["params"] == {"scale": 2}
    assert new["seed"] == 7
    assert (new["record"] or {})["reproduces"] == original
    steps = reader.step_runs(result.run_id)
    assert {s["cache_decision"] for s in steps} == {"disabled"}
    sources = {s["path"]: s["digest"] for s in reader.sources(result.run_id)}
    assert sources == {s["path"]: s["digest"] for s in reader.sources(original)}
    # The verdict is in the ledger, with the report as an artifact.
    rows = reader.fetch(
        "SELECT payload FROM events WHERE kind = 'reproduction.checked' AND run_id = :r",
        {"r": result.run_id},
    )
    (payload,) = [json.loads(r["payload"]) for r in rows]
    assert payload["verdict"] == "reproduced"
    assert payload["original_run_id"] == original
    report = json.loads(project.store.get_bytes(payload["report"]))
    assert report["artifacts_identical"] == result.artifacts_identical
    assert not list((project_root / ".pipetrail" / "tmp").iterdir())  # snapshots removed


def test_a_nondeterministic_step_is_named_as_the_first_difference(
    project: Project, make: Callable[..., Any]
) -> None:
    definition = make(noise=True)
    original = run_pipeline(definition, {}, project).id
    result = reproduce_run(project, original, definition=definition)
    assert result.verdict == "not reproduced"
    assert not result.ok
    differing = {(d.node_id, d.output) for d in result.differences}
    assert ("noise", "output") in differing
    assert ("summarize", "output") in differing
    assert all(d.first_difference == ("noise",) for d in result.differences)
    assert result.first_differences == [{"node_id": "noise", "step": "noise"}]
    assert 0 < result.identical_share < 1
    mean = next(m for m in result.metrics if m.name == "summarize.eval/mean")
    assert mean.delta is not None
    assert mean.delta != 0
    assert not mean.within


def test_tolerances_can_accept_differing_artifacts(
    project: Project, make: Callable[..., Any]
) -> None:
    definition = make(noise=True, digits=3)
    original = run_pipeline(definition, {}, project).id
    loose = ReproduceSettings(default=Tolerance(abs=1e-2), require_identical_artifacts=False)
    result = reproduce_run(project, original, definition=definition, settings=loose)
    assert result.verdict == "reproduced within tolerance", result.to_dict()
    assert result.differences  # reported all the same
    strict = reproduce_run(project, original, definition=definition)
    assert strict.verdict == "not reproduced"


def test_a_changed_by_reference_source_cannot_be_reproduced(
    project: Project, project_root: Path, make: Callable[..., Any]
) -> None:
    definition = make(by_ref=True)
    original = run_pipeline(definition, {}, project).id
    events = project.reader().event_count()
    (project_root / "data" / "nums.txt").write_text("5 6 7 8\n")
    with pytest.raises(NotReproducibleError, match=r"source 'data/nums.txt' changed") as info:
        reproduce_run(project, original, definition=definition)
    assert info.value.run_id == original
    assert project.reader().event_count() == events  # nothing recorded
    (project_root / "data" / "nums.txt").write_text("1 2 3 4\n")  # restored: reproduces
    assert reproduce_run(project, original, definition=definition).verdict == "reproduced"


def test_a_missing_snapshot_cannot_be_reproduced(
    project: Project, project_root: Path, make: Callable[..., Any]
) -> None:
    definition = make()
    original = run_pipeline(definition, {}, project).id
    digest = {s["path"]: s["digest"] for s in project.reader().sources(original)}["data/nums.txt"]
    hex_part = digest.split(":")[1]
    objects = project_root / ".pipetrail" / "objects"
    loose = objects / hex_part[:2] / hex_part[2:]
    if loose.exists():
        loose.chmod(0o644)
        loose.unlink()
    else:  # small objects live in the pack
        import sqlite3

        with sqlite3.connect(objects / "pack.db") as db:
            db.execute("DELETE FROM objects")
    events = project.reader().event_count()
    with pytest.raises(NotReproducibleError, match=r"snapshot of source 'data/nums.txt'"):
        reproduce_run(project, original, definition=definition)
    assert project.reader().event_count() == events


def test_the_pipeline_is_found_from_the_record(project: Project, make: Callable[..., Any]) -> None:
    definition = make()
    path = str(project.root / f"{definition.func.__module__}.py")
    original = run_pipeline(definition, {}, project, RunOptions(source_file=path)).id
    assert reproduce_run(project, original).verdict == "reproduced"


def test_a_run_without_a_pipeline_file_needs_one(
    project: Project, make: Callable[..., Any]
) -> None:
    original = run_pipeline(make(), {}, project).id
    with pytest.raises(NotReproducibleError, match=r"--pipeline FILE\.py"):
        reproduce_run(project, original)


def test_settings_come_from_pipetrail_toml(project_root: Path) -> None:
    (project_root / "pipetrail.toml").write_text(
        "[pipetrail]\n[reproduce]\nrequire_identical_artifacts = false\n"
        'tolerance = 1e-9\n[reproduce.tolerances]\n"evaluate.auc" = { rel = 0.01 }\n'
        '"train.*" = 0.5\n"train.loss*" = 0.1\n'
    )
    settings = ReproduceSettings.from_project(project_root)
    assert not settings.require_identical_artifacts
    assert settings.for_metric("evaluate.auc") == Tolerance(rel=0.01)
    assert settings.for_metric("train.loss/epoch") == Tolerance(abs=0.1)  # most specific
    assert settings.for_metric("train.acc") == Tolerance(abs=0.5)
    assert settings.for_metric("other.x") == Tolerance(abs=1e-9)
    assert Tolerance(rel=0.01).allows(100.0, 100.9)
    assert not Tolerance(rel=0.01).allows(100.0, 101.1)
    assert Tolerance().allows(float("nan"), float("nan"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[reproduce]\nfoo = 1\n", "unknown key"),
        ("[reproduce]\ntolerance = -1\n", "finite number >= 0"),
        (
            "[reproduce]\ntolerance = { absolute = 1 }\n",
            r"unknown key 'reproduce\.tolerance\.absolute'",
        ),
        ("[reproduce]\ntolerance = true\n", r"must be a number or \{abs = \.\.\., rel = \.\.\.\}"),
        ("[reproduce]\nrequire_identical_artifacts = 1\n", "true or false"),
    ],
)
def test_bad_settings_are_refused(project_root: Path, text: str, message: str) -> None:
    (project_root / "pipetrail.toml").write_text("[pipetrail]\n" + text)
    with pytest.raises(ProjectError, match=message):
        ReproduceSettings.from_project(project_root)


def test_tolerances_from_the_command_line() -> None:
    assert parse_tolerance("a.b=0.5") == ("a.b", Tolerance(abs=0.5))
    assert parse_tolerance("*=rel:0.1,abs:2") == ("*", Tolerance(abs=2, rel=0.1))
    for bad in ("a.b", "a=x", "a=rel:-1", "a=max:3", "a=abs:1,abs:2"):
        with pytest.raises(ValueError, match=r"tolerance|NAME=TOLERANCE"):
            parse_tolerance(bad)


@pytest.mark.postgres
def test_reproduce_and_gate_on_each_backend(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    from pipetrail.execution.project import Project
    from pipetrail.verify.check import run_check

    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    (project_root / "data" / "folder").mkdir(parents=True)
    (project_root / "data" / "nums.txt").write_text("1 2 3 4\n")
    (project_root / "data" / "folder" / "a.txt").write_text("alpha\n")
    definition = files.load(unique("pipe"), PIPE.format(noise=False, by_ref=False, digits=12))
    project = Project.at(project_root)
    try:
        report = run_check(project, definition, {}, seeds=1)
        assert report.passed, report.failures
        assert report.reproduction is not None
        assert report.reproduction["verdict"] == "reproduced"
        again = reproduce_run(project, report.run_id or "", definition=definition)
        assert again.verdict == "reproduced"
        kinds = {
            r["kind"]
            for r in project.reader().fetch(
                "SELECT kind FROM events WHERE kind IN ('reproduction.checked', 'gate.checked')"
            )
        }
        assert kinds == {"reproduction.checked", "gate.checked"}
        assert project.ledger.verify().ok
    finally:
        project.close()


def test_another_checkout_of_the_project_finds_the_pipeline(
    project_root: Path, make: Callable[..., Any], tmp_path: Path
) -> None:
    import shutil
    import sys

    from pipetrail.execution.project import Project

    definition = make()
    module = definition.func.__module__
    first = Project.at(project_root)
    try:
        source_file = str(project_root / f"{module}.py")
        run_id = run_pipeline(definition, {}, first, RunOptions(source_file=source_file)).id
    finally:
        first.close()
    moved = tmp_path / "elsewhere"
    shutil.copytree(project_root, moved)
    shutil.rmtree(project_root)  # the recorded absolute path is gone
    sys.modules.pop(module, None)
    second = Project.at(moved)
    try:
        result = reproduce_run(second, run_id)
        record = second.reader().get_run(result.run_id)["record"] or {}
    finally:
        second.close()
        sys.modules.pop(module, None)
    assert result.verdict == "reproduced"
    assert record["pipeline_file"] == str(moved / f"{module}.py")
    assert record["pipeline_path"] == f"{module}.py"


def test_a_changed_contract_is_reported(
    project: Project, files: PipelineFiles, make: Callable[..., Any], unique: Callable[[str], str]
) -> None:
    original = run_pipeline(make(), {}, project).id
    text = (
        PIPE.format(noise=False, by_ref=False, digits=12)
        .replace("from pipetrail import ", "from pipetrail import Contract, ")
        .replace(
            "@step\ndef noise",
            '@step(contracts={"output": Contract(None, rows=(0, None))})\ndef noise',
        )
    )
    changed = files.load(unique("pipe"), text)
    result = reproduce_run(project, original, definition=changed)
    changes = {(c["node_id"], c["change"]) for c in result.code_changes}
    assert ("noise", "contracts changed") in changes
