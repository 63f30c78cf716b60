"""Lineage queries: upstream provenance, downstream impact and paths.

The walks themselves (recursive SQL over the ``step_run_io`` projection, one text for
SQLite and PostgreSQL) are in :mod:`pipetrail.ledger.lineage_reads`, which returns the
reached step runs, their edges and artifacts as typed rows; this module builds the
:class:`~pipetrail.lineage.graph.LineageGraph` from them.

Hops between step runs stay inside a run (a step run reads its inputs from its own run),
so two runs that happen to produce the same digest (``0``, ``None``, ``[]``) are not
linked. Only a reference artifact is taken by content, in every run.

Cached step runs: a cache hit records the same input and output digests as the executed
step run it reused (``reused_step_run_id``). Upstream, provenance goes to the step run
that executed: an artifact's producers are executed step runs, and a hop that meets a
cache hit continues at the step run it reused. A cache hit appears upstream only when
the reference is it or its run, with a ``reuses`` edge to the executed step run. Downstream
follows cache hits too: a run that reused a result depends on it like the run that made
it, so the readers of an artifact include cache hits, and an executed step run leads to
the cache hits that reused it.

References (digests, ids, prefixes) are resolved by :mod:`pipetrail.lineage.refs`.
Imports the ledger's lineage reads and the lineage model; never cli.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from pipetrail.ledger.lineage_reads import (
    LineageStepRow,
    WalkDirection,
    artifact_rows,
    io_rows,
    path_step_runs,
    source_rows,
    walk_step_runs,
)
from pipetrail.lineage.graph import (
    ArtifactNode,
    Direction,
    Edge,
    LineageGraph,
    RunInfo,
    StepRunNode,
    Target,
    shortest_path,
)
from pipetrail.lineage.refs import resolve_ref as resolve_ref

if TYPE_CHECKING:
    from pipetrail.ledger import Reader

__all__ = ["downstream", "path", "resolve_ref", "upstream"]  # resolve_ref: from .refs


def upstream(reader: Reader, ref: str, *, max_depth: int | None = None) -> LineageGraph:
    """Return the provenance of ``ref``: every step run and artifact it derives from.

    For an artifact: the executed step runs that produced it, their inputs, and so on
    down to the source files. For a step run: its inputs' provenance (for a cache hit,
    also the executed step run it reused). For a run: that of all its step runs.

    Args:
        reader: a reader over the project's metadata store.
        ref: a digest, run or step run reference (see :func:`resolve_ref`).
        max_depth: follow at most this many step runs back; None for no limit.

    Raises:
        NotFoundError: ``ref`` matches nothing (AmbiguousPrefixError: several things).
    """
    return _graph(reader, ref, "upstream", max_depth)


def downstream(reader: Reader, ref: str, *, max_depth: int | None = None) -> LineageGraph:
    """Return the impact of ``ref``: every step run, artifact and run derived from it.

    For an artifact (a source file's digest, say): every step run that read it, cached or
    executed, everything they wrote, and so on. For a step run or a run: everything
    derived from their outputs.

    Args:
        reader: a reader over the project's metadata store.
        ref: a digest, run or step run reference (see :func:`resolve_ref`).
        max_depth: follow at most this many step runs forward; None for no limit.

    Raises:
        NotFoundError: ``ref`` matches nothing (AmbiguousPrefixError: several things).
    """
    return _graph(reader, ref, "downstream", max_depth)


def path(reader: Reader, a: str, b: str) -> LineageGraph | None:
    """Return a shortest directed path from ``a`` to ``b``, or from ``b`` to ``a``.

    The path alternates artifacts and step runs and goes through executed step runs
    where it can. A run as an end point stands for any of its step runs.

    Returns:
        The path as a graph (``roots`` is its first node), or None when neither is
        derived from the other.

    Raises:
        NotFoundError: ``a`` or ``b`` matches nothing (or several things).
    """
    first, second = resolve_ref(reader, a), resolve_ref(reader, b)
    for start, goal in ((first, second), (second, first)):
        found = _path(reader, start, goal)
        if found is not None:
            return found
    return None


# -- implementation -----------------------------------------------------------------
def _graph(
    reader: Reader, ref: str, direction: WalkDirection, max_depth: int | None
) -> LineageGraph:
    if max_depth is not None and max_depth < 0:
        raise ValueError(f"max_depth must be 0 or more, got {max_depth}")
    target = resolve_ref(reader, ref)
    rows = walk_step_runs(reader, direction, target.kind, target.id, max_depth)
    return _assemble(reader, rows, direction, target, max_depth)


def _path(reader: Reader, start: Target, goal: Target) -> LineageGraph | None:
    """A path from ``start`` to ``goal`` inside downstream(start) ∩ upstream(goal)."""
    rows = path_step_runs(reader, (start.kind, start.id), (goal.kind, goal.id))
    whole = _assemble(reader, rows, "path", start, None)
    found = shortest_path(whole, _ends(whole, start), _ends(whole, goal))
    if not found:
        return None
    keep = set(found)
    pairs = set(itertools.pairwise(found))
    return LineageGraph.build(
        direction="path",
        target=start,
        roots=[found[0]],
        artifacts=[a for a in whole.artifacts if a.digest in keep],
        step_runs=[s for s in whole.step_runs if s.step_run_id in keep],
        edges=[e for e in whole.edges if (e.source, e.target) in pairs],
        runs=whole.runs,
    )


def _ends(graph: LineageGraph, target: Target) -> list[str]:
    """Where a path may start or end: the node, or any step run of a run."""
    if target.kind != "run":
        return [target.id]
    return [s.step_run_id for s in graph.step_runs if s.run_id == target.id]


def _assemble(
    reader: Reader,
    step_rows: list[LineageStepRow],
    direction: Direction,
    target: Target,
    max_depth: int | None,
) -> LineageGraph:
    runs = {row.run_id: _run_info(row) for row in step_rows if row.run_pipeline}
    steps = [StepRunNode.from_record(r) for r in step_rows]
    edges = [
        Edge(s.step_run_id, s.reused_step_run_id, "reuses", "")
        for s in steps
        if s.reused_step_run_id
    ]
    edge_rows = io_rows(reader, [s.step_run_id for s in steps])
    for row in edge_rows:
        if row.direction == "in":
            edges.append(Edge(row.digest, row.step_run_id, "input", row.name))
        else:
            edges.append(Edge(row.step_run_id, row.digest, "output", row.name))
    digests = {row.digest for row in edge_rows}
    roots = [s.step_run_id for s in steps if target.id in (s.run_id, s.step_run_id)]
    if target.kind == "artifact":
        digests.add(target.id)
        roots = [target.id]
    return LineageGraph.build(
        direction=direction,
        target=target,
        roots=roots,
        artifacts=_artifacts(reader, sorted(digests)),
        step_runs=steps,
        edges=edges,
        runs=runs.values(),
        max_depth=max_depth,
    )


def _artifacts(reader: Reader, digests: list[str]) -> list[ArtifactNode]:
    """Artifact nodes for digests: recorded artifacts, source files read by reference."""
    paths: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for row in source_rows(reader, digests):
        paths.setdefault(row.digest, []).append(row.path)
        sizes[row.digest] = row.size
    found = {row.digest: row for row in artifact_rows(reader, digests)}
    return [
        ArtifactNode.from_record(d, found.get(d), paths.get(d, []), sizes.get(d))
        for d in digests
        if d in found or d in paths
    ]


def _run_info(row: LineageStepRow) -> RunInfo:
    return RunInfo(
        row.run_id,
        str(row.run_pipeline),
        str(row.run_status),
        str(row.run_owner),
        str(row.run_started_at),
        row.run_ended_at,
    )
