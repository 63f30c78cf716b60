"""The lineage graph model: artifacts, step runs and the edges between them.

Owns the immutable result of a lineage query (:class:`LineageGraph`) and its
deterministic ordering; hop depths and the shortest-path search are in
:mod:`pipetrail.lineage.graph_walks`. Pure: no SQL, no rendering; the typed rows come
from :mod:`pipetrail.ledger.lineage_reads` by way of :mod:`pipetrail.lineage.queries`.

Edges follow the data: ``input`` goes from an artifact to the step run that read it,
``output`` from a step run to the artifact it wrote, ``reuses`` from a cached step run to
the executed step run whose outputs it reused (same input and output digests).

Depth counts step runs between a node and the reference: the producers (upstream) or
consumers (downstream) of a reference artifact are at depth 1, and so are the artifacts
they read (upstream) or wrote (downstream). A reference step run or run is at depth 0;
a ``reuses`` hop does not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from pipetrail.lineage.graph_walks import hop_depths
from pipetrail.lineage.graph_walks import shortest_path as shortest_path

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.ledger.lineage_reads import ArtifactRow, LineageStepRow

__all__ = [
    "ArtifactNode",
    "Direction",
    "Edge",
    "LineageGraph",
    "RunInfo",
    "StepRunNode",
    "Target",
    "meta_summary",
    "shortest_path",
]

Direction = Literal["upstream", "downstream", "path"]
TargetKind = Literal["artifact", "run", "step_run"]
EdgeKind = Literal["input", "output", "reuses"]

_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Target:
    """What a user's reference resolved to.

    Attributes:
        kind: ``artifact`` (a digest), ``run`` or ``step_run``.
        id: the full digest or id.
    """

    kind: TargetKind
    id: str


@dataclass(frozen=True)
class ArtifactNode:
    """An artifact in a lineage graph.

    Attributes:
        digest: the artifact digest (its node id).
        kind: ``source`` when it was observed as a source file, else ``artifact``.
        type_name: the recorded type, or None for a source read by reference (not stored).
        serializer: the serializer that stored it, or None when not stored.
        size: stored size in bytes, or the source file's size.
        role: ``output``, ``source``... as recorded, or None when not stored.
        meta: a summary of the recorded meta: scalar facts such as ``rows``,
            ``columns`` and ``schema_fingerprint`` (long lists and nested values dropped).
        paths: the paths it was observed under as a source, sorted.
    """

    digest: str
    kind: Literal["artifact", "source"]
    type_name: str | None
    serializer: str | None
    size: int | None
    role: str | None
    meta: dict[str, Any]
    paths: tuple[str, ...]

    @property
    def id(self) -> str:
        """The node id: the digest."""
        return self.digest

    @classmethod
    def from_record(
        cls, digest: str, record: ArtifactRow | None, paths: list[str], source_size: int | None
    ) -> ArtifactNode:
        """Build from the ledger's artifact row and the paths and size it was observed under.

        A source file read by reference has no artifact row: pass None.
        """
        return cls(
            digest=digest,
            kind="source" if paths else "artifact",
            type_name=record.type_name if record else None,
            serializer=record.serializer if record else None,
            size=record.size if record else source_size,
            role=record.role if record else None,
            meta=meta_summary(record.meta) if record and record.meta else {},
            paths=tuple(sorted(set(paths))),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the node as JSON-able data: its id, kind and fields."""
        return {"id": self.digest, **_fields(self), "paths": list(self.paths)}


