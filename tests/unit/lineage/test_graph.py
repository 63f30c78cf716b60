"""The lineage graph model: ordering, depths, navigation, JSON shape, shortest paths."""

from __future__ import annotations

from typing import Any

from pipetrail.lineage.graph import (
    ArtifactNode,
    Edge,
    LineageGraph,
    RunInfo,
    StepRunNode,
    Target,
    meta_summary,
    shortest_path,
)

SRC, MID, OUT = ("blake3:" + c * 64 for c in "abc")


def artifact(value: str, kind: str = "artifact", **extra: Any) -> ArtifactNode:
    fields: dict[str, Any] = {
        "digest": value, "kind": kind, "type_name": "builtins.int", "serializer": "json",
        "size": 1, "role": "source" if kind == "source" else "output", "meta": {},
        "paths": ("data/x.csv",) if kind == "source" else (),
    }  # fmt: skip
    return ArtifactNode(**(fields | extra))


def step(step_run_id: str, run_id: str = "R1", **extra: Any) -> StepRunNode:
    fields: dict[str, Any] = {
        "step_run_id": step_run_id, "run_id": run_id, "node_id": "n", "step": "n",
        "pipeline": "p", "status": "completed", "cache_decision": "miss", "cache_reason": None,
        "reused_step_run_id": None, "code_digest": "blake3:" + "c" * 64, "params": {},
        "started_at": "2026-01-01T00:00:00.000000Z", "ended_at": None,
    }  # fmt: skip
    return StepRunNode(**(fields | extra))


def chain(direction: str = "upstream", roots: tuple[str, ...] = (OUT,)) -> LineageGraph:
    """SRC -> S1 -> MID -> S2 -> OUT, plus S2b: a cache hit of S2 in run R2."""
    return LineageGraph.build(
        direction=direction,  # type: ignore[arg-type]
        target=Target("artifact", roots[0]),
        roots=roots,
        artifacts=[artifact(OUT), artifact(SRC, "source"), artifact(MID)],
        step_runs=[
            step("S2"),
            step("S1"),
            step("S2b", "R2", status="cached", reused_step_run_id="S2"),
        ],
        edges=[
            Edge(MID, "S2", "input", "x"),
            Edge("S2", OUT, "output", "output"),
            Edge(SRC, "S1", "input", "raw"),
            Edge("S1", MID, "output", "output"),
            Edge("S2b", "S2", "reuses", ""),
            Edge("S1", MID, "output", "output"),  # duplicate
            Edge("S9", MID, "output", "output"),  # dangling: S9 is not in the graph
        ],
        runs=[
            RunInfo("R2", "p", "completed", "me", "t", None),
            RunInfo("R1", "p", "completed", "me", "t", None),
            RunInfo("R3", "p", "completed", "me", "t", None),
        ],
    )


def test_build_sorts_drops_duplicates_and_dangling_edges() -> None:
    graph = chain()
    assert [a.digest for a in graph.artifacts] == [OUT, MID, SRC]  # by depth
    assert [s.step_run_id for s in graph.step_runs] == ["S2", "S2b", "S1"]
    assert len(graph.edges) == 5
    assert list(graph.edges) == sorted(
        graph.edges, key=lambda e: (e.source, e.target, e.kind, e.name)
    )
    assert [r.run_id for r in graph.runs] == ["R1", "R2"]  # R3 owns no step run


def test_upstream_depths_count_step_runs_and_reuse_is_free() -> None:
    graph = chain()
    assert {n: graph.depth(n) for n in graph.node_ids} == {
        OUT: 0, "S2": 1, MID: 1, "S2b": 1, "S1": 2, SRC: 2,
    }  # fmt: skip


def test_downstream_depths_and_unreachable_nodes() -> None:
    graph = chain("downstream", roots=(SRC,))
    assert graph.depth("S1") == 1
    assert graph.depth(OUT) == 2
    assert graph.depth("S2b") == 2
    lonely = chain("downstream", roots=("S2b",))
    assert lonely.depth("S2") == 0
    assert lonely.depth(SRC) == max(lonely.depths.values())  # not reachable: listed last


def test_navigation_and_json_shape() -> None:
    graph = chain()
    assert graph.artifact(SRC) is not None
    assert graph.artifact("blake3:" + "f" * 64) is None
    assert graph.step_run("S1") is not None
    assert [e.source for e in graph.edges_to(OUT)] == ["S2"]
    assert [e.target for e in graph.edges_from("S2b")] == ["S2"]
    data = graph.to_dict()
    assert data["counts"] == {"artifacts": 3, "step_runs": 3, "runs": 2}
    assert data["target"] == {"kind": "artifact", "id": OUT}
    assert data["nodes"][0] == artifact(OUT).to_dict() | {"depth": 0}
    assert {n["kind"] for n in data["nodes"]} == {"artifact", "source", "step_run"}
    assert data["edges"][0] == graph.edges[0].to_dict()


def test_meta_summary_keeps_scalar_facts() -> None:
    meta = {
        "rows": 569, "schema_fingerprint": "blake3:00", "shape": [3, 4], "library": "pandas",
        "schema": [{"name": "a", "type": "int64"}], "nulls": {"a": 0}, "long": list(range(9)),
        "none": None,
    }  # fmt: skip
    assert meta_summary(meta) == {
        "library": "pandas", "none": None, "rows": 569, "schema_fingerprint": "blake3:00",
        "shape": [3, 4],
    }  # fmt: skip


def test_shortest_path_prefers_executed_step_runs() -> None:
    graph = LineageGraph.build(
        direction="path",
        target=Target("artifact", SRC),
        roots=[SRC],
        artifacts=[artifact(SRC, "source"), artifact(OUT)],
        step_runs=[step("A", status="cached"), step("B")],
        edges=[
            Edge(SRC, "A", "input", "raw"),
            Edge("A", OUT, "output", "output"),
            Edge(SRC, "B", "input", "raw"),
            Edge("B", OUT, "output", "output"),
        ],
        runs=[],
    )
    assert shortest_path(graph, [SRC], [OUT]) == [SRC, "B", OUT]
    assert shortest_path(graph, [OUT], [SRC]) == []
    assert shortest_path(graph, [SRC], [SRC]) == [SRC]
