"""What a comparison reads about one run: steps, inputs, metrics, evaluation inputs.

Owns :class:`RunFacts` / :class:`StepFacts` / :class:`Metric`, :func:`load_run_facts`
and :func:`step_metrics`; :mod:`pipetrail.lineage.compare` judges and tabulates them.
Read-only. Imports execution and the layers below it; never cli or ``lineage.diff``.

Metrics of a run:

* **logged**: the ``metrics`` of a step's closing event (:class:`StepEvent`), ``{name:
  {"last", "min", "max", "count", "digest"}}``; the value is ``last``. A cache hit that
  recorded none reads those of the step run whose outputs it reuses.
* **outputs**: every top-level int or float (not bool) of a returned step output stored
  as a JSON dict (serializer ``json``, type ``builtins.dict``), e.g. ``{"accuracy": 0.9}``.
  Reports and metric series (outputs named ``report:*`` and ``metric:*``) are not.

A metric is named ``NODE.NAME`` (``NODE.OUTPUT.NAME`` when the step has several outputs);
a logged metric wins over an output value of the same name. Steps with metrics are
*metric steps*.

Evaluation inputs of a metric step: every input except the thing being evaluated, i.e.
an input whose producing step descends from the producer of another input of the same
step (the model, trained on data that shares its ancestry with the evaluation data).
When no input is related that way, the format decides: sources, tables (parquet),
arrays (npy), files, folders and JSON lists are evaluation data; other values (models,
scalars, dicts) are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from pipetrail.errors import PipetrailError
from pipetrail.execution.crash import effective_status
from pipetrail.ledger.event_reads import closing_step_events
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    from pipetrail.execution.project import Project
    from pipetrail.ledger import Reader
    from pipetrail.ledger.event_records import StepEvent

__all__ = ["Metric", "RunFacts", "StepFacts", "load_run_facts", "step_metrics"]

# Metric series and reports are listed among a step run's outputs under these prefixes;
# they are not values the step returned.
_RECORDED_PREFIXES = ("metric:", "report:")
_DATA_SERIALIZERS = frozenset({"parquet", "npy", "file", "folder"})
_JSON_SEQUENCES = frozenset({("json", "builtins.list"), ("json", "builtins.tuple")})


@dataclass(frozen=True)
class StepFacts:
    """What a comparison reads about one step run.

    ``inputs`` maps flat input names to digests (artifacts and sources), ``upstream``
    holds the ids of the nodes it reads from, and ``name`` the node's name given at the
    call site (None when unnamed). ``logged_metrics`` (metric name -> summary) and
    ``code_source`` (the digest of the step's stored source text) come from its closing
    step event; a cache hit that lacks them has those of the step run it reused.
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
    name: str | None = None
    logged_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    code_source: str | None = None


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


def load_run_facts(project: Project, run_id: str) -> RunFacts:
    """Read one run (full id) for comparison: record, steps, metrics, evaluation inputs.

    Raises:
        NotFoundError: the run does not exist.
    """
    reader = project.reader()
    run = reader.get_run(run_id)
    nodes = (run["record"] or {}).get("nodes") or {}
    events = _StepEvents(reader)
    steps = {
        row["node_id"]: _step_facts(
            row,
            events.merged(run_id, row["step_run_id"], row["reused_step_run_id"]),
            # From the run's own record: the step run a cache hit reused may have been
            # given another name.
            nodes.get(row["node_id"]) or {},
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


def _step_facts(
    row: dict[str, Any], closing: tuple[StepEvent | None, StepEvent | None], node: dict[str, Any]
) -> StepFacts:
    """A step run's facts from its row, its closing event and the reused one's (if any)."""
    own, origin = closing
    metrics = (own.metrics if own else {}) or (origin.metrics if origin else {})
    code_source = (own.code_source if own else None) or (origin.code_source if origin else None)
    return StepFacts(
        node_id=row["node_id"],
        step=row["step"],
        status=row["status"],
        code_digest=row["code_digest"],
        components=row["components"] or {},
        inputs=row["inputs"] or {},
        outputs=row["outputs"] or {},
        seed=row["seed"],
        upstream=tuple(node.get("upstream") or ()),
        name=node.get("name"),
        logged_metrics=dict(metrics),
        code_source=code_source,
    )


class _StepEvents:
    """The closing step events of runs by step run id, read one run at a time."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.by_run: dict[str, dict[str, StepEvent]] = {}

    def of(self, run_id: str, step_run_id: str) -> StepEvent | None:
        if run_id not in self.by_run:
            events = closing_step_events(self.reader, run_id)
            self.by_run[run_id] = {e.step_run_id: e for e in events}
        return self.by_run[run_id].get(step_run_id)

    def merged(
        self, run_id: str, step_run_id: str, reused: str | None
    ) -> tuple[StepEvent | None, StepEvent | None]:
        """The step run's closing event and, for a cache hit, the reused one's."""
        own = self.of(run_id, step_run_id)
        if not reused:
            return own, None
        try:
            origin = self.reader.step_run(reused)
        except PipetrailError:  # the reused step run is not recorded: nothing to add
            return own, None
        return own, self.of(origin["run_id"], reused)


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
    for key, summary in facts.logged_metrics.items():
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