@dataclass(frozen=True)
class StepRunNode:
    """A step run in a lineage graph.

    Attributes:
        step_run_id: its id (the node id).
        run_id: the run it belongs to.
        node_id: the node inside the pipeline (``train``, ``train[1]``).
        step: the step's name.
        pipeline: the pipeline's name.
        status: ``completed`` (executed), ``cached``, ``failed`` or ``running``.
        cache_decision: ``hit``, ``miss``, ``disabled`` or ``forced-miss``.
        cache_reason: why.
        reused_step_run_id: for a cache hit, the executed step run it reused.
        code_digest: the code fingerprint.
        params: the literal arguments as recorded in the cache key (type-tagged values,
            e.g. ``{"$f": 1.0}`` for a float).
        started_at: start time (UTC, ISO 8601).
        ended_at: end time, or None.
    """

    step_run_id: str
    run_id: str
    node_id: str
    step: str
    pipeline: str
    status: str
    cache_decision: str | None
    cache_reason: str | None
    reused_step_run_id: str | None
    code_digest: str | None
    params: dict[str, Any]
    started_at: str
    ended_at: str | None

    @property
    def id(self) -> str:
        """The node id: the step run id."""
        return self.step_run_id

    @classmethod
    def from_record(cls, row: LineageStepRow) -> StepRunNode:
        """Build from a step run the ledger's lineage walk reached."""
        return cls(
            step_run_id=row.step_run_id,
            run_id=row.run_id,
            node_id=row.node_id,
            step=row.step,
            pipeline=row.pipeline,
            status=row.status,
            cache_decision=row.cache_decision,
            cache_reason=row.cache_reason,
            reused_step_run_id=row.reused_step_run_id,
            code_digest=row.code_digest,
            params=dict(row.components.get("params") or {}),
            started_at=row.started_at,
            ended_at=row.ended_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the node as JSON-able data: its id, kind and fields."""
        return {"id": self.step_run_id, "kind": "step_run", **_fields(self)}


@dataclass(frozen=True, slots=True)
class Edge:
    """A directed edge of the lineage graph.

    ``input``: artifact -> step run that read it; ``output``: step run -> artifact it
    wrote; ``reuses``: cached step run -> executed step run whose outputs it reused.

    Attributes:
        source: node id the edge starts at.
        target: node id it ends at.
        kind: ``input``, ``output`` or ``reuses``.
        name: the input or output name (``df``, ``xs[0]``); empty for ``reuses``.
    """

    source: str
    target: str
    kind: EdgeKind
    name: str

    def to_dict(self) -> dict[str, Any]:
        """Return the edge as JSON-able data."""
        return _fields(self)


@dataclass(frozen=True)
class RunInfo:
    """A run that owns at least one step run of the graph."""

    run_id: str
    pipeline: str
    status: str
    owner: str
    started_at: str
    ended_at: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the run as JSON-able data."""
        return _fields(self)


@dataclass(frozen=True)
class LineageGraph:
    """The answer to a lineage query; every sequence is in a deterministic order.

    Attributes:
        direction: ``upstream``, ``downstream`` or ``path``.
        target: what the reference resolved to.
        roots: the reference's node ids (a run's are its step runs); for a path, its start.
        artifacts: artifact nodes, by (depth, digest).
        step_runs: step run nodes, by (depth, step run id); ids are time-ordered.
        edges: sorted by (source, target, kind, name).
        runs: the runs owning the step runs, by run id.
        depths: node id -> step runs between it and the reference (see the module doc).
        max_depth: the depth limit the query used, or None.
    """

    direction: Direction
    target: Target
    roots: tuple[str, ...]
    artifacts: tuple[ArtifactNode, ...]
    step_runs: tuple[StepRunNode, ...]
    edges: tuple[Edge, ...]
    runs: tuple[RunInfo, ...]
    depths: dict[str, int]
    max_depth: int | None = None
    _out: dict[str, tuple[Edge, ...]] = field(init=False, repr=False, compare=False)
    _in: dict[str, tuple[Edge, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        out: dict[str, list[Edge]] = {}
        into: dict[str, list[Edge]] = {}
        for edge in self.edges:
            out.setdefault(edge.source, []).append(edge)
            into.setdefault(edge.target, []).append(edge)
        object.__setattr__(self, "_out", {k: tuple(v) for k, v in out.items()})
        object.__setattr__(self, "_in", {k: tuple(v) for k, v in into.items()})

    @classmethod
    def build(
        cls,
        *,
        direction: Direction,
        target: Target,
        roots: Iterable[str],
        artifacts: Iterable[ArtifactNode],
        step_runs: Iterable[StepRunNode],
        edges: Iterable[Edge],
        runs: Iterable[RunInfo],
        max_depth: int | None = None,
    ) -> LineageGraph:
        """Assemble a graph: drop dangling edges, recompute depths, sort everything."""
        arts = {a.digest: a for a in artifacts}
        steps = {s.step_run_id: s for s in step_runs}
        known = arts.keys() | steps.keys()
        unique = {
            (e.source, e.target, e.kind, e.name): e
            for e in edges
            if e.source in known and e.target in known
        }
        kept = [unique[key] for key in sorted(unique)]
        root_ids = tuple(sorted(r for r in set(roots) if r in known))
        depths = hop_depths(root_ids, kept, arts.keys(), direction)
        far = max(depths.values(), default=0) + 1  # unreachable from the roots: listed last
        for node_id in known - depths.keys():
            depths[node_id] = far
        used_runs = {s.run_id for s in steps.values()}
        return cls(
            direction=direction,
            target=target,
            roots=root_ids,
            artifacts=tuple(sorted(arts.values(), key=lambda a: (depths[a.digest], a.digest))),
            step_runs=tuple(
                sorted(steps.values(), key=lambda s: (depths[s.step_run_id], s.step_run_id))
            ),
            edges=tuple(kept),
            runs=tuple(sorted((r for r in runs if r.run_id in used_runs), key=lambda r: r.run_id)),
            depths=depths,
            max_depth=max_depth,
        )

    # -- navigation ------------------------------------------------------------------
    def artifact(self, digest: str) -> ArtifactNode | None:
        """Return the artifact node with this digest, if present."""
        return next((a for a in self.artifacts if a.digest == digest), None)

    def step_run(self, step_run_id: str) -> StepRunNode | None:
        """Return the step run node with this id, if present."""
        return next((s for s in self.step_runs if s.step_run_id == step_run_id), None)

    def edges_from(self, node_id: str) -> tuple[Edge, ...]:
        """Edges leaving a node, sorted."""
        return self._out.get(node_id, ())

    def edges_to(self, node_id: str) -> tuple[Edge, ...]:
        """Edges entering a node, sorted."""
        return self._in.get(node_id, ())

    @property
    def node_ids(self) -> list[str]:
        """Every node id: artifacts, then step runs."""
        return [a.digest for a in self.artifacts] + [s.step_run_id for s in self.step_runs]

    def depth(self, node_id: str) -> int:
        """Step runs between a node and the reference (see the module docstring)."""
        return self.depths[node_id]

    def to_dict(self) -> dict[str, Any]:
        """Return the whole graph as JSON-able data (what ``--format json`` prints)."""
        nodes = [a.to_dict() for a in self.artifacts] + [s.to_dict() for s in self.step_runs]
        for node in nodes:
            node["depth"] = self.depths[node["id"]]
        nodes.sort(key=lambda n: (n["depth"], n["kind"], n["id"]))
        return {
            "direction": self.direction,
            "target": {"kind": self.target.kind, "id": self.target.id},
            "max_depth": self.max_depth,
            "roots": list(self.roots),
            "nodes": nodes,
            "edges": [e.to_dict() for e in self.edges],
            "runs": [r.to_dict() for r in self.runs],
            "counts": {
                "artifacts": len(self.artifacts),
                "step_runs": len(self.step_runs),
                "runs": len(self.runs),
            },
        }


def _fields(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


def meta_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """Keep the scalar facts of an artifact's meta (rows, schema fingerprint, dtype...).

    Nested values (a table's full schema, per-column null counts) and lists of more than
    eight items are dropped: a graph of thousands of artifacts stays small.
    """
    out: dict[str, Any] = {}
    for key in sorted(meta):
        value = meta[key]
        if (
            value is None
            or isinstance(value, _SCALARS)
            or (
                isinstance(value, list)
                and len(value) <= 8
                and all(isinstance(v, _SCALARS) for v in value)
            )
        ):
            out[key] = value
    return out
