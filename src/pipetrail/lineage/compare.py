"""Like-for-like comparison of runs: what they measured and whether that can be compared.

Owns the verdict (:func:`judge`) and :func:`compare_runs` (one table over many runs).
What a comparison reads about one run, its metrics and the evaluation inputs of its
metric steps come from :mod:`pipetrail.lineage.run_facts` (re-exported here: facts,
``load_run_facts``, ``step_metrics``). :mod:`pipetrail.lineage.diff` builds the two-run
diff on top of it. Read-only. Imports execution and the layers below it; never cli or
``lineage.diff``.

Verdict: two runs are comparable unless one of these :class:`Reason` codes applies.

* ``different_pipeline``: the pipelines have different names.
* ``different_metric_definition``: a metric step in both runs has a different code digest
  (its own source or the project-local code it calls changed).
* ``different_evaluation_data``: an *evaluation input* of a metric step differs by digest
  (which inputs are evaluation inputs: :mod:`pipetrail.lineage.run_facts`).
* ``different_contracts``: a step in both runs has a different ``contracts`` key
  component (contracts are not recorded yet; the rule applies once they are).

Params, seeds, models, environments and upstream code are what a comparison is for: they
never make runs non-comparable on their own.

Steps of the two runs are put side by side by :func:`~pipetrail.lineage.pairing.pair_facts`
(by node name, then step, params and wiring; never by call position). A metric step with
no certain counterpart (added, removed, or one of several that could pair) is a note, not
a reason; in :func:`compare_runs` each run's metrics are named by the baseline's node ids.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.errors import NotFoundError
from pipetrail.lineage.pairing import align_facts, pair_facts
from pipetrail.lineage.run_facts import Metric as Metric
from pipetrail.lineage.run_facts import RunFacts as RunFacts
from pipetrail.lineage.run_facts import StepFacts as StepFacts
from pipetrail.lineage.run_facts import load_run_facts as load_run_facts
from pipetrail.lineage.run_facts import step_metrics as step_metrics

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.execution.node_pairing import NodePairing
    from pipetrail.execution.project import Project

__all__ = [
    "ComparedRun",
    "Comparison",
    "Metric",
    "Reason",
    "RunFacts",
    "StepFacts",
    "Verdict",
    "compare_runs",
    "judge",
    "json_number",
    "load_run_facts",
    "metric_delta",
    "step_metrics",
]

_BASELINE = {"verdict": "baseline", "comparable": True, "reasons": [], "notes": []}


@dataclass(frozen=True)
class Reason:
    """Why two runs are not comparable like for like (``code``: see the module docs)."""

    code: str
    message: str
    step: str | None = None


@dataclass(frozen=True)
class Verdict:
    """Whether two runs can be compared like for like, and why not."""

    comparable: bool
    reasons: tuple[Reason, ...] = ()
    notes: tuple[str, ...] = ()
    evaluation_inputs: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-able data."""
        return {
            "verdict": "comparable" if self.comparable else "not comparable",
            "comparable": self.comparable,
            "reasons": [asdict(reason) for reason in self.reasons],
            "notes": list(self.notes),
            "evaluation_inputs": self.evaluation_inputs,
        }


# -- judging ----------------------------------------------------------------------------
def _short(digest: str | None) -> str:
    return "none" if digest is None else digest.removeprefix("blake3:")[:12]


def judge(a: RunFacts, b: RunFacts, pairing: NodePairing | None = None) -> Verdict:
    """Decide whether run ``b`` can be compared like for like with run ``a``.

    Pure: works on loaded facts. The rules are in the module docstring.

    Args:
        a: the first run's facts.
        b: the second run's facts.
        pairing: how their nodes pair (computed when not given).
    """
    reasons: list[Reason] = []
    pairing = pairing or pair_facts(a, b)
    notes = _pairing_notes(a, b, pairing)
    if a.pipeline != b.pipeline:
        message = f"run {a.run_id} is of pipeline {a.pipeline!r}, run {b.run_id} of {b.pipeline!r}"
        reasons.append(Reason("different_pipeline", message))
    b = align_facts(a, b, pairing)
    for node in [node for node in a.steps if node in b.steps]:
        before, after = (run.steps[node].components.get("contracts") for run in (a, b))
        if before != after:
            message = f"step {node!r} checks different contracts ({before!r} vs {after!r})"
            reasons.append(Reason("different_contracts", message, node))
    all_metrics = (*a.metrics.values(), *b.metrics.values())
    evaluation: dict[str, list[str]] = {}
    for node in sorted({m.node_id for m in all_metrics}):
        if node not in a.steps or node not in b.steps:
            # Ambiguous nodes ran in both runs; _pairing_notes says so.
            if node in a.steps and pairing.ambiguity_of(node, side="a") is None:
                notes.append(f"metric step {node!r} ran only in run {a.run_id}")
            elif node in b.steps and pairing.ambiguity_of(b.steps[node].node_id, side="b") is None:
                notes.append(f"metric step {b.steps[node].node_id!r} ran only in run {b.run_id}")
            continue
        step_a, step_b = a.steps[node], b.steps[node]
        computed = sorted({m.name for m in all_metrics if m.node_id == node})
        names = ", ".join(computed) if len(computed) <= 3 else f"{len(computed)} metrics"
        if step_a.code_digest != step_b.code_digest:
            message = (
                f"step {node!r} computes {names} with different code "
                f"({_short(step_a.code_digest)} vs {_short(step_b.code_digest)})"
            )
            reasons.append(Reason("different_metric_definition", message, node))
        inputs = a.evaluation_inputs.get(node, ()) + b.evaluation_inputs.get(node, ())
        evaluation[node] = sorted(set(inputs))
        differing = [
            f"{name} ({_short(step_a.inputs.get(name))} vs {_short(step_b.inputs.get(name))})"
            for name in evaluation[node]
            if step_a.inputs.get(name) != step_b.inputs.get(name)
        ]
        if differing:
            message = f"step {node!r} computes {names} on different data: " + ", ".join(differing)
            reasons.append(Reason("different_evaluation_data", message, node))
    if not all_metrics:
        notes.append("neither run recorded metrics; nothing to compare like for like")
    return Verdict(not reasons, tuple(reasons), tuple(notes), evaluation)


