"""Like-for-like comparison of runs: what they measured and whether that can be compared.

Owns :func:`load_run_facts` (what a comparison reads about one run), the metric rule, the
verdict (:func:`judge`) and :func:`compare_runs` (one table over many runs).
:mod:`pipetrail.lineage.diff` builds the two-run diff on top of it. Read-only. Imports
execution and the layers below it; never cli or ``lineage.diff``.

Metrics of a run:

* **logged**: ``metrics`` in a step's ``step.completed`` payload, ``{name: {"last", "min",
  "max", "count", "digest"}}``; the value is ``last``. A cache hit reads the payload of
  the step run whose outputs it reuses.
* **outputs**: every top-level int or float (not bool) of a returned step output stored
  as a JSON dict (serializer ``json``, type ``builtins.dict``), e.g. ``{"accuracy": 0.9}``.
  Reports and metric series (outputs named ``report:*`` and ``metric:*``) are not.

A metric is named ``NODE.NAME`` (``NODE.OUTPUT.NAME`` when the step has several outputs);
a logged metric wins over an output value of the same name. Steps with metrics are
*metric steps*.

Verdict: two runs are comparable unless one of these :class:`Reason` codes applies.

* ``different_pipeline``: the pipelines have different names.
* ``different_metric_definition``: a metric step in both runs has a different code digest
  (its own source or the project-local code it calls changed).
* ``different_evaluation_data``: an *evaluation input* of a metric step differs by digest.
  Every input is one except the thing being evaluated: an input whose producing step
  descends from the producer of another input of the same step (the model, trained on
  data that shares its ancestry with the evaluation data). When no input is related that
  way, the format decides: sources, tables (parquet), arrays (npy), files, folders and
  JSON lists are evaluation data; other values (models, scalars, dicts) are not.
* ``different_contracts``: a step in both runs has a different ``contracts`` key
  component (contracts are not recorded yet; the rule applies once they are).

Params, seeds, models, environments and upstream code are what a comparison is for: they
never make runs non-comparable on their own.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from pipetrail.errors import NotFoundError, PipetrailError
from pipetrail.execution.crash import effective_status
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.execution.project import Project
    from pipetrail.ledger import Reader

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

# Step event payloads hold what the projections do not (logged metrics, code_source).
_STEP_EVENTS_SQL = (
    "SELECT payload FROM events WHERE run_id = :r "
    "AND kind IN ('step.completed', 'step.cached', 'step.failed') ORDER BY seq"
)
# Metric series and reports are listed among a step run's outputs under these prefixes;
# they are not values the step returned.
_RECORDED_PREFIXES = ("metric:", "report:")
_DATA_SERIALIZERS = frozenset({"parquet", "npy", "file", "folder"})
_JSON_SEQUENCES = frozenset({("json", "builtins.list"), ("json", "builtins.tuple")})
_BASELINE = {"verdict": "baseline", "comparable": True, "reasons": [], "notes": []}


@dataclass(frozen=True)
class StepFacts:
    """What a comparison reads about one step run.

    ``inputs`` maps flat input names to digests (artifacts and sources), ``upstream``
    holds the ids of the nodes it reads from, and ``payload`` is its step event's payload
    laid over the payload of the step run it reused (for a cache hit).
    """

    node_id: str
    step: str
    status: str
    code_digest: str | None
    components: dict[str, Any]
    inputs: dict[str, str]
    outputs: dict[str, str]
    seed: int | None
    upstream: tuple[str, ...]
    payload: dict[str, Any]


@dataclass(frozen=True)
class Metric:
    """One metric value of a run; ``origin`` is ``logged`` or ``output``."""

    name: str
    node_id: str
    value: float
    origin: str


@dataclass(frozen=True)
class RunFacts:
    """What a comparison reads about one run.

    ``evaluation_inputs`` maps each metric step to its evaluation inputs; ``notes`` says
    what could not be read (an output missing from the store, for example).
    """

    run_id: str
    pipeline: str
    pipeline_fingerprint: str
    status: str
    started_at: str
    params: dict[str, Any]
    seed: int
    environment: str | None
    git_commit: str | None
    sources: dict[str, str]
    steps: dict[str, StepFacts]
    metrics: dict[str, Metric]
    evaluation_inputs: dict[str, tuple[str, ...]]
    notes: tuple[str, ...] = ()


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


# -- reading ----------------------------------------------------------------------------
def load_run_facts(project: Project, run_id: str) -> RunFacts:
    """Read one run (full id) for comparison: record, steps, metrics, evaluation inputs.

    Raises:
        NotFoundError: the run does not exist.
    """
    reader = project.reader()
    run = reader.get_run(run_id)
    nodes = (run["record"] or {}).get("nodes") or {}
    payloads = _Payloads(reader)
    steps = {
        row["node_id"]: StepFacts(
            node_id=row["node_id"],
            step=row["step"],
            status=row["status"],
            code_digest=row["code_digest"],
            components=row["components"] or {},
            inputs=row["inputs"] or {},
            outputs=row["outputs"] or {},
            seed=row["seed"],
            upstream=tuple((nodes.get(row["node_id"]) or {}).get("upstream") or ()),
            payload=payloads.merged(run_id, row["step_run_id"], row["reused_step_run_id"]),
        )
        for row in reader.step_runs(run_id)
    }
    sources = {s["path"]: s["digest"] for s in reader.sources(run_id)}
    metrics: dict[str, Metric] = {}
    notes: list[str] = []
    for facts in steps.values():
        found, problems = step_metrics(project, facts)
        metrics.update(found)
        notes.extend(problems)
    return RunFacts(
        run_id=run_id,
        pipeline=run["pipeline"],
        pipeline_fingerprint=run["pipeline_fingerprint"],
        status=effective_status(run),
        started_at=run["started_at"],
        params=run["params"] or {},
        seed=run["seed"],
        environment=run["environment"],
        git_commit=(run["git"] or {}).get("commit"),
        sources=sources,
        steps=steps,
        metrics=metrics,
        evaluation_inputs={
            node: _evaluation_inputs(steps[node], steps, set(sources.values()), reader)
            for node in sorted({m.node_id for m in metrics.values()})
        },
        notes=tuple(notes),
    )


class _Payloads:
    """Step event payloads by step run id, read one run at a time."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.by_run: dict[str, dict[str, dict[str, Any]]] = {}

    def of(self, run_id: str, step_run_id: str) -> dict[str, Any]:
        if run_id not in self.by_run:
            rows = self.reader.fetch(_STEP_EVENTS_SQL, {"r": run_id})
            payloads = [json.loads(r["payload"]) for r in rows]
            self.by_run[run_id] = {p.get("step_run_id", ""): p for p in payloads}
        return self.by_run[run_id].get(step_run_id, {})

    def merged(self, run_id: str, step_run_id: str, reused: str | None) -> dict[str, Any]:
        own = self.of(run_id, step_run_id)
        if not reused:
            return own
        try:
            origin = self.reader.step_run(reused)
        except PipetrailError:  # the reused step run is not recorded: nothing to add
            return own
        return {**self.of(origin["run_id"], reused), **own}


