"""Params files and environment parity in real runs: records, refusals, nothing half-written."""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture import capture_environment
from pipetrail.errors import ParamError, ParityError, ParityWarning, ProjectError
from pipetrail.execution import run_events, runner
from pipetrail.execution.params_files import load_params_file
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.lineage.environment import diff_run_environments
from pipetrail.lineage.exports.environment import export_environment

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

CONFIGURED = """
import pydantic
from pipetrail import pipeline, step

class ModelConfig(pydantic.BaseModel):
    C: float = 1.0

class TrainConfig(pydantic.BaseModel):
    epochs: int = 3
    model: ModelConfig = ModelConfig()

@step
def fit(epochs: int, C: float) -> float:
    return epochs * C

@pipeline
def training(cfg: TrainConfig):
    return fit(cfg.epochs, cfg.model.C)
"""


def _state(project: Project) -> tuple[int, set[str]]:
    return project.reader().event_count(), set(project.store.iter_digests())


def _started(project: Project, run_id: str) -> dict[str, Any]:
    rows = project.reader().fetch(
        "SELECT payload FROM events WHERE run_id = :r AND kind = 'run.started'", {"r": run_id}
    )
    payload = rows[0]["payload"]
    return json.loads(payload) if isinstance(payload, str) else payload


# -- params files --------------------------------------------------------------------------
def test_params_files_are_merged_recorded_and_stored(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    (project_root / "base.yaml").write_text("epochs: 5\nmodel:\n  C: 0.5\n")
    (project_root / "fast.toml").write_text("[model]\nC = 0.7\n")
    loaded = tuple(load_params_file(project_root / n) for n in ("base.yaml", "fast.toml"))
    run = run_pipeline(training, {"epochs": "2"}, project, RunOptions(params_files=loaded))
    assert run.outputs == pytest.approx(1.4)
    payload = _started(project, run.id)
    assert payload["params"] == {"epochs": 2, "model": {"C": 0.7}}
    assert payload["params_files"] == [
        {"name": "base.yaml", "digest": loaded[0].digest, "format": "yaml"},
        {"name": "fast.toml", "digest": loaded[1].digest, "format": "toml"},
    ]
    for item in loaded:
        record = project.reader().artifact(item.digest)
        assert record is not None
        assert record["role"] == "params-file"
        assert project.store.get_bytes(record["blob"]) == item.content


def test_recorded_params_of_a_model_pipeline_run_again(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    first = run_pipeline(training, {"model.C": "0.25"}, project, RunOptions())
    recorded = _started(project, first.id)["params"]
    second = run_pipeline(training, recorded, project, RunOptions())
    assert second.outputs == first.outputs
    assert {s["status"] for s in second.steps()} == {"cached"}


def test_library_runner_takes_params_files(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    (project_root / "p.json").write_text('{"model": {"C": 2.0}}')
    run = training.with_options(project=project_root, params_files=[project_root / "p.json"]).run(
        epochs=4
    )
    assert run.outputs == 8.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("epochs: x\n", r"params file .*bad\.yaml: key 'epochs' expects int"),
        ("model:\n  D: 1\n", r"params file .*bad\.yaml: key 'model\.D' is unknown"),
    ],
)
def test_bad_params_files_record_nothing(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    unique: Callable[[str], str],
    text: str,
    match: str,
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    run_pipeline(training, {}, project, RunOptions())
    before = _state(project)
    (project_root / "bad.yaml").write_text(text)
    options = RunOptions(params_files=(load_params_file(project_root / "bad.yaml"),))
    with pytest.raises(ParamError, match=match):
        run_pipeline(training, {}, project, options)
    assert _state(project) == before


# -- parity --------------------------------------------------------------------------------
def _changed_environment(monkeypatch: pytest.MonkeyPatch, **packages: str | None) -> None:
    """Make the next runs see an environment whose packages differ as given."""
    real = capture_environment()

    def fake(*, cache_dir: Path | None = None) -> dict[str, Any]:
        snapshot = copy.deepcopy(real)
        dists = {d["name"]: d for d in snapshot["distributions"]}
        for name, version in packages.items():
            if version is None:
                dists.pop(name, None)
            else:
                dists[name] = {"name": name, "version": version}
        snapshot["distributions"] = [dists[n] for n in sorted(dists)]
        snapshot["cpu"] = {"model": "another CPU", "logical_cores": 999}  # never counts
        return snapshot

    # The parity check captures in runner; run.started captures in run_events when parity
    # is off. Patch both so every capture in the run sees the changed environment.
    monkeypatch.setattr(runner, "capture_environment", fake)
    monkeypatch.setattr(run_events, "capture_environment", fake)


def test_parity_off_by_default_records_nothing_about_it(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    run = run_pipeline(training, {}, project, RunOptions())
    assert "parity" not in _started(project, run.id)
    assert "params_files" not in _started(project, run.id)


def test_parity_with_an_equal_environment_passes_and_is_recorded(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    reference = run_pipeline(training, {}, project, RunOptions())
    options = RunOptions(parity="strict", parity_reference=reference.id[:12])
    run = run_pipeline(training, {"epochs": 4}, project, options)
    assert _started(project, run.id)["parity"] == {
        "mode": "strict",
        "reference": reference.id,
        "differences": [],
    }


def test_strict_parity_refuses_to_start_and_records_nothing(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    reference = run_pipeline(training, {}, project, RunOptions())
    before = _state(project)
    _changed_environment(monkeypatch, numpy="0.0.1", newpkg="1.0")
    options = RunOptions(parity="strict", parity_reference=reference.id)
    with pytest.raises(ParityError, match=f"differs from reference run {reference.id}") as info:
        run_pipeline(training, {"epochs": 9}, project, options)
    assert any(line.startswith("package numpy: ") for line in info.value.differences)
    assert "package newpkg: not installed in the reference run, 1.0 here" in (
        info.value.differences
    )
    assert not any("cpu" in line for line in info.value.differences)
    assert _state(project) == before


def test_warn_parity_warns_and_records_the_differences(
    files: PipelineFiles,
    project: Project,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    reference = run_pipeline(training, {}, project, RunOptions())
    _changed_environment(monkeypatch, newpkg="1.0")
    options = RunOptions(parity="warn", parity_reference=reference.id)
    with pytest.warns(ParityWarning, match="package newpkg: not installed in the reference"):
        run = run_pipeline(training, {"epochs": 9}, project, options)
    assert _started(project, run.id)["parity"] == {
        "mode": "warn",
        "reference": reference.id,
        "differences": [{"kind": "package", "name": "newpkg", "reference": None, "current": "1.0"}],
    }
    # env diff sees the same difference, and more (hardware), which does not count.
    comparison = diff_run_environments(project, reference.id, run.id)
    assert comparison.diff.packages.added == {"newpkg": "1.0"}
    assert comparison.diff.hardware
    assert comparison.parity == ["package newpkg: not installed in the reference run, 1.0 here"]


def test_parity_from_configuration(
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    reference = training.with_options(project=project_root).run()
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\nparity = "strict"\nparity_reference = "{reference.id}"\n'
    )
    _changed_environment(monkeypatch, numpy="0.0.1")
    with pytest.raises(ParityError):
        training.with_options(project=project_root).run(epochs=7)
    monkeypatch.setenv("PIPETRAIL_PARITY", "warn")
    with pytest.warns(ParityWarning):
        training.with_options(project=project_root).run(epochs=7)
    monkeypatch.setenv("PIPETRAIL_PARITY", "off")
    training.with_options(project=project_root).run(epochs=8)
    # An explicit option wins over the configuration.
    with pytest.raises(ParityError):
        training.with_options(project=project_root, parity="strict").run(epochs=9)


def test_parity_needs_a_reference_and_a_known_mode(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    with pytest.raises(ProjectError, match="no reference run is set"):
        run_pipeline(training, {}, project, RunOptions(parity="warn"))
    (project_root / "pipetrail.toml").write_text('[pipetrail]\nparity = "sometimes"\n')
    with pytest.raises(
        ProjectError,
        match=r"'pipetrail\.parity' must be one of 'off', 'warn', 'strict', got 'sometimes'",
    ):
        Project.at(project_root)


# -- exports of a real run -------------------------------------------------------------------
def test_exports_of_a_recorded_run(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    training = files.load(unique("training"), CONFIGURED)
    run = run_pipeline(training, {}, project, RunOptions())
    snapshot = capture_environment()
    requirements = export_environment(project, run.id, "requirements")
    pydantic_version = next(
        d["version"] for d in snapshot["distributions"] if d["name"] == "pydantic"
    )
    assert f"\npydantic=={pydantic_version}\n" in requirements
    assert f"Python {snapshot['python']['version']}" in requirements
    dockerfile = export_environment(project, "latest", "dockerfile")
    assert f"python:{snapshot['python']['version']}-" in dockerfile
    assert "lock-version" in export_environment(project, run.id, "pylock")
