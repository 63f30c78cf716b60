"""Gathering one finished run's record into a :class:`RunSnapshot` that every export reads.

Owns the naming conventions shared by the OpenLineage, PROV and in-toto exports (see
``pipetrail.lineage.exports`` for the table) and the errors raised when a run cannot be
exported. Read-only: uses a :class:`~pipetrail.ledger.Reader` and never appends.
Imports execution, ledger, hashing and core; never cli.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from pipetrail.core.version import VERSION
from pipetrail.errors import DefinitionError
from pipetrail.execution.crash import effective_status
from pipetrail.ledger import Reader
from pipetrail.ledger.event_reads import first_code_artifact, started_step_events
from pipetrail.ledger.read_model import run_tags

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.execution.project import Project

__all__ = [
    "PRODUCER",
    "DatasetName",
    "ExportError",
    "GovernanceRecord",
    "RunNotFinishedError",
    "RunSnapshot",
    "collect_run",
]

# The URI naming pipetrail as the producer of exported metadata (OpenLineage ``producer``,
# PROV software agent, SLSA builder version): the package at the exact version.
PRODUCER = f"https://pypi.org/project/pipetrail/{VERSION}/"

Row = dict[str, Any]

# Step events name the digest of the step's stored source text (``code_source``). Runs
# recorded before that field existed fall back to the code artifact stored with the first
# step run that had the same code fingerprint (see _code_sources).


class ExportError(DefinitionError):
    """A run cannot be exported in the requested form (nothing was written)."""


class RunNotFinishedError(ExportError):
    """The run is still running: its record is not final, so it is not exported."""


@dataclass(frozen=True)
class DatasetName:
    """Where a digest lives as a named dataset.

    Attributes:
        namespace: ``file://<host>`` for sources, the project namespace for artifacts.
        name: the source's absolute path, or ``<pipeline>.<node_id>.<output>``.
        kind: ``source``, ``output`` (produced in this run) or ``artifact`` (neither).
    """

    namespace: str
    name: str
    kind: str


@dataclass(frozen=True)
class GovernanceRecord:
    """One verified, signed governance act that concerns a run, as the exports state it.

    Built by :func:`pipetrail.governance.trail.run_governance` (which checks each
    signature and rule first); the exports only render it.

    Attributes:
        seq: the event's sequence number.
        ts: when it was appended.
        kind: the event kind (``model.registered``, ``promotion.requested``,
            ``promotion.approved``, ``promotion.rejected``, ``alias.moved``,
            ``decision.recorded``).
        action: what it was: ``registration``, ``promotion request``, ``rollback
            request``, ``approval``, ``rejection``, ``promotion``, ``rollback`` or
            ``decision``.
        by: the identity that signed it.
        key_id: the key it was signed with.
        signature: the Ed25519 signature (base64), as stored.
        model: the model it concerns, if any.
        version: the model version, if any.
        alias: the alias a request or move concerns.
        request_id: the promotion request it opens, votes on or carries out.
        digest: the model version's artifact digest.
        previous: an alias move's version before it.
        text: the rationale, comment, rollback reason or decision text.
        risk: a request's risk (``low``, ``medium``, ``high``).
        risk_notes: a request's risk notes.
        decision_kind: a decision's kind (``scoping``, ``split``, ``sharing``, ``other``).
        about_run: the run a decision is about.
        checks: a request's frozen check results (name, passed, value, detail).
    """

    seq: int
    ts: str
    kind: str
    action: str
    by: str
    key_id: str
    signature: str
    model: str | None = None
    version: int | None = None
    alias: str | None = None
    request_id: str | None = None
    digest: str | None = None
    previous: int | None = None
    text: str | None = None
    risk: str | None = None
    risk_notes: str | None = None
    decision_kind: str | None = None
    about_run: str | None = None
    checks: tuple[dict[str, Any], ...] = ()


def _plain_relative(path: str) -> bool:
    """Whether ``path`` is relative with no empty or ``.`` part (pathlib would keep it as is)."""
    return (
        bool(path)
        and not path.startswith("/")
        and "." not in path.split("/")
        and ("//" not in path and not path.endswith("/"))
    )


@dataclass(frozen=True)
class RunSnapshot:
    """Everything recorded about one finished run, as plain rows.

    Attributes:
        run: the run row (``status`` crash-aware, ``record`` decoded).
        steps: its step runs in the order they started.
        sources: the sources it observed.
        artifacts: digest -> artifact row, for every digest the run refers to.
        code: step run id -> digest of its step's source text, when known.
        reused: step run id -> the original step run whose outputs a cache hit reused.
        namespace: the project namespace, ``pipetrail://<project>``.
        root: the project folder, to spell relative source paths absolutely.
        governance: the verified governance acts about the run and the model versions
            registered from it, oldest first (empty unless the caller supplied them).
        labels: digest -> classification label, for the labelled sources and outputs
            (docs/data-handling.md); a sensitive one is recorded under a keyed digest.
        declassified: digest -> ``{"from", "to", "by"}`` for outputs a privacy
            operation declassified.
        privacy: step run id -> the privacy operations it recorded (``pipetrail.privacy``;
            a cache hit's are those of the step run it reused), in order.
    """

    run: Row
    steps: list[Row]
    sources: list[Row]
    artifacts: dict[str, Row]
    code: dict[str, str]
    reused: dict[str, Row] = field(default_factory=dict)
    namespace: str = "pipetrail://default"
    root: Path | None = None
    governance: tuple[GovernanceRecord, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    declassified: dict[str, Row] = field(default_factory=dict)
    privacy: dict[str, list[Row]] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return str(self.run["run_id"])

    @property
    def pipeline(self) -> str:
        """The pipeline's name."""
        return str(self.run["pipeline"])

    @property
    def record(self) -> Row:
        """Extra run facts (pipeline file, argv, version, nodes)."""
        return dict(self.run.get("record") or {})

    @property
    def ended_at(self) -> str:
        """When the run ended (a finished run always has an end time)."""
        return str(self.run["ended_at"] or self.run["started_at"])

    def step_ended_at(self, step: Row) -> str:
        """When a step run ended; a step cut short by a crash ends with its run."""
        return str(step["ended_at"] or self.ended_at)

    def job_name(self, node_id: str | None = None) -> str:
        """``<pipeline>`` for the run, ``<pipeline>.<node_id>`` for a step run."""
        return self.pipeline if node_id is None else f"{self.pipeline}.{node_id}"

    def output_name(self, node_id: str, output: str) -> str:
        """The dataset name of a step output: ``<pipeline>.<node_id>.<output>``."""
        return f"{self.job_name(node_id)}.{output}"

    def source_path(self, path: str) -> str:
        """A source's absolute POSIX path (as recorded when the project root is unknown)."""
        if _plain_relative(path):  # the common case, without building paths
            return path if self.root is None else f"{self.root.as_posix().rstrip('/')}/{path}"
        pure = PurePosixPath(path)
        if pure.is_absolute() or self.root is None:
            return pure.as_posix()
        return (PurePosixPath(self.root.as_posix()) / pure).as_posix()

    def source_namespace(self) -> str:
        """``file://<host>``: source files live on the host that ran the run."""
        return f"file://{self.run['host']}"

    def produced(self) -> list[tuple[Row, str, str]]:
        """``(step run, output name, digest)`` for every output of a successful step run."""
        return [
            (step, name, digest)
            for step in self.steps
            if step["status"] in ("completed", "cached")
            for name, digest in (step["outputs"] or {}).items()
        ]

    def final_outputs(self) -> list[tuple[Row, str, str]]:
        """The produced outputs that no other step run of the run consumed."""
        consumed = {d for step in self.steps for d in (step["inputs"] or {}).values()}
        return [item for item in self.produced() if item[2] not in consumed]

    def dataset(self, digest: str, *, consumer: str | None = None) -> DatasetName:
        """Name the dataset holding ``digest``, as read by node ``consumer`` if given.

        An output of this run is named after the node that produced it, preferring the
        consumer's upstream nodes when equal content came out of several nodes; then a
        source with that digest; otherwise the artifact is named by its digest.
        """
        upstream = set()
        if consumer is not None:
            upstream = set((self.record.get("nodes") or {}).get(consumer, {}).get("upstream", []))
        candidates = [(s, n) for s, n, d in self.produced() if d == digest]
        candidates.sort(key=lambda item: item[0]["node_id"] not in upstream)
        if candidates:
            step, name = candidates[0]
            return DatasetName(self.namespace, self.output_name(step["node_id"], name), "output")
        for src in self.sources:
            if src["digest"] == digest:
                return DatasetName(self.source_namespace(), self.source_path(src["path"]), "source")
        return DatasetName(self.namespace, f"artifacts.{digest}", "artifact")


def collect_run(
    project_or_reader: Project | Reader,
    run_ref: str,
    *,
    namespace: str | None = None,
    root: Path | None = None,
) -> RunSnapshot:
    """Read one finished run (``run_ref``: id, unique prefix or ``latest``).

    Args:
        project_or_reader: a project (its reader and root are used) or a bare reader.
        run_ref: which run.
        namespace: the project namespace; default ``pipetrail://<project folder name>``
            (``pipetrail://default`` for a bare reader).
        root: the project folder for spelling source paths; default the project's.

    Raises:
        NotFoundError: no run matches ``run_ref``.
        RunNotFinishedError: the run is still running.
    """
    if isinstance(project_or_reader, Reader):
        reader = project_or_reader
    else:
        reader = project_or_reader.reader()
        root = root if root is not None else project_or_reader.root
    if namespace is None:
        namespace = f"pipetrail://{root.name if root is not None else 'default'}"
    run_id = reader.resolve_run(run_ref)
    run = reader.get_run(run_id)
    run["status"] = effective_status(run)
    run["tags"] = run_tags(reader, [run_id]).get(run_id, {})
    if run["status"] == "running":
        raise RunNotFinishedError(
            f"run {run_id} of pipeline {run['pipeline']!r} is still running (started "
            f"{run['started_at']}); export it once it has completed or failed"
        )
    steps = reader.step_runs(run_id)
    sources = reader.sources(run_id)
    code = _code_sources(reader, run_id, steps)
    reused = {
        s["step_run_id"]: reader.step_run(s["reused_step_run_id"])
        for s in steps
        if s["status"] == "cached" and s["reused_step_run_id"]
    }
    wanted = {run.get("environment"), (run.get("git") or {}).get("diff_digest")}
    wanted.update(src["digest"] for src in sources)
    wanted.update(code.values())
    for step in steps:
        wanted.update((step["inputs"] or {}).values())
        wanted.update((step["outputs"] or {}).values())
        wanted.add(step["logs"])
    labels, declassified = _labels(reader, run_id, steps, sources)
    artifacts = {}
    # One batched query finds the recorded ones (a run may read thousands of source files
    # that are not artifacts); only those are read and checked against the chain.
    known = reader.known_artifacts(sorted(d for d in wanted if isinstance(d, str)))
    for digest in sorted(known):
        row = reader.artifact(digest)
        if row is not None:
            artifacts[digest] = row
    return RunSnapshot(
        run=run,
        steps=steps,
        sources=sources,
        artifacts=artifacts,
        code=code,
        reused=reused,
        namespace=namespace,
        root=root,
        labels=labels,
        declassified=declassified,
        privacy=_privacy(reader, run_id, reused),
    )


def _privacy(reader: Reader, run_id: str, reused: dict[str, Row]) -> dict[str, list[Row]]:
    """Step run id -> its privacy operations (a cache hit: those of the run it reused)."""
    from pipetrail.ledger.event_reads import closing_step_events
    from pipetrail.lineage.exports.privacy_lineage import privacy_operations

    def recorded(run: str) -> dict[str, list[Row]]:
        return {
            event.step_run_id: ops
            for event in closing_step_events(reader, run)
            if (ops := privacy_operations(event.data_ops))
        }

    found = recorded(run_id)
    others: dict[str, dict[str, list[Row]]] = {}
    for step_run_id, original in reused.items():
        if step_run_id in found or original is None:
            continue
        origin = str(original["run_id"])
        if origin not in others:
            others[origin] = found if origin == run_id else recorded(origin)
        ops = others[origin].get(str(original["step_run_id"]))
        if ops:
            found[step_run_id] = ops
    return found


def _labels(
    reader: Reader, run_id: str, steps: list[Row], sources: list[Row]
) -> tuple[dict[str, str], dict[str, Row]]:
    """Digest -> label, and digest -> how it was declassified, for the run's artifacts."""
    from pipetrail.execution.run_privacy import recorded_labels

    by_step, by_source = recorded_labels(reader, run_id)
    labels: dict[str, str] = {}
    declassified: dict[str, Row] = {}
    for step in steps:
        found = by_step.get(step["step_run_id"])
        if found is None:
            continue
        for name, digest in (step["outputs"] or {}).items():
            if name in found["classification"]:
                labels[digest] = found["classification"][name]
            if name in found["declassified"]:
                declassified[digest] = found["declassified"][name]
    for src in sources:
        if src["path"] in by_source:
            labels[src["digest"]] = by_source[src["path"]]
    return labels, declassified


def _code_sources(reader: Reader, run_id: str, steps: list[Row]) -> dict[str, str]:
    """Step run id -> digest of its step's stored source text.

    Read from the step events' ``code_source``. For older runs: the newest code artifact
    of the step recorded at or before the first step run with the same code fingerprint,
    which is exact unless functions of several pipelines share a step name.
    """
    found: dict[str, str] = {}
    for event in started_step_events(reader, run_id):
        if event.code_source:
            found[event.step_run_id] = str(event.code_source)
    by_fingerprint: dict[tuple[str, str], str | None] = {}
    for step in steps:
        key = (step["step"], step["code_digest"])
        if step["step_run_id"] in found or not step["code_digest"]:
            continue
        if key not in by_fingerprint:
            by_fingerprint[key] = first_code_artifact(reader, *key)
        if by_fingerprint[key] is not None:
            found[step["step_run_id"]] = str(by_fingerprint[key])
    return found