def step_metrics(project: Project, facts: StepFacts) -> tuple[dict[str, Metric], list[str]]:
    """Return a step run's metrics by name, and notes on outputs that could not be read."""
    found: dict[str, Metric] = {}
    notes: list[str] = []
    values = {k: v for k, v in facts.outputs.items() if not k.startswith(_RECORDED_PREFIXES)}
    for output, digest in values.items():
        record = project.reader().artifact(digest)
        if record is None or _kind(record) != ("json", "builtins.dict"):
            continue
        try:
            value = project.registry.load(StoredArtifact.from_dict(record), project.store)
        except PipetrailError as exc:
            notes.append(f"metrics of step {facts.node_id!r} output {output!r} unreadable: {exc}")
            continue
        prefix = f"{facts.node_id}.{output}." if len(values) > 1 else f"{facts.node_id}."
        for key, item in value.items():
            if _is_number(item):
                found[prefix + key] = Metric(prefix + key, facts.node_id, item, "output")
    logged = facts.payload.get("metrics")
    for key, summary in (logged if isinstance(logged, dict) else {}).items():
        last = summary.get("last") if isinstance(summary, dict) else None
        if _is_number(last):
            name = f"{facts.node_id}.{key}"
            found[name] = Metric(name, facts.node_id, last, "logged")
    return found, notes


