"""Two runs side by side: params, code, data, seeds, environment, metrics and a verdict.

Owns :func:`diff_runs` and its result :class:`RunDiff` (``to_dict()`` is the JSON form of
``pipetrail diff``), and :func:`diff_environments` over two environment snapshots (see
:mod:`pipetrail.capture.environment` for their schema). Whether the runs are comparable
like for like, and what their metrics are, is decided by :mod:`pipetrail.lineage.compare`.
Read-only. Imports execution and the layers below it; never cli.

Steps, seeds and metrics of the two runs are put side by side by node pairing
(:mod:`pipetrail.lineage.pairing`: by node name, then step, params and wiring; never by
call position). ``nodes`` holds the pairing: the pairs, the nodes only in run A
(``removed``) or only in run B (``added``), and the ``ambiguous`` ones, which are paired
with nothing. A step in ``steps`` says how it was paired (``paired_by``) and its id in
run B when that differs (``node_id_b``); a metric is named by run A's node id.

Step source texts for the code diff come from the content store. The step event's
``code_source`` field names the blob when the run recorded it. Older runs did not:
then the text is the ``code`` artifact (meta ``{"step": NAME}``) first recorded by a run
in which a step of that name had the same code digest, preferring the run itself, then the
newest run before it. The artifact is recorded once per distinct text, so a step whose own
text is unchanged but whose called code changed may have no text to show; ``parts`` still
names the changed helpers.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.capture.environment_diff import Change as Change
from pipetrail.capture.environment_diff import EnvironmentDiff as EnvironmentDiff
from pipetrail.capture.environment_diff import MappingDiff as MappingDiff
from pipetrail.capture.environment_diff import diff_environments as diff_environments
from pipetrail.errors import PipetrailError
from pipetrail.execution.cache import explain_change
from pipetrail.execution.node_pairing import NodePairing
from pipetrail.ledger.event_reads import code_artifacts
from pipetrail.lineage.compare import (
    RunFacts,
    StepFacts,
    Verdict,
    json_number,
    judge,
    load_run_facts,
    metric_delta,
)
from pipetrail.lineage.pairing import align_facts, pair_facts
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    from pipetrail.execution.project import Project

__all__ = [
    "Change",
    "CodeDiff",
    "EnvironmentDiff",
    "MappingDiff",
    "MetricDelta",
    "RunDiff",
    "StepDiff",
    "diff_environments",
    "diff_runs",
    "load_environment",
]

_BRIEF_KEYS = (
    "run_id", "pipeline", "pipeline_fingerprint", "status", "started_at", "git_commit",
    "environment",
)  # fmt: skip


@dataclass(frozen=True)
class CodeDiff:
    """How a step's code differs.

    Attributes:
        parts: changes of the project-local code it covers (``+ name``, ``~ name: a -> b``).
        source_diff: a unified diff of the step's own source ("" when equal; None when a
            text is unavailable, see ``note``).
    """

    digest_a: str | None
    digest_b: str | None
    parts: list[str]
    source_diff: str | None
    note: str | None = None


@dataclass(frozen=True)
class StepDiff:
    """One step present in either run whose key components or outputs differ.

    ``changed`` names the differing key components (``code``, ``params``, ``inputs``...);
    a status of None means the step did not run in that run. ``node_id`` is the node's id
    in run A (in run B for a node only there); ``node_id_b`` its partner's id in run B
    when paired. ``paired_by`` is ``name``, ``params`` or ``step`` for a pair, ``removed``
    or ``added`` for a node of one run only, ``ambiguous`` for a node that could pair with
    several (see :mod:`pipetrail.execution.node_pairing`).
    """

    node_id: str
    step: str
    status_a: str | None
    status_b: str | None
    changed: list[str]
    code: CodeDiff | None
    inputs: MappingDiff
    outputs: MappingDiff
    node_id_b: str | None = None
    paired_by: str | None = None


@dataclass(frozen=True)
class MetricDelta:
    """One metric in both runs; ``delta`` is ``b - a`` (None if either is missing).

    ``name`` and ``node_id`` use run A's node id; ``node_id_b`` is the node of run B the
    value ``b`` comes from (None when run B has none).
    """

    name: str
    node_id: str
    a: float | None
    b: float | None
    delta: float | None
    node_id_b: str | None = None


@dataclass(frozen=True)
class RunDiff:
    """Everything that differs between run A and run B, and whether they are comparable.

    ``run_seed`` is None when the run seeds are equal; ``step_seeds`` lists the paired
    steps whose derived seeds differ (by run A's node id); ``nodes`` is how the nodes of
    the two runs pair.
    """

    a: dict[str, Any]
    b: dict[str, Any]
    params: MappingDiff
    run_seed: Change | None
    step_seeds: dict[str, Change]
    sources: MappingDiff
    steps: list[StepDiff]
    environment: EnvironmentDiff
    metrics: list[MetricDelta]
    verdict: Verdict
    nodes: NodePairing = field(default_factory=NodePairing)

    def to_dict(self) -> dict[str, Any]:
        """Return the diff as JSON-able data (non-finite metric values as text)."""
        data = asdict(self)
        data["verdict"] = self.verdict.to_dict()
        data["nodes"] = self.nodes.to_dict()
        for metric in data["metrics"]:
            for key in ("a", "b", "delta"):
                metric[key] = json_number(metric[key])
        return data


def diff_runs(project: Project, a: str, b: str) -> RunDiff:
    """Compare run ``b`` with run ``a`` (ids, unique prefixes or ``latest``).

    Raises:
        NotFoundError: a ref matches no run.
        AmbiguousPrefixError: a ref matches several runs.
    """
    reader = project.reader()
    facts_a = load_run_facts(project, reader.resolve_run(a))
    facts_b = load_run_facts(project, reader.resolve_run(b))
    pairing = pair_facts(facts_a, facts_b)
    step_seeds = {
        pair.a: Change(facts_a.steps[pair.a].seed, facts_b.steps[pair.b].seed)
        for pair in pairing.pairs
        if facts_a.steps[pair.a].seed != facts_b.steps[pair.b].seed
    }
    return RunDiff(
        a=_brief(facts_a),
        b=_brief(facts_b),
        params=MappingDiff.between(facts_a.params, facts_b.params),
        run_seed=None if facts_a.seed == facts_b.seed else Change(facts_a.seed, facts_b.seed),
        step_seeds=step_seeds,
        sources=MappingDiff.between(facts_a.sources, facts_b.sources),
        steps=_step_diffs(project, facts_a, facts_b, pairing),
        environment=diff_environments(
            load_environment(project, facts_a.environment),
            load_environment(project, facts_b.environment),
            digests=(facts_a.environment, facts_b.environment),
        ),
        metrics=_metric_deltas(facts_a, align_facts(facts_a, facts_b, pairing)),
        verdict=judge(facts_a, facts_b, pairing),
        nodes=pairing,
    )


def _brief(facts: RunFacts) -> dict[str, Any]:
    return {key: getattr(facts, key) for key in _BRIEF_KEYS} | {"notes": list(facts.notes)}


def _metric_deltas(a: RunFacts, b: RunFacts) -> list[MetricDelta]:
    found = []
    for name in sorted(set(a.metrics) | set(b.metrics)):
        pair = (a.metrics.get(name), b.metrics.get(name))
        value_a, value_b = (None if m is None else m.value for m in pair)
        node = next(m.node_id for m in pair if m is not None)
        node_b = None if pair[1] is None else b.steps[pair[1].node_id].node_id
        delta = metric_delta(value_a, value_b)
        found.append(MetricDelta(name, node, value_a, value_b, delta, node_b))
    return found


# -- steps and code ---------------------------------------------------------------------
def _sides(pairing: NodePairing) -> list[tuple[str | None, str | None, str]]:
    """(node of A, node of B, how paired) for every node of either run."""
    found: list[tuple[str | None, str | None, str]] = [
        (pair.a, pair.b, pair.by) for pair in pairing.pairs
    ]
    found += [(node, None, "removed") for node in pairing.removed]
    for group in pairing.ambiguous:
        found += [(node, None, "ambiguous") for node in group.a]
    found += [(None, node, "added") for node in pairing.added]
    for group in pairing.ambiguous:
        found += [(None, node, "ambiguous") for node in group.b]
    return found


def _step_diffs(project: Project, a: RunFacts, b: RunFacts, pairing: NodePairing) -> list[StepDiff]:
    found: list[StepDiff] = []
    for node_a, node_b, by in _sides(pairing):
        step_a = None if node_a is None else a.steps[node_a]
        step_b = None if node_b is None else b.steps[node_b]
        node = node_a or node_b or ""  # one side always holds a node (_sides)
        changed: list[str] = []
        code = None
        if step_a is not None and step_b is not None:
            changes = explain_change(step_b.components, step_a.components)
            changed = [c.component for c in changes if c.changed and c.component != "code_parts"]
            if step_a.code_digest != step_b.code_digest:
                code = _code_diff(project, a.run_id, step_a, b.run_id, step_b)
        pair = (step_a, step_b)
        inputs = MappingDiff.between(*[{} if s is None else s.inputs for s in pair])
        outputs = MappingDiff.between(*[{} if s is None else s.outputs for s in pair])
        if None not in pair and not changed and outputs.empty:
            continue
        name = next(s.step for s in pair if s is not None)
        status_a, status_b = (None if s is None else s.status for s in pair)
        found.append(
            StepDiff(
                node,
                name,
                status_a,
                status_b,
                changed,
                code,
                inputs,
                outputs,
                node_id_b=node_b if node_a is not None and node_b != node_a else None,
                paired_by=by,
            )
        )
    return found


def _code_diff(
    project: Project, run_a: str, step_a: StepFacts, run_b: str, step_b: StepFacts
) -> CodeDiff:
    parts = [
        line
        for c in explain_change(step_b.components, step_a.components)
        if c.component == "code_parts"
        for line in c.detail
    ]
    text_a, note_a = _source_text(project, run_a, step_a)
    text_b, note_b = _source_text(project, run_b, step_b)
    if text_a is None or text_b is None:
        note = "; ".join(n for n in (note_a, note_b) if n)
        return CodeDiff(step_a.code_digest, step_b.code_digest, parts, None, note)
    source_diff = "".join(
        difflib.unified_diff(
            _lines(text_a),
            _lines(text_b),
            fromfile=f"{step_a.node_id} (run {run_a})",
            tofile=f"{step_b.node_id} (run {run_b})",
        )
    )
    unchanged = "the step's own source is unchanged; code it calls changed (see parts)"
    return CodeDiff(
        step_a.code_digest,
        step_b.code_digest,
        parts,
        source_diff,
        None if source_diff else unchanged,
    )


def _lines(text: str) -> list[str]:
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines()]


def _source_text(project: Project, run_id: str, facts: StepFacts) -> tuple[str | None, str | None]:
    """Return a step run's source text, or None and why (module docstring: fallback)."""
    blob = facts.code_source
    if blob is None:
        blob = _recorded_code_blob(project, run_id, facts)
    if blob is None:
        return None, f"no source text of step {facts.node_id!r} is recorded for run {run_id}"
    try:
        return project.store.get_bytes(blob).decode("utf-8", "replace"), None
    except PipetrailError as exc:
        return None, f"source text of step {facts.node_id!r} in run {run_id} unreadable: {exc}"


def _recorded_code_blob(project: Project, run_id: str, facts: StepFacts) -> str | None:
    if facts.code_digest is None:
        return None
    by_run: dict[str, set[str]] = {}
    for first_run_id, blob in code_artifacts(project.reader(), facts.step, facts.code_digest):
        by_run.setdefault(first_run_id, set()).add(blob)
    # Run ids are time-ordered: the run itself first, then the newest before it.
    order = [run_id] if run_id in by_run else []
    order += sorted((r for r in by_run if r < run_id), reverse=True)
    order += sorted(r for r in by_run if r > run_id)
    for candidate in order:
        blobs = by_run[candidate]
        if len(blobs) == 1:  # several steps of this name in one run: ambiguous, skip
            return next(iter(blobs))
    return None


# -- environment ------------------------------------------------------------------------
def load_environment(project: Project, digest: str | None) -> dict[str, Any] | None:
    """Return the environment snapshot stored under ``digest``, or None if unreadable."""
    if digest is None:
        return None
    record = project.reader().artifact(digest)
    if record is None:
        return None
    try:
        value = project.registry.load(StoredArtifact.from_dict(record), project.store)
    except PipetrailError:
        return None
    return value if isinstance(value, dict) else None