def _pairing_notes(a: RunFacts, b: RunFacts, pairing: NodePairing) -> list[str]:
    """Say which nodes pair with no certain counterpart (never a guess, see pairing)."""
    notes = []
    for group in pairing.ambiguous:
        notes.append(
            f"step {group.step!r}: {', '.join(group.a)} in run {a.run_id} and "
            f"{', '.join(group.b)} in run {b.run_id} cannot be paired: {group.reason}"
        )
    moved = [f"{p.a} -> {p.b}" for p in pairing.pairs if p.a != p.b]
    if moved:
        notes.append("nodes paired by name or params, not by call position: " + ", ".join(moved))
    return notes


def metric_delta(a: float | None, b: float | None) -> float | None:
    """Return ``b - a`` when both are finite numbers, else None."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return b - a


def json_number(value: float | None) -> float | str | None:
    """Return a number as JSON allows it: non-finite floats become text."""
    return value if value is None or math.isfinite(value) else str(value)


# -- many runs --------------------------------------------------------------------------
@dataclass(frozen=True)
class ComparedRun:
    """One row of a comparison: a run judged against the baseline (None for itself)."""

    run_id: str
    pipeline: str
    status: str
    started_at: str
    params: dict[str, Any]
    metrics: dict[str, float]
    deltas: dict[str, float | None]
    verdict: Verdict | None
    pairing: NodePairing | None = None


@dataclass(frozen=True)
class Comparison:
    """One table over many runs; the first run is the baseline."""

    baseline: str
    param_names: tuple[str, ...]
    metric_names: tuple[str, ...]
    runs: tuple[ComparedRun, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as JSON-able data (non-finite numbers as text)."""
        rows = []
        for run in self.runs:
            row = asdict(run)  # its "verdict" is replaced by the verdict's own keys
            row.update(_BASELINE if run.verdict is None else run.verdict.to_dict())
            row["metrics"] = {k: json_number(v) for k, v in run.metrics.items()}
            row["baseline"] = run.verdict is None
            rows.append(row)
        return {
            "baseline": self.baseline,
            "params": list(self.param_names),
            "metrics": list(self.metric_names),
            "runs": rows,
        }


def compare_runs(project: Project, refs: Iterable[str]) -> Comparison:
    """Compare many runs in one table, each judged against the first.

    Args:
        project: the project whose records to read.
        refs: run ids, unique prefixes or ``latest``; the first is the baseline.

    Raises:
        NotFoundError: a ref matches no run, or no ref was given.
        AmbiguousPrefixError: a ref matches several runs.
    """
    reader = project.reader()
    facts = [load_run_facts(project, reader.resolve_run(ref)) for ref in refs]
    if not facts:
        raise NotFoundError("no runs to compare; name at least one run (see `pipetrail runs`)")
    base = facts[0]
    rows = [ComparedRun(**_row(base, base, None), verdict=None)]
    aligned = [base]
    for item in facts[1:]:
        # Each run's metrics are named by the baseline's node ids (see pairing).
        pairing = pair_facts(base, item)
        lined_up = align_facts(base, item, pairing)
        aligned.append(lined_up)
        rows.append(
            ComparedRun(
                **_row(base, lined_up, item),
                verdict=judge(base, item, pairing),
                pairing=pairing,
            )
        )
    return Comparison(
        base.run_id,
        tuple(sorted({name for f in facts for name in f.params})),
        tuple(sorted({name for f in aligned for name in f.metrics})),
        tuple(rows),
    )


def _row(base: RunFacts, item: RunFacts, original: RunFacts | None) -> dict[str, Any]:
    return {
        "run_id": item.run_id,
        "pipeline": item.pipeline,
        "status": item.status,
        "started_at": item.started_at,
        "params": item.params,
        "metrics": {name: m.value for name, m in item.metrics.items()},
        "deltas": {
            name: metric_delta(base.metrics[name].value, m.value)
            for name, m in item.metrics.items()
            if name in base.metrics and original is not None
        },
    }
