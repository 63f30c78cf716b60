"""``pipetrail check``: the gate a CI job can trust.

One call:

1. runs the pipeline (the cache may serve unchanged steps), which checks every contract
   at every stage boundary; a violation or a failing step fails the gate;
2. reproduces that run (:func:`~pipetrail.verify.reproduce.reproduce_run`: no cache, same
   params, seeds and source snapshots) and requires the verdict ``reproduced`` or
   ``reproduced within tolerance``;
3. with a baseline run, compares the new run with it by the same rules (bit-identical
   artifacts, or metrics within tolerance when the settings allow differing artifacts),
   so a change that moves results fails until the baseline is updated; the params that
   differ from the baseline's are listed (``baseline["params"]``: name, baseline value,
   current value; nested params under dotted names), as are changes of code and contracts.
   Nodes are paired by name, then step, params and wiring (:mod:`pipetrail.lineage.pairing`),
   not by call position; a baseline node with no certain counterpart counts as missing,
   and the report says which nodes could not be paired (``baseline["nodes"]``);
4. with a baseline run, also compares the profiles of the new run's tables with the
   baseline's (:func:`~pipetrail.observability.drift.drift_runs`; pooled over
   ``[drift] baseline_runs`` runs); the drift is reported (``drift``), and fails the gate,
   naming the step where it starts and its columns, when ``[drift] gate = true``;
5. with ``seeds=N``, runs the pipeline under N more run seeds and reports each metric's
   mean, standard deviation and range: how much of a result is the seed's doing
   (reported, not gated).

The report is JSON-able (:meth:`CheckReport.to_dict`) and renders as Markdown for a CI
job summary (:func:`pipetrail.verify.markdown.check_markdown`); it is stored as an artifact
and a ``gate.checked`` event records the outcome.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.capture import derive_seed, validate_seed
from pipetrail.core.params import flatten_params
from pipetrail.errors import ParamError, StepFailedError
from pipetrail.execution.contract_records import run_contracts
from pipetrail.execution.crash import effective_status
from pipetrail.execution.explain import run_summary
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventKind
from pipetrail.lineage.compare import json_number, load_run_facts
from pipetrail.lineage.diff import diff_runs
from pipetrail.lineage.pairing import align_facts, pair_facts
from pipetrail.observability.alert_events import gate_alerts
from pipetrail.observability.drift import drift_runs
from pipetrail.observability.drift_config import (
    DriftGate,
    DriftThresholds,
    load_drift_gate,
    load_thresholds,
)
from pipetrail.verify.recording import record_report
from pipetrail.verify.reproduce import Reproduction, compare_reproduction, reproduce_run
from pipetrail.verify.settings import ReproduceSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.execution.executors import Executor
    from pipetrail.execution.observer import RunObserver
    from pipetrail.execution.params_files import ParamsFile
    from pipetrail.execution.project import Project

__all__ = ["CheckReport", "MetricSpread", "param_changes", "run_check"]

# More extra seeds than this is a benchmark, not a gate.
_MAX_SEEDS = 1000


@dataclass(frozen=True)
class MetricSpread:
    """One metric over the check's run and its extra seeds."""

    name: str
    values: list[float]
    mean: float
    stdev: float
    minimum: float
    maximum: float


