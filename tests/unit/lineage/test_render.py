"""Rendering lineage graphs: tree lines, JSON, DOT and Mermaid."""

from __future__ import annotations

import json

from pipetrail.lineage.graph import Edge, LineageGraph, Target
from pipetrail.lineage.render import (
    mermaid_id,
    params_text,
    plain_value,
    to_dot,
    to_json,
    to_mermaid,
    to_text,
    tree_lines,
)
from tests.unit.lineage.test_graph import MID, OUT, SRC, artifact, chain, step


def test_upstream_tree() -> None:
    text = to_text(chain())
    lines = text.splitlines()
    assert lines[0].startswith(f"upstream of artifact {OUT}: 3 artifacts, 3 step runs, 2 runs")
    assert lines[1].startswith("cccccccccccc  builtins.int")
    assert lines[2].startswith("└── n  completed  run R1")
    assert lines[3].startswith("    └── x: bbbbbbbbbbbb")
    assert "source data/x.csv" in text
    assert "raw: aaaaaaaaaaaa" in text
    assert text == "".join(t for line in tree_lines(chain()) for t, _ in [*line, ("\n", "")])


def test_downstream_tree_repeats_nodes_once_and_shows_reuse() -> None:
    graph = chain("downstream", roots=(SRC,))
    text = to_text(graph)
    assert "reused by n  cached  run R2" in text
    assert "reuses S2" in text
    lines = tree_lines(graph)
    styles = {style for line in lines for _, style in line}
    assert {"bold", "dim", "green", "cyan"} <= styles


def test_shared_ancestry_is_drawn_once() -> None:
    a, b = "blake3:" + "1" * 64, "blake3:" + "2" * 64
    diamond = LineageGraph.build(
        direction="upstream",
        target=Target("artifact", OUT),
        roots=[OUT],
        artifacts=[artifact(d) for d in (OUT, MID, a, b)] + [artifact(SRC, "source")],
        step_runs=[step("S1", node_id="prep"), step("S2"), step("S3"), step("S4")],
        edges=[
            Edge(SRC, "S1", "input", "raw"),
            Edge("S1", MID, "output", "output"),
            Edge(MID, "S2", "input", "x"),
            Edge(MID, "S3", "input", "x"),
            Edge("S2", a, "output", "output"),
            Edge("S3", b, "output", "output"),
            Edge(a, "S4", "input", "left"),
            Edge(b, "S4", "input", "right"),
            Edge("S4", OUT, "output", "output"),
        ],
        runs=[],
    )
    text = to_text(diamond)
    assert text.count("prep (n)  completed") == 1
    assert text.count("(see above)") == 1
    assert "right: 222222222222" in text


def test_depth_limit_is_marked() -> None:
    limited = LineageGraph.build(
        direction="upstream",
        target=Target("artifact", OUT),
        roots=[OUT],
        artifacts=[artifact(OUT), artifact(MID)],
        step_runs=[step("S2", node_id="fit", step="train")],
        edges=[e for e in chain().edges if "S2" in (e.source, e.target) and e.kind != "reuses"],
        runs=[],
        max_depth=1,
    )
    text = to_text(limited)
    assert "fit (train)" in text
    assert "x: bbbbbbbbbbbb  builtins.int  json  1 B (depth limit: not followed)" in text


def test_json_dot_and_mermaid_name_every_node() -> None:
    graph = chain()
    assert json.loads(to_json(graph)) == json.loads(json.dumps(graph.to_dict()))
    dot, mermaid = to_dot(graph), to_mermaid(graph)
    for node_id in graph.node_ids:
        assert f'"{node_id}"' in dot
        assert mermaid_id(node_id) in mermaid
    assert '"S2b" -> "S2" [label="reuses", style=dashed];' in dot
    assert 's_S2b -.->|"reuses"| s_S2' in mermaid
    assert mermaid_id(SRC) == "a_" + "a" * 64


def test_labels_are_escaped() -> None:
    odd = artifact(SRC, "source", paths=('data/"quoted" <x>.csv',))
    graph = LineageGraph.build(
        direction="upstream",
        target=Target("artifact", SRC),
        roots=[SRC],
        artifacts=[odd],
        step_runs=[],
        edges=[],
        runs=[],
    )
    assert r"data/\"quoted\" <x>.csv" in to_dot(graph)
    assert "data/#quot;quoted#quot; #lt;x#gt;.csv" in to_mermaid(graph)


def test_params_are_shown_as_plain_values() -> None:
    assert plain_value({"$f": 1.0}) == 1.0
    assert plain_value({"$tuple": [1, {"$f": 2.5}]}) == [1, 2.5]
    assert plain_value({"$path": "data/x"}) == "data/x"
    assert plain_value({"$$key": 1, "b": [{"$f": 0.5}]}) == {"$key": 1, "b": [0.5]}
    assert plain_value({"$enum": "mod.Color", "v": 2}) == "Color(2)"
    assert params_text({"lr": {"$f": 0.1}, "name": "x", "a": True}) == 'a=true lr=0.1 name="x"'
