"""Lineage queries: upstream provenance, downstream impact and paths, in recursive SQL.

The lineage graph lives in the ``step_run_io`` projection: an artifact is an input of
the step runs that read it and an output of the step runs that wrote it. The walks are
recursive CTEs over that table, with one SQL text for SQLite and PostgreSQL, run by
:meth:`pipetrail.ledger.Reader.fetch` (docs/adr/0003-read-path.md):

* ``UNION`` (never ``UNION ALL``) keeps each (step run, depth) once, so a cycle (a step
  that returns its input unchanged has the same digest in and out) ends the walk;
* without a depth limit the depth column is a constant, so every step run is visited
  once; with a limit it counts hops and stops at the limit;
* nullable parameters are cast (``CAST(:max_depth AS INTEGER)``) so PostgreSQL can type
  them.

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
Imports the ledger's reader and the lineage model; never cli.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

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

_DEPTH = "CAST(:max_depth AS INTEGER)"


def _depth(next_depth: str) -> str:
    """The depth column of a hop: the hop count, or a constant when there is no limit.

    With a constant, UNION keeps one row per step run however many paths lead to it, so
    each step run is expanded once and a cycle ends the walk.
    """
    return f"CASE WHEN {_DEPTH} IS NULL THEN 0 ELSE {next_depth} END"


def _within(next_depth: str) -> str:
    return f"({_DEPTH} IS NULL OR {next_depth} <= {_DEPTH})"


# Seeds of a walk, by what the reference is. A reference artifact is taken by content:
# its producers (upstream: executed ones) or readers (downstream) in any run, one hop
# away. A reference step run or run is hop 0.
_SEED_STEP_RUNS = {
    "step_run": "SELECT s.step_run_id{depth} FROM step_runs s WHERE s.step_run_id = :{seed}",
    "run": "SELECT s.step_run_id{depth} FROM step_runs s WHERE s.run_id = :{seed}",
}
_SEED_ARTIFACT = {
    "upstream": (
        "SELECT p.step_run_id, 1 FROM step_run_io p "
        "JOIN step_runs s ON s.step_run_id = p.step_run_id "
        "WHERE p.digest = :{seed} AND p.direction = 'out' AND s.status = 'completed'"
    ),
    "downstream": (
        "SELECT c.step_run_id, 1 FROM step_run_io c WHERE c.digest = :{seed} AND c.direction = 'in'"
    ),
}


def _seeds(direction: str, kind: str, seed: str, *, depth: bool = True) -> str:
    """A SELECT of the step runs a walk starts from (with their depth when ``depth``)."""
    if kind == "artifact":
        return _SEED_ARTIFACT[direction].format(seed=seed)
    return _SEED_STEP_RUNS[kind].format(seed=seed, depth=", 0" if depth else "")


# One hop. A step run reads its inputs from step runs of its own run, so hops stay in
# the run (`run_id`): a digest that another run happens to produce too (0, None, [])
# links nothing. Upstream: from a step run's inputs to the step runs of its run that
# wrote them, or, for a cache hit, to the executed step run it reused. Downstream: from a
# step run's outputs to the step runs of its run that read them, and to the cache hits
# in later runs that reused it (they have the same output digests; same hop count).
# The first column is cast so PostgreSQL types it exactly as the seeds' column.
_HOPS = {
    "upstream": (
        "SELECT CAST(CASE WHEN s.reused_step_run_id IS NULL THEN s.step_run_id "  # noqa: S608
        "ELSE s.reused_step_run_id END AS VARCHAR(40)), "
        f"{_depth('w.depth + 1')} FROM {{name}} w "
        "JOIN step_run_io i ON i.step_run_id = w.step_run_id AND i.direction = 'in' "
        "JOIN step_run_io p ON p.digest = i.digest AND p.direction = 'out' "
        "AND p.run_id = i.run_id "
        "JOIN step_runs s ON s.step_run_id = p.step_run_id "
        f"WHERE {_within('w.depth + 1')}"
    ),
    "downstream": (
        f"SELECT x.step_run_id, {_depth('w.depth + ' + '{hop}')} FROM {{name}} w "  # noqa: S608
        "JOIN step_run_io o ON o.step_run_id = w.step_run_id AND o.direction = 'out' "
        "JOIN step_run_io x ON x.digest = o.digest "
        # Only another run's writer of the digest can be a cache hit of w: look up those.
        "LEFT JOIN step_runs xs ON xs.step_run_id = x.step_run_id AND x.direction = 'out' "
        "AND x.run_id <> o.run_id "
        "WHERE ((x.direction = 'in' AND x.run_id = o.run_id) "
        "OR xs.reused_step_run_id = w.step_run_id) "
        f"AND {_within('w.depth + ' + '{hop}')}"
    ).replace("{hop}", "CASE WHEN x.direction = 'out' THEN 0 ELSE 1 END"),
}


def _walk(name: str, direction: str, kind: str, seed: str) -> str:
    """The CTE ``name(step_run_id, depth)``: step runs reached from a seed."""
    return (
        f"{name}(step_run_id, depth) AS ({_seeds(direction, kind, seed)} "
        f"UNION {_HOPS[direction].format(name=name)})"
    )


def _nodes(walked: str) -> str:
    """The CTE ``nodes(step_run_id)``: the walked step runs and what their hits reused."""
    return (
        f"nodes(step_run_id) AS (SELECT step_run_id FROM {walked} "  # noqa: S608 - constants
        f"UNION SELECT s.reused_step_run_id FROM {walked} w "
        "JOIN step_runs s ON s.step_run_id = w.step_run_id "
        "WHERE s.reused_step_run_id IS NOT NULL)"
    )


# The walked step runs with their runs: one statement, so the walk runs once.
_SELECT_STEPS = (
    " SELECT s.step_run_id, s.run_id, s.node_id, s.step, s.pipeline, s.status, "
    "s.cache_decision, s.cache_reason, s.reused_step_run_id, s.code_digest, s.components, "
    "s.started_at, s.ended_at, r.pipeline AS run_pipeline, r.status AS run_status, "
    "r.owner AS run_owner, r.started_at AS run_started_at, r.ended_at AS run_ended_at "
    "FROM nodes n JOIN step_runs s ON s.step_run_id = n.step_run_id "
    "LEFT JOIN runs r ON r.run_id = s.run_id"
)
# Then, by key (primary-key and index look-ups, CHUNK keys per statement): their edges,
# the artifacts at the other ends (once each: a table's meta can be kilobytes), and the
# paths under which those were observed as sources.
_EDGES_OF = (
    "SELECT step_run_id, direction, name, digest FROM step_run_io WHERE step_run_id IN ({keys})"
)
_ARTIFACTS_OF = (
    "SELECT digest, type_name, serializer, size, role, meta FROM artifacts WHERE digest IN ({keys})"
)
_SOURCES_OF = "SELECT DISTINCT digest, path, size FROM sources WHERE digest IN ({keys})"
CHUNK = 900  # keys per statement: under SQLite's historical limit of 999 parameters


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
def _graph(reader: Reader, ref: str, direction: Direction, max_depth: int | None) -> LineageGraph:
    if max_depth is not None and max_depth < 0:
        raise ValueError(f"max_depth must be 0 or more, got {max_depth}")
    target = resolve_ref(reader, ref)
    cte = "WITH RECURSIVE " + _walk("walk", direction, target.kind, "seed") + ", "
    cte += _nodes("walk")
    params = {"seed": target.id, "max_depth": max_depth}
    if max_depth == 0 and target.kind == "artifact":  # the artifact alone
        cte = "WITH nodes(step_run_id) AS (SELECT step_run_id FROM step_runs WHERE 1 = 0)"
    return _assemble(reader, cte, params, direction, target, max_depth)


def _path(reader: Reader, start: Target, goal: Target) -> LineageGraph | None:
    """A path from ``start`` to ``goal`` inside downstream(start) ∩ upstream(goal)."""
    nodes = "SELECT step_run_id FROM both_ways"
    if start.kind != "artifact":
        # A cached step run is no executed producer, so it is not upstream of the goal;
        # as the start it is still where the path begins.
        nodes += " UNION " + _seeds("downstream", start.kind, "start", depth=False)
    cte = (
        f"WITH RECURSIVE {_walk('down', 'downstream', start.kind, 'start')}, "  # noqa: S608
        f"{_walk('up', 'upstream', goal.kind, 'goal')}, "
        "both_ways(step_run_id) AS (SELECT step_run_id FROM down "
        "INTERSECT SELECT step_run_id FROM up), "
        f"nodes(step_run_id) AS ({nodes})"
    )
    params = {"start": start.id, "goal": goal.id, "max_depth": None}
    whole = _assemble(reader, cte, params, "path", start, None)
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
    cte: str,
    params: dict[str, Any],
    direction: Direction,
    target: Target,
    max_depth: int | None,
) -> LineageGraph:
    step_rows = reader.fetch(cte + _SELECT_STEPS, params)
    runs = {row["run_id"]: _run_info(row) for row in step_rows if row["run_pipeline"]}
    steps = [
        StepRunNode.from_row({k: v for k, v in r.items() if k not in _RUN_FIELDS})
        for r in step_rows
    ]
    edges = [
        Edge(s.step_run_id, s.reused_step_run_id, "reuses", "")
        for s in steps
        if s.reused_step_run_id
    ]
    edge_rows = _by_keys(reader, _EDGES_OF, [s.step_run_id for s in steps])
    for row in edge_rows:
        if row["direction"] == "in":
            edges.append(Edge(row["digest"], row["step_run_id"], "input", row["name"]))
        else:
            edges.append(Edge(row["step_run_id"], row["digest"], "output", row["name"]))
    digests = {row["digest"] for row in edge_rows}
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
    for row in _by_keys(reader, _SOURCES_OF, digests):
        paths.setdefault(row["digest"], []).append(row["path"])
        sizes[row["digest"]] = int(row["size"])
    found = {row["digest"]: row for row in _by_keys(reader, _ARTIFACTS_OF, digests)}
    return [
        ArtifactNode.from_row(found.get(d) or {"digest": d}, paths.get(d, []), sizes.get(d))
        for d in digests
        if d in found or d in paths
    ]


_RUN_FIELDS = ("run_pipeline", "run_status", "run_owner", "run_started_at", "run_ended_at")


def _run_info(row: dict[str, Any]) -> RunInfo:
    return RunInfo(row["run_id"], *(row[name] for name in _RUN_FIELDS))


def _by_keys(reader: Reader, sql: str, keys: list[str]) -> list[dict[str, Any]]:
    """Run ``sql`` (with ``IN ({keys})``) over ``keys`` in chunks of :data:`CHUNK`."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        names = {f"k{i}": key for i, key in enumerate(chunk)}
        rows.extend(reader.fetch(sql.format(keys=", ".join(f":{n}" for n in names)), names))
    return rows
