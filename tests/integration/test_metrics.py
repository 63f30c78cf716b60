"""Metrics and reports logged by real pipelines: payload references, artifacts, caching."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import DefinitionError, NotFoundError, StepFailedError
from pipetrail.execution.metrics import series_timestamps
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.hashing.canonical import reference_json
from pipetrail.ledger import audit
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8

TRAIN = """
from pathlib import Path
from pipetrail import attach_report, log_metric, log_metrics, pipeline, step

@step
def make(n: int) -> list[int]:
    return list(range(n))

@step
def train(xs: list[int], out_dir: str) -> float:
    for x in xs:
        log_metric("train/loss", 1.0 / (x + 1))
    log_metrics({"eval/auc": 0.75, "eval/acc": 0.5}, step=len(xs))
    attach_report("eval/summary", {"auc": 0.75, "classes": ["a", "b"]})
    path = Path(out_dir) / "roc.png"
    path.write_bytes(PNG)
    attach_report("eval/roc", path)
    return 0.75

@pipeline
def p(n: int = 4, out_dir: str = "."):
    return train(make(n), out_dir)
"""


def _source() -> str:
    return f"PNG = {PNG!r}\n" + TRAIN


def _events(project: Project, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, node id) -> payload of the step events of one run."""
    return {
        (e.kind, e.payload["node_id"]): e.payload
        for e in project.ledger.iter_events()
        if e.run_id == run_id and e.kind.startswith("step.")
    }


def _io(project: Project, step_run_id: str) -> dict[tuple[str, str], str]:
    rows = project.reader().fetch(
        "SELECT direction, name, digest FROM step_run_io WHERE step_run_id = :s",
        {"s": step_run_id},
    )
    return {(r["direction"], r["name"]): r["digest"] for r in rows}


def _run(definition, project: Project, **params):  # type: ignore[no-untyped-def]
    return run_pipeline(definition, params, project, RunOptions())


def test_completed_step_references_metrics_reports_and_code(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], tmp_path: Path
) -> None:
    definition = files.load(unique("pipe"), _source())
    run = _run(definition, project, out_dir=str(tmp_path))
    events = _events(project, run.id)
    done = events[("step.completed", "train")]
    loss = done["metrics"]["train/loss"]
    volatile = ("digest", "timestamps", "timestamps_at")
    assert {k: v for k, v in loss.items() if k not in volatile} == {
        "count": 4,
        "min": 0.25,
        "max": 1.0,
        "last": 0.25,
    }
    assert set(done["metrics"]) == {"train/loss", "eval/auc", "eval/acc"}
    assert done["metrics"]["eval/auc"]["count"] == 1
    assert set(done["reports"]) == {"eval/summary", "eval/roc"}
    # Series and reports are also outputs under prefixes, hence lineage edges.
    assert done["outputs"]["metric:train/loss"] == loss["digest"]
    assert done["outputs"]["report:eval/roc"] == done["reports"]["eval/roc"]
    io = _io(project, done["step_run_id"])
    assert io[("out", "metric:train/loss")] == loss["digest"]
    assert io[("out", "report:eval/summary")] == done["reports"]["eval/summary"]
    assert ("out", "output") in io
    # code_source on every step event, pointing at the stored source text.
    started = events[("step.started", "train")]
    assert started["code_source"] == done["code_source"]
    code = project.reader().artifact(done["code_source"])
    assert code is not None
    assert code["role"] == "code"
    assert "def train(" in project.store.get_bytes(code["blob"]).decode()
    assert events[("step.completed", "make")]["metrics"] == {}
    assert events[("step.completed", "make")]["reports"] == {}
    # The artifacts are recorded with their roles and load back.
    reader = project.reader()
    series = reader.artifact(loss["digest"])
    assert series is not None
    assert (series["role"], series["serializer"], series["first_step_run_id"]) == (
        "metric",
        "npy",
        done["step_run_id"],
    )
    assert series["meta"]["summary"] == {"count": 4, "min": 0.25, "max": 1.0, "last": 0.25}
    times = reader.artifact(loss["timestamps"])
    assert times is not None
    assert times["role"] == "metric-timestamps"
    # One timestamps object for the step run's every series, recorded once; each series
    # reads its own points from it.
    refs = done["metrics"]
    assert {ref["timestamps"] for ref in refs.values()} == {loss["timestamps"]}
    kinds = [
        e.payload["role"]
        for e in project.ledger.iter_events()
        if e.run_id == run.id and e.kind == "artifact.recorded"
    ]
    assert kinds.count("metric-timestamps") == 1
    assert kinds.count("metric") == 3
    assert times["meta"]["shape"] == [6]
    assert sorted(ref["timestamps_at"] for ref in refs.values()) == [0, 4, 5]
    data = project.store.get_bytes(times["blob"])
    stamps = {name: list(series_timestamps(ref, data)) for name, ref in refs.items()}
    assert {name: len(s) for name, s in stamps.items()} == {
        "train/loss": 4,
        "eval/auc": 1,
        "eval/acc": 1,
    }
    assert stamps["train/loss"] == sorted(stamps["train/loss"])
    assert stamps["train/loss"][-1] <= stamps["eval/auc"][0] <= stamps["eval/acc"][0]
    assert run.metrics("train") == {
        "eval/acc": [(4, 0.5)],
        "eval/auc": [(4, 0.75)],
        "train/loss": [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 0.25)],
    }
    assert run.metrics("make") == {}
    import numpy as np  # part of the test install (the tables extra)

    array = run.load(loss["digest"])
    assert array["step"].tolist() == [0, 1, 2, 3]
    assert run.load(loss["timestamps"]).dtype == np.int64
    assert run.load(done["reports"]["eval/summary"]) == {"auc": 0.75, "classes": ["a", "b"]}
    assert run.load(done["reports"]["eval/roc"]) == PNG
    roc = reader.artifact(done["reports"]["eval/roc"])
    assert roc is not None
    assert (roc["role"], roc["type_name"]) == ("report", "image/png")
    # Returned values stay what they were.
    assert run.outputs == 0.75
    with pytest.raises(NotFoundError, match=r"it has output$"):
        run.output_of("train", "missing")
    assert project.ledger.verify().ok


