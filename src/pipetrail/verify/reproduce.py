"""``pipetrail reproduce RUN``: execute a recorded run again and compare every result.

The run's pipeline runs again with its recorded params and run seed (so every step gets
the seed it got), on its recorded source snapshots (see
:mod:`pipetrail.execution.snapshots`), without the cache. The new run is recorded like any
other, with ``reproduces`` naming the original. Then every artifact digest and every
metric of the two runs are compared:

* the share of artifacts (step outputs, metric series, reports) that are bit-identical;
* for each differing artifact, the first step where a difference appears: walking
  upstream from the artifact's step, the steps whose own outputs differ although
  everything they read was identical;
* each metric's delta against its tolerance (:mod:`pipetrail.verify.settings`);
* the environment differences that may explain a mismatch, and the steps whose code
  changed since the run (a reproduction with other code reproduces something else).

Verdicts: ``reproduced`` (every artifact identical, hence every metric equal),
``reproduced within tolerance`` (some artifacts differ, every metric is within tolerance,
and the settings do not require identical artifacts), ``not reproduced``, and ``failed``
(a step raised). The report is stored as a JSON artifact and a ``reproduction.checked``
event records the verdict in the ledger.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.errors import NotReproducibleError, StepFailedError
from pipetrail.execution.crash import effective_status
from pipetrail.execution.loader import load_pipeline
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.execution.snapshots import SourceSnapshots
from pipetrail.ledger import EventKind
from pipetrail.lineage.compare import RunFacts, json_number, load_run_facts
from pipetrail.lineage.diff import diff_environments, load_environment
from pipetrail.verify.recording import record_report
from pipetrail.verify.settings import ReproduceSettings

if TYPE_CHECKING:
    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.execution.executors import Executor
    from pipetrail.execution.observer import RunObserver
    from pipetrail.execution.project import Project

__all__ = [
    "ArtifactDifference",
    "MetricCheck",
    "Reproduction",
    "compare_reproduction",
    "reproduce_run",
]

REPRODUCED = "reproduced"
WITHIN_TOLERANCE = "reproduced within tolerance"
NOT_REPRODUCED = "not reproduced"
FAILED = "failed"


@dataclass(frozen=True)
class ArtifactDifference:
    """An artifact of the original run that the reproduction did not produce identically.

    Attributes:
        node_id: the step (node) that produced it.
        output: its output name (``metric:NAME`` and ``report:NAME`` included).
        expected: the original digest.
        actual: the reproduced digest; None when the reproduction did not produce it.
        first_difference: the node(s) where the difference first appears upstream.
    """

    node_id: str
    step: str
    output: str
    expected: str | None
    actual: str | None
    first_difference: tuple[str, ...]


@dataclass(frozen=True)
class MetricCheck:
    """One metric in both runs, and whether the difference is within its tolerance."""

    name: str
    expected: float | None
    actual: float | None
    delta: float | None
    tolerance: dict[str, float]
    within: bool


@dataclass
class Reproduction:
    """The outcome of reproducing one run (see the module docs for the verdicts)."""

    original_run_id: str
    run_id: str
    verdict: str
    artifacts_total: int
    artifacts_identical: int
    differences: list[ArtifactDifference] = field(default_factory=list)
    first_differences: list[dict[str, str]] = field(default_factory=list)
    metrics: list[MetricCheck] = field(default_factory=list)
    code_changes: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None
    report_digest: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run reproduced (exactly or within tolerance)."""
        return self.verdict in (REPRODUCED, WITHIN_TOLERANCE)

    @property
    def identical_share(self) -> float:
        """The share of artifacts that are bit-identical (1.0 when there are none)."""
        return self.artifacts_identical / self.artifacts_total if self.artifacts_total else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data (non-finite numbers as text)."""
        data = asdict(self)
        data["ok"] = self.ok
        data["identical_share"] = self.identical_share
        for metric in data["metrics"]:
            for key in ("expected", "actual", "delta"):
                metric[key] = json_number(metric[key])
        return data


def reproduce_run(
    project: Project,
    run_ref: str,
    *,
    definition: PipelineDefinition | None = None,
    source_file: str | None = None,
    settings: ReproduceSettings | None = None,
    executor: Executor | None = None,
    observer: RunObserver | None = None,
) -> Reproduction:
    """Re-execute a recorded run without the cache and compare everything it produced.

    Args:
        project: the project holding the run.
        run_ref: the run (id, unique prefix or ``latest``).
        definition: the pipeline to run; by default the one recorded with the run (its
            file and name), imported from where it was or, if that file is gone, from
            the same place inside this project (another checkout).
        source_file: the file ``definition`` comes from, recorded for the new run.
        settings: tolerances; by default the project's ``[reproduce]`` settings.
        executor: where steps run (default: in-process).
        observer: receives live progress of the new run.

    Returns:
        The comparison; its report is stored and a ``reproduction.checked`` event appended.

    Raises:
        NotFoundError: the run does not exist.
        NotReproducibleError: the run cannot be re-executed as it was (still running,
            its pipeline cannot be found or ``definition`` is another pipeline, a source
            tracked by reference changed, a snapshot is missing); nothing is recorded.
        ParamError: the recorded params no longer fit the pipeline (nothing recorded).
        StepFailedError: the store could not take a step's outputs (a full disk: see
            :attr:`~pipetrail.errors.StepFailedError.store_error`); the new run is
            recorded as failed, the reproduction is not.
    """
    reader = project.reader()
    run_id = reader.resolve_run(run_ref)
    run = reader.get_run(run_id)
    status = effective_status(run)
    if status != "completed":
        raise NotReproducibleError(
            f"cannot reproduce run {run_id}: it is {status}; only completed runs have "
            "results to compare. Reproduce a completed run of the pipeline",
            run_id=run_id,
        )
    record = run["record"] or {}
    if definition is None:
        found = _recorded_file(project.root, record)
        definition = _recorded_definition(run_id, run["pipeline"], found)
        source_file = source_file or found
    if definition.name != run["pipeline"]:
        raise NotReproducibleError(
            f"cannot reproduce run {run_id} of pipeline {run['pipeline']!r} with pipeline "
            f"{definition.name!r}; pass the pipeline the run was made with "
            f"(--pipeline FILE.py:{run['pipeline']})",
            run_id=run_id,
        )
    if settings is None:
        settings = ReproduceSettings.from_config(project.config)
    original = load_run_facts(project, run_id)
    tmp_root = project.config.state_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="reproduce-", dir=tmp_root))
    error: StepFailedError | None = None
    try:
        options = RunOptions(
            cache=False,
            seed=run["seed"],
            executor=executor,
            observer=observer,
            source_file=source_file,
            argv=["pipetrail", *sys.argv[1:]] if sys.argv[0].endswith("pipetrail") else None,
            snapshots=SourceSnapshots.of_run(reader, run_id, workdir),
            reproduces=run_id,
            purpose="reproduce",
            # Environment differences are reported by the comparison, not refused.
            parity="off",
        )
        try:
            new_run_id = run_pipeline(definition, run["params"] or {}, project, options).id
        except StepFailedError as exc:
            if exc.store_error is not None:
                raise  # the store failed (a full disk), not the run: there is nothing to judge
            error, new_run_id = exc, exc.run_id
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = compare_reproduction(project, original, load_run_facts(project, new_run_id), settings)
    if error is not None:
        result.verdict, result.error, result.failed_step = FAILED, str(error), error.step
    _record(project, result)
    return result


def _recorded_file(root: Path, record: dict[str, Any]) -> str | None:
    """The recorded pipeline file, or the same path inside this checkout of the project."""
    file = record.get("pipeline_file")
    relative = record.get("pipeline_path")
    if (not file or not Path(file).is_file()) and relative and (root / relative).is_file():
        return str(root / relative)
    return file if isinstance(file, str) else None


def _recorded_definition(run_id: str, pipeline: str, file: str | None) -> PipelineDefinition:
    if not file:
        raise NotReproducibleError(
            f"cannot reproduce run {run_id}: it was not started from a pipeline file (no "
            "file is recorded); pass the pipeline: `pipetrail reproduce RUN --pipeline "
            "FILE.py`, or reproduce_run(..., definition=...)",
            run_id=run_id,
        )
    if not Path(file).is_file():
        raise NotReproducibleError(
            f"cannot reproduce run {run_id}: its pipeline file {file} does not exist any "
            "more; check out the commit the run was made with, or pass --pipeline FILE.py",
            run_id=run_id,
        )
    definition, _ = load_pipeline(f"{file}:{pipeline}")
    return definition


def compare_reproduction(
    project: Project, original: RunFacts, new: RunFacts, settings: ReproduceSettings
) -> Reproduction:
    """Compare a reproduction with the original run (artifacts, metrics, code, environment)."""
    differing_nodes: set[str] = set()
    pending: list[tuple[str, str, str, str | None, str | None]] = []
    total = identical = 0
    for node_id, facts in original.steps.items():
        got = new.steps.get(node_id)
        produced = got.outputs if got is not None else {}
        for output in sorted({*facts.outputs, *produced}):
            total += 1
            expected, actual = facts.outputs.get(output), produced.get(output)
            if expected is not None and expected == actual:
                identical += 1
                continue
            differing_nodes.add(node_id)
            pending.append((node_id, facts.step, output, expected, actual))
    origins = _Origins(original, differing_nodes)
    differences = [
        ArtifactDifference(node, step, output, expected, actual, origins.of(node))
        for node, step, output, expected, actual in pending
    ]
    first = sorted({n for d in differences for n in d.first_difference}, key=_order(original))
    metrics = _metric_checks(original, new, settings)
    if not differences and all(m.within for m in metrics):
        verdict = REPRODUCED
    elif (
        not settings.require_identical_artifacts
        and metrics
        and all(m.within for m in metrics)
        and all(d.actual is not None for d in differences)
    ):
        verdict = WITHIN_TOLERANCE
    else:
        verdict = NOT_REPRODUCED
    env = diff_environments(
        load_environment(project, original.environment),
        load_environment(project, new.environment),
        digests=(original.environment, new.environment),
    )
    return Reproduction(
        original_run_id=original.run_id,
        run_id=new.run_id,
        verdict=verdict,
        artifacts_total=total,
        artifacts_identical=identical,
        differences=differences,
        first_differences=[{"node_id": n, "step": original.steps[n].step} for n in first],
        metrics=metrics,
        code_changes=_code_changes(original, new),
        environment=asdict(env),
        settings=settings.to_dict(),
    )


class _Origins:
    """Where each differing node's difference first appears, walking upstream."""

    def __init__(self, facts: RunFacts, differing: set[str]) -> None:
        self.facts, self.differing = facts, differing
        self.memo: dict[str, tuple[str, ...]] = {}

    def of(self, node: str) -> tuple[str, ...]:
        found = self.memo.get(node)
        if found is None:
            step = self.facts.steps.get(node)
            ups = [u for u in (step.upstream if step else ()) if u in self.differing]
            if not ups:
                found = (node,)
            else:
                merged = {origin for u in ups for origin in self.of(u)}
                found = tuple(sorted(merged, key=_order(self.facts)))
            self.memo[node] = found
        return found


