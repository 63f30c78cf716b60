"""Walks over a lineage graph: hop depths from the reference, and shortest paths.

Depth counts step runs between a node and the reference (see
:mod:`pipetrail.lineage.graph`): entering a step run from an artifact costs one hop,
everything else (including a ``reuses`` hop) costs nothing, so depths come from a 0-1
breadth-first search. Pure; imports only the graph model, for types.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.lineage.graph import Direction, Edge, LineageGraph

__all__ = ["hop_depths", "shortest_path"]


def hop_depths(
    roots: tuple[str, ...], edges: list[Edge], artifact_ids: Iterable[str], direction: Direction
) -> dict[str, int]:
    """Hop depths from the roots (0-1 BFS: entering a step run from an artifact costs 1)."""
    artifacts = set(artifact_ids)
    forward = direction != "upstream"
    adjacent: dict[str, list[str]] = {}
    for e in edges:
        if e.kind == "reuses":  # either way, at no cost: same step, same digests
            adjacent.setdefault(e.source, []).append(e.target)
            adjacent.setdefault(e.target, []).append(e.source)
        elif forward:
            adjacent.setdefault(e.source, []).append(e.target)
        else:
            adjacent.setdefault(e.target, []).append(e.source)
    depths = {r: 0 for r in roots}
    queue = deque(roots)
    while queue:
        node = queue.popleft()
        for nxt in adjacent.get(node, ()):
            cost = 1 if node in artifacts and nxt not in artifacts else 0
            depth = depths[node] + cost
            if depth < depths.get(nxt, depth + 1):
                depths[nxt] = depth
                if cost:
                    queue.append(nxt)
                else:
                    queue.appendleft(nxt)
    return depths


def shortest_path(graph: LineageGraph, starts: Iterable[str], goals: Iterable[str]) -> list[str]:
    """Return the node ids of a shortest directed path from any start to any goal.

    Follows ``input`` and ``output`` edges in their direction. Among equally short paths
    the one through executed step runs, then the smallest ids, wins, so the answer is
    deterministic. Returns an empty list when no path exists.
    """
    goal_set = set(goals)
    status = {s.step_run_id: s.status for s in graph.step_runs}

    def rank(node_id: str) -> tuple[bool, str]:
        return (status.get(node_id, "completed") != "completed", node_id)

    previous: dict[str, str | None] = {}
    queue: deque[str] = deque()
    for start in sorted(set(starts), key=rank):
        previous[start] = None
        queue.append(start)
    while queue:
        node = queue.popleft()
        if node in goal_set:
            found = [node]
            while (back := previous[found[-1]]) is not None:
                found.append(back)
            return found[::-1]
        nexts = [e.target for e in graph.edges_from(node) if e.kind != "reuses"]
        for nxt in sorted(set(nexts), key=rank):
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return []