def test_cache_hit_repeats_the_metric_and_report_references(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], tmp_path: Path
) -> None:
    definition = files.load(unique("pipe"), _source())
    first = _run(definition, project, out_dir=str(tmp_path))
    second = _run(definition, project, out_dir=str(tmp_path))
    assert set(statuses(second).values()) == {"cached"}
    done = _events(project, first.id)[("step.completed", "train")]
    cached = _events(project, second.id)[("step.cached", "train")]
    assert cached["reused_step_run_id"] == done["step_run_id"]
    assert cached["code_source"] == done["code_source"]
    # Timestamps describe the executed step run; the hit references the same series.
    assert cached["metrics"] == {
        name: {k: v for k, v in ref.items() if k not in ("timestamps", "timestamps_at")}
        for name, ref in done["metrics"].items()
    }
    assert cached["reports"] == done["reports"]
    assert cached["outputs"] == done["outputs"]
    assert _io(project, cached["step_run_id"]) == _io(project, done["step_run_id"])
    assert second.metrics("train") == first.metrics("train")


def test_rerun_without_cache_dedupes_series_but_not_timestamps(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], tmp_path: Path
) -> None:
    definition = files.load(unique("pipe"), _source())
    first = _run(definition, project, out_dir=str(tmp_path))
    again = run_pipeline(definition, {"out_dir": str(tmp_path)}, project, RunOptions(cache=False))
    a = _events(project, first.id)[("step.completed", "train")]["metrics"]["train/loss"]
    b = _events(project, again.id)[("step.completed", "train")]["metrics"]["train/loss"]
    assert a["digest"] == b["digest"]
    assert a["timestamps"] != b["timestamps"]