def _order(facts: RunFacts) -> Any:
    position = {node: i for i, node in enumerate(facts.steps)}
    return lambda node: (position.get(node, len(position)), node)


def _metric_checks(
    original: RunFacts, new: RunFacts, settings: ReproduceSettings
) -> list[MetricCheck]:
    checks = []
    for name in sorted({*original.metrics, *new.metrics}):
        a, b = original.metrics.get(name), new.metrics.get(name)
        tol = settings.for_metric(name)
        expected = None if a is None else float(a.value)
        actual = None if b is None else float(b.value)
        if expected is None or actual is None:
            checks.append(MetricCheck(name, expected, actual, None, tol.to_dict(), False))
            continue
        delta = actual - expected
        checks.append(
            MetricCheck(name, expected, actual, delta, tol.to_dict(), tol.allows(expected, actual))
        )
    return checks


def _code_changes(original: RunFacts, new: RunFacts) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    for node, facts in original.steps.items():
        got = new.steps.get(node)
        if got is None:
            changes.append({"node_id": node, "step": facts.step, "change": "step removed"})
        elif got.code_digest != facts.code_digest:
            changes.append(
                {
                    "node_id": node,
                    "step": facts.step,
                    "change": "code changed",
                    "recorded": facts.code_digest,
                    "current": got.code_digest,
                }
            )
        if got is not None and got.components.get("contracts") != facts.components.get("contracts"):
            changes.append(
                {
                    "node_id": node,
                    "step": facts.step,
                    "change": "contracts changed",
                    "recorded": facts.components.get("contracts"),
                    "current": got.components.get("contracts"),
                }
            )
    for node in new.steps.keys() - original.steps.keys():
        changes.append({"node_id": node, "step": new.steps[node].step, "change": "step added"})
    return changes


def _record(project: Project, result: Reproduction) -> None:
    """Store the report and append the ``reproduction.checked`` event."""
    result.report_digest = record_report(
        project,
        result.to_dict(),
        role="reproduction-report",
        run_id=result.run_id,
        kind=EventKind.REPRODUCTION_CHECKED,
        payload={
            "run_id": result.run_id,
            "original_run_id": result.original_run_id,
            "verdict": result.verdict,
            "ok": result.ok,
            "artifacts_total": result.artifacts_total,
            "artifacts_identical": result.artifacts_identical,
            "first_differences": result.first_differences,
        },
    )