@dataclass
class CheckReport:
    """Everything ``pipetrail check`` found; ``passed`` is the gate's answer."""

    pipeline: str
    run_id: str | None
    params: dict[str, Any]
    seed: int
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    run_status: str = "not started"
    run_error: str | None = None
    contracts: dict[str, Any] = field(default_factory=dict)
    reproduction: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None
    seeds: list[int] = field(default_factory=list)
    seed_runs: list[str] = field(default_factory=list)
    spread: list[MetricSpread] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    report_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data (non-finite numbers as text)."""
        data = asdict(self)
        for item in data["spread"]:
            item["values"] = [json_number(v) for v in item["values"]]
            for key in ("mean", "stdev", "minimum", "maximum"):
                item[key] = json_number(item[key])
        return data


def run_check(
    project: Project,
    definition: PipelineDefinition,
    params: Mapping[str, Any],
    *,
    seed: int | None = None,
    seeds: int = 0,
    baseline: str | None = None,
    settings: ReproduceSettings | None = None,
    params_files: tuple[ParamsFile, ...] = (),
    source_file: str | None = None,
    argv: list[str] | None = None,
    executor: Executor | None = None,
    observer: RunObserver | None = None,
) -> CheckReport:
    """Run, validate, reproduce (and optionally compare and re-seed) one pipeline.

    Args:
        project: where runs are recorded.
        definition: the pipeline.
        params: its parameters (validated before anything is recorded), laid over
            ``params_files``.
        seed: the run seed (default: the project's).
        seeds: how many extra run seeds to try for the spread of each metric.
        baseline: a run (id, prefix or ``latest``) the new run must match.
        settings: tolerances (default: the project's ``[reproduce]`` settings).
        params_files: params files under ``params``, as for ``pipetrail run -c``.
        source_file: the pipeline file, recorded with the runs.
        argv: the command line, recorded with the runs.
        executor: where steps run.
        observer: receives live progress of every run.

    Returns:
        The report; ``passed`` says whether the gate opens.

    Raises:
        ParamError, DefinitionError: the pipeline or its params are invalid (nothing
            recorded).
        ParamError: ``seeds`` is not a whole number from 0 to 1000, or ``seed`` is out of
            range (nothing recorded).
        NotFoundError: the baseline run does not exist (checked before anything runs).
        ParamError: the baseline run is not a completed run of this pipeline (checked
            before anything runs).
        NotReproducibleError: the run cannot be re-executed as recorded.
        StepFailedError: the store could not take a step's outputs (a full disk: see
            :attr:`~pipetrail.errors.StepFailedError.store_error`); no report is made.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 0 <= seeds <= _MAX_SEEDS:
        raise ParamError(
            f"pipetrail check: seeds= is how many extra run seeds to try, a whole number "
            f"from 0 to {_MAX_SEEDS}; got {seeds!r}"
        )
    settings = settings or ReproduceSettings.from_config(project.config)
    baseline_id = _baseline_run(project, baseline, definition.name) if baseline else None
    # [drift] is read (and refused when malformed) before anything runs.
    drift_gate = load_drift_gate(project.root) if baseline_id else None
    drift_limits = load_thresholds(project.root) if baseline_id else None
    run_seed = validate_seed(project.config.seed if seed is None else seed)
    report = CheckReport(
        pipeline=definition.name, run_id=None, params={}, seed=run_seed, settings=settings.to_dict()
    )

    def options(run_seed: int) -> RunOptions:
        return RunOptions(
            seed=run_seed,
            params_files=params_files,
            executor=executor,
            observer=observer,
            source_file=source_file,
            argv=argv,
            purpose="check",
        )

    try:
        run = run_pipeline(definition, params, project, options(run_seed))
        report.run_id, report.run_status = run.id, "completed"
    except StepFailedError as exc:
        if exc.store_error is not None:
            raise  # the store failed (a full disk), not the pipeline: nothing to judge
        report.run_id, report.run_status, report.run_error = exc.run_id, "failed", str(exc)
        report.failures.append(f"the run failed: {_shorten(str(exc))}")
    summary = run_summary(project.reader(), report.run_id) if report.run_id else {}
    report.params = summary.get("params") or {}
    if report.run_id is not None:
        report.contracts = _contracts(project, report.run_id)
        failed_checks = report.contracts["failed"]
        if failed_checks:
            report.failures.append(f"{failed_checks} contract check(s) failed")
    if report.run_status == "completed" and report.run_id is not None:
        reproduction = reproduce_run(
            project,
            report.run_id,
            definition=definition,
            source_file=source_file,
            settings=settings,
            executor=executor,
            observer=observer,
        )
        report.reproduction = _brief(reproduction)
        if not reproduction.ok:
            report.failures.append(
                f"the run did not reproduce ({reproduction.verdict}): " + _why(reproduction)
            )
        if baseline_id is not None:
            report.baseline = _against_baseline(project, baseline_id, report.run_id, settings)
            if not report.baseline["ok"]:
                report.failures.append(
                    f"the run does not match baseline {baseline_id} "
                    f"({report.baseline['verdict']}): {report.baseline['why']}"
                )
            if drift_gate is not None and drift_limits is not None:
                _drift(project, baseline_id, report, drift_gate, drift_limits)
        if seeds:
            _seed_spread(project, definition, params, report, seeds, options)
    report.passed = not report.failures
    _record(project, report)
    gate_alerts(project, report.to_dict())
    return report


def _baseline_run(project: Project, ref: str, pipeline: str) -> str:
    """Resolve the baseline; it must be a completed run of the same pipeline.

    Raises:
        NotFoundError: no run matches ``ref``.
        ParamError: the run failed, is still running, or is of another pipeline.
    """
    reader = project.reader()
    run_id = reader.resolve_run(ref)
    run = reader.get_run(run_id)
    status = effective_status(run)
    if status != "completed" or run["pipeline"] != pipeline:
        what = f"is {status}" if status != "completed" else f"is of pipeline {run['pipeline']!r}"
        raise ParamError(
            f"pipetrail check: baseline run {run_id} {what}; a baseline must be a completed "
            f"run of pipeline {pipeline!r} (list them with `pipetrail runs --pipeline "
            f"{pipeline} --status completed`)",
            problems=(("baseline", what),),
        )
    return run_id


def _shorten(text: str, limit: int = 400) -> str:
    """The start of a long error message; the run's record keeps all of it."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _contracts(project: Project, run_id: str) -> dict[str, Any]:
    """Count the run's contract checks (cached steps: those of the step run reused)."""
    found = run_contracts(project.reader(), run_id)
    failing: list[dict[str, Any]] = []
    for step in found["steps"]:
        for boundary in step["boundaries"]:
            for check in boundary.get("checks", []):
                if check.get("status") == "failed":
                    failing.append(
                        {
                            "step": step["node_id"],
                            "boundary": f"{boundary.get('boundary')} {boundary.get('name')}",
                            "artifact": boundary.get("artifact"),
                            **check,
                        }
                    )
    counts = found["counts"]
    return {
        "checks": sum(counts.values()),
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "ok": found["ok"],
        "failing": failing[:50],
    }


def _brief(result: Reproduction, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data = result.to_dict()
    data["why"] = _why(result, params or [])
    return data


def param_changes(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """List the params that differ between two runs, by dotted name.

    Returns:
        One ``{"name", "baseline", "current", "change"}`` per differing param, sorted by
        name; ``change`` is ``changed``, ``added`` (only the current run has it; its
        ``baseline`` is None) or ``removed`` (only the baseline has it).
    """
    a, b = flatten_params(baseline), flatten_params(current)
    changes = []
    for name in sorted(a.keys() | b.keys()):
        if name not in b:
            change = "removed"
        elif name not in a:
            change = "added"
        elif a[name] == b[name] and type(a[name]) is type(b[name]):
            continue
        else:
            change = "changed"
        changes.append(
            {"name": name, "baseline": a.get(name), "current": b.get(name), "change": change}
        )
    return changes


def _why(result: Reproduction, params: Sequence[dict[str, Any]] = ()) -> str:
    if result.error:
        return f"step {result.failed_step!r} failed: {result.error}"
    parts = []
    if result.differences:
        first = ", ".join(d["node_id"] for d in result.first_differences)
        parts.append(
            f"{len(result.differences)} of {result.artifacts_total} artifacts differ, "
            f"first at step(s) {first}"
        )
    outside = [m.name for m in result.metrics if not m.within]
    if outside:
        parts.append(f"metric(s) outside tolerance: {', '.join(outside)}")
    if result.code_changes:
        parts.append(f"{len(result.code_changes)} change(s) of code or contracts")
    if params:
        parts.append(f"{len(params)} param(s) differ: " + ", ".join(p["name"] for p in params[:5]))
        if len(params) > 5:
            parts[-1] += ", ..."
    return "; ".join(parts) or "everything matches"


def _against_baseline(
    project: Project, baseline_id: str, run_id: str, settings: ReproduceSettings
) -> dict[str, Any]:
    base, new = load_run_facts(project, baseline_id), load_run_facts(project, run_id)
    pairing = pair_facts(base, new)
    result = compare_reproduction(project, base, align_facts(base, new, pairing), settings)
    params = param_changes(base.params, new.params)
    data = _brief(result, params)
    data["nodes"] = pairing.to_dict()
    if pairing.ambiguous:
        unpaired = ", ".join(node for group in pairing.ambiguous for node in group.a)
        data["why"] += (
            f"; baseline node(s) {unpaired} could pair with several nodes of the new run, so "
            "they were compared with none (name the calls with step.named(...))"
        )
    data["baseline_run_id"] = baseline_id
    data["params"] = params
    data["comparable"] = diff_runs(project, baseline_id, run_id).verdict.to_dict()
    return data


def _drift(
    project: Project,
    baseline_id: str,
    report: CheckReport,
    gate: DriftGate,
    limits: DriftThresholds,
) -> None:
    """Compare the run's tables with the baseline's; fail the gate on drift if so set."""
    found = drift_runs(
        project,
        baseline_id,
        report.run_id or "",
        thresholds=limits,
        baseline_runs=gate.baseline_runs if gate.baseline_runs > 1 else None,
    )
    origins = [
        {"step": o.node, "output": o.output, "columns": list(o.columns),
         "downstream": list(o.downstream)}
        for o in found.origins
    ]  # fmt: skip
    report.drift = {
        "baseline_runs": list(found.baseline_runs) or [baseline_id],
        "drifted": found.drifted,
        "gate": gate.gate,
        "origins": origins,
        "tables": len(found.artifacts),
        "notes": list(found.notes),
    }
    if found.drifted and gate.gate:
        where = "; ".join(
            f"step {o['step']} (output {o['output']}): {', '.join(o['columns'])}" for o in origins
        )
        report.failures.append(
            f"data drift above the [drift] thresholds against baseline {baseline_id}, "
            f"starting at {where}"
        )


def _seed_spread(
    project: Project,
    definition: PipelineDefinition,
    params: Mapping[str, Any],
    report: CheckReport,
    count: int,
    options: Callable[[int], RunOptions],
) -> None:
    first = report.run_id or ""
    values: dict[str, list[float]] = {
        name: [float(m.value)] for name, m in load_run_facts(project, first).metrics.items()
    }
    for i in range(1, count + 1):
        seed = derive_seed(report.seed, f"pipetrail.check/{i}")
        report.seeds.append(seed)
        try:
            run = run_pipeline(definition, params, project, options(seed))
        except StepFailedError as exc:
            if exc.store_error is not None:
                raise
            report.seed_runs.append(exc.run_id)
            report.failures.append(f"the run with seed {seed} failed: {_shorten(str(exc))}")
            continue
        report.seed_runs.append(run.id)
        for name, metric in load_run_facts(project, run.id).metrics.items():
            values.setdefault(name, []).append(float(metric.value))
    for name in sorted(values):
        items = values[name]
        report.spread.append(
            MetricSpread(
                name=name,
                values=items,
                mean=statistics.fmean(items),
                stdev=statistics.stdev(items) if len(items) > 1 else 0.0,
                minimum=min(items),
                maximum=max(items),
            )
        )


def _record(project: Project, report: CheckReport) -> None:
    """Store the report and append the ``gate.checked`` event (when a run exists)."""
    if report.run_id is None:
        return
    payload: dict[str, Any] = {
        "run_id": report.run_id,
        "passed": report.passed,
        "failures": report.failures,
        "reproduction_run_id": (report.reproduction or {}).get("run_id"),
        "baseline_run_id": (report.baseline or {}).get("baseline_run_id"),
        "seed_runs": report.seed_runs,
    }
    if report.drift is not None:  # only with a baseline: other payloads stay as they were
        payload["drift"] = {
            k: report.drift[k] for k in ("drifted", "gate", "origins", "baseline_runs")
        }
    report.report_digest = record_report(
        project,
        report.to_dict(),
        role="gate-report",
        run_id=report.run_id,
        kind=EventKind.GATE_CHECKED,
        payload=payload,
    )