def test_a_hit_computes_the_summary_when_equal_bytes_were_recorded_otherwise(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    import numpy  # noqa: F401  part of the test install: the pipeline below uses it

    source = """
import numpy as np
from pipetrail import log_metric, pipeline, step

@step
def table(k: int) -> np.ndarray:
    return np.array([(i, float(i)) for i in range(k)], dtype=[("step", "<i8"), ("value", "<f8")])

@step
def score(xs: np.ndarray) -> int:
    for i in range(len(xs)):
        log_metric("score", float(i))
    return len(xs)

@pipeline
def p():
    return score(table(3))
"""
    definition = files.load(unique("pipe"), source)
    first = _run(definition, project)
    events = _events(project, first.id)
    series = events[("step.completed", "score")]["metrics"]["score"]["digest"]
    # numpy wrote the very same bytes first, as an output without a summary.
    assert series == events[("step.completed", "table")]["outputs"]["output"]
    record = project.reader().artifact(series)
    assert record is not None
    assert "summary" not in record["meta"]
    second = _run(definition, project)
    hit = _events(project, second.id)[("step.cached", "score")]
    assert hit["metrics"]["score"] == {
        "digest": series,
        "count": 3,
        "min": 0.0,
        "max": 2.0,
        "last": 2.0,
    }


def test_failed_step_keeps_its_metrics_but_records_no_outputs(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    source = """
from pipetrail import attach_report, log_metric, pipeline, step

@step
def boom(n: int) -> int:
    for i in range(n):
        log_metric("train/loss", 10.0 - i)
    attach_report("debug/state", {"epoch": n})
    raise ValueError("diverged")

@pipeline
def p(n: int = 3):
    return boom(n)
"""
    with pytest.raises(StepFailedError, match="diverged") as info:
        _run(files.load(unique("pipe"), source), project)
    failed = _events(project, info.value.run_id)[("step.failed", "boom")]
    assert "outputs" not in failed
    assert failed["code_source"] is not None
    loss = failed["metrics"]["train/loss"]
    assert (loss["count"], loss["last"]) == (3, 8.0)
    reader = project.reader()
    for digest in (loss["digest"], loss["timestamps"], failed["reports"]["debug/state"]):
        record = reader.artifact(digest)
        assert record is not None
        assert record["first_step_run_id"] == failed["step_run_id"]
        assert project.store.exists(record["blob"])
    assert reader.step_run(failed["step_run_id"])["outputs"] is None
    assert _io(project, failed["step_run_id"]) == {}
    assert project.ledger.verify().ok


@pytest.mark.parametrize("fail", [False, True])
def test_series_events_hold_the_reference_encoding_of_their_payloads(
    files: PipelineFiles, project: Project, unique: Callable[[str], str], fail: bool
) -> None:
    # Series whose summaries are plain are encoded without a second walk; the others
    # (floats orjson would write in another form) by the reference encoder: every event
    # text must be what the reference encoder writes, and the ledger must verify.
    source = f"""
from pipetrail import log_metric, log_metrics, pipeline, step

@step
def train(n: int) -> float:
    for i in range(n):
        log_metrics({{"plain/loss": 1.0 / (i + 1), "small/lr": 1e-5 / (i + 1)}})
    log_metric("big/count", 1e16)
    log_metric("zero", 0.0)
    if {fail}:
        raise ValueError("diverged")
    return 0.5

@pipeline
def p(n: int = 3):
    return train(n)
"""
    definition = files.load(unique("pipe"), source)
    if fail:
        with pytest.raises(StepFailedError):
            _run(definition, project)
    else:
        _run(definition, project)
    seen = {"metric": 0, "metric-timestamps": 0}
    for event in project.ledger.iter_events():
        assert event.payload_text == reference_json(json.loads(event.payload_text))
        role = event.payload.get("role") if event.kind == "artifact.recorded" else None
        if role in seen:
            seen[role] += 1
    assert seen == {"metric": 4, "metric-timestamps": 1}
    ended = [e for e in project.ledger.iter_events() if e.kind in ("step.completed", "step.failed")]
    metrics = ended[-1].payload["metrics"]
    assert metrics["small/lr"]["min"] == pytest.approx(1e-5 / 3)
    assert metrics["big/count"]["last"] == 1e16
    assert project.ledger.verify().ok


def test_misusing_the_api_fails_the_step_with_a_clear_error(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    source = """
from pipetrail import log_metric, pipeline, step

@step
def bad(n: int) -> int:
    log_metric("ok", 1.0)
    log_metric("train loss", 1.0)
    return n

@pipeline
def p():
    return bad(1)
"""
    with pytest.raises(StepFailedError, match="metric name 'train loss' is not valid") as info:
        _run(files.load(unique("pipe"), source), project)
    assert isinstance(info.value.__cause__, DefinitionError)
    failed = _events(project, info.value.run_id)[("step.failed", "bad")]
    assert set(failed["metrics"]) == {"ok"}


def test_output_names_with_reserved_prefixes_are_refused_before_recording(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    source = """
from pipetrail import pipeline, step

@step(outputs=("model", "metric:auc"))
def train(n: int):
    return n, 0.5

@pipeline
def p():
    model, auc = train(1)
    return model
"""
    with pytest.raises(DefinitionError, match="reserved for logged metrics and reports"):
        _run(files.load(unique("pipe"), source), project)
    assert project.reader().event_count() == 0


@pytest.mark.postgres
def test_metrics_and_cache_hits_on_each_backend(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    project = Project.at(project_root)
    try:
        definition = files.load(unique("pipe"), _source())
        first = _run(definition, project, out_dir=str(project_root))
        second = _run(definition, project, out_dir=str(project_root))
        assert statuses(second)["train"] == "cached"
        assert second.metrics("train") == first.metrics("train")
        assert second.metrics("train")["train/loss"][-1] == (3, 0.25)
        cached = _events(project, second.id)[("step.cached", "train")]
        assert json.dumps(cached["metrics"], sort_keys=True) == json.dumps(
            {
                name: {k: v for k, v in ref.items() if k not in ("timestamps", "timestamps_at")}
                for name, ref in _events(project, first.id)[("step.completed", "train")][
                    "metrics"
                ].items()
            },
            sort_keys=True,
        )
        # The step run's series share one timestamps object, recorded once, that each
        # series reads its own points from.
        done = _events(project, first.id)[("step.completed", "train")]
        refs = done["metrics"]
        (shared,) = {ref["timestamps"] for ref in refs.values()}
        record = project.reader().artifact(shared)
        assert record is not None
        assert record["role"] == "metric-timestamps"
        data = project.store.get_bytes(record["blob"])
        assert {name: len(series_timestamps(ref, data)) for name, ref in refs.items()} == {
            name: ref["count"] for name, ref in refs.items()
        }
        # The derived tables the events give agree with the ones the runs wrote, whether
        # the whole replay or the model of audit verify builds them; rebuilding changes
        # nothing.
        assert audit._verify_alone(project.ledger.db, model=True).ok
        assert project.ledger.verify().ok
        assert project.ledger.rebuild_projections().changed == ()
    finally:
        project.close()