def _kind(record: dict[str, Any]) -> tuple[str, str]:
    return record["serializer"], record["type_name"]


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ancestors(node: str, steps: dict[str, StepFacts]) -> set[str]:
    seen: set[str] = set()
    todo = [node]
    while todo:
        current = todo.pop()
        for parent in steps[current].upstream if current in steps else ():
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def _evaluation_inputs(
    facts: StepFacts, steps: dict[str, StepFacts], sources: set[str], reader: Reader
) -> tuple[str, ...]:
    """Return the names of a metric step's evaluation inputs (rules: module docstring)."""
    made_by = {d: up for up in facts.upstream if up in steps for d in steps[up].outputs.values()}
    producers = {n: None if d in sources else made_by.get(d) for n, d in facts.inputs.items()}
    evaluated = set()
    for name, producer in producers.items():
        others = {p for n, p in producers.items() if n != name and p not in (None, producer)}
        if producer is not None and others & _ancestors(producer, steps):
            evaluated.add(name)
    if evaluated:
        return tuple(sorted(set(facts.inputs) - evaluated))
    data = []
    for name, digest in facts.inputs.items():
        record = None if digest in sources else reader.artifact(digest)
        kind = ("", "") if record is None else _kind(record)
        if digest in sources or kind[0] in _DATA_SERIALIZERS or kind in _JSON_SEQUENCES:
            data.append(name)
    return tuple(sorted(data))


# -- judging ----------------------------------------------------------------------------
def _short(digest: str | None) -> str:
    return "none" if digest is None else digest.removeprefix("blake3:")[:12]


def judge(a: RunFacts, b: RunFacts) -> Verdict:
    """Decide whether run ``b`` can be compared like for like with run ``a``.

    Pure: works on loaded facts. The rules are in the module docstring.
    """
    reasons: list[Reason] = []
    notes: list[str] = []
    if a.pipeline != b.pipeline:
        message = f"run {a.run_id} is of pipeline {a.pipeline!r}, run {b.run_id} of {b.pipeline!r}"
        reasons.append(Reason("different_pipeline", message))
    for node in [node for node in a.steps if node in b.steps]:
        before, after = (run.steps[node].components.get("contracts") for run in (a, b))
        if before != after:
            message = f"step {node!r} checks different contracts ({before!r} vs {after!r})"
            reasons.append(Reason("different_contracts", message, node))
    all_metrics = (*a.metrics.values(), *b.metrics.values())
    evaluation: dict[str, list[str]] = {}
    for node in sorted({m.node_id for m in all_metrics}):
        if node not in a.steps or node not in b.steps:
            only = a if node in a.steps else b
            notes.append(f"metric step {node!r} ran only in run {only.run_id}")
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
    rows = [
        ComparedRun(
            run_id=item.run_id,
            pipeline=item.pipeline,
            status=item.status,
            started_at=item.started_at,
            params=item.params,
            metrics={name: m.value for name, m in item.metrics.items()},
            deltas={
                name: metric_delta(base.metrics[name].value, m.value)
                for name, m in item.metrics.items()
                if name in base.metrics and item is not base
            },
            verdict=None if item is base else judge(base, item),
        )
        for item in facts
    ]
    return Comparison(
        base.run_id,
        tuple(sorted({name for f in facts for name in f.params})),
        tuple(sorted({name for f in facts for name in f.metrics})),
        tuple(rows),
    )
