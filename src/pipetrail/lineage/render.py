"""Render a :class:`~pipetrail.lineage.graph.LineageGraph`: terminal tree, JSON, DOT, Mermaid.

Every function returns text (the tree: lines of styled segments) and prints nothing; the
CLI decides where output goes and how styles look. Output is deterministic: the graph's
order is kept.

The tree follows the query's direction from the reference: upstream, each artifact's
children are the step runs that produced it and each step run's children are its
inputs, and a cache hit's child is the executed step run it reused; downstream, each
artifact's children are the step runs that read it and each step run's children are its
outputs, then the cache hits that reused it. A node met a second time is printed once
more with "(see above)" and no children, so shared ancestry (fan-in, diamonds) is drawn
once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetrail.lineage.graph import ArtifactNode, LineageGraph, StepRunNode

__all__ = [
    "Segment",
    "artifact_text",
    "mermaid_id",
    "params_text",
    "plain_value",
    "short",
    "step_text",
    "to_dot",
    "to_json",
    "to_mermaid",
    "to_text",
    "tree_lines",
]

Segment = tuple[str, str]

_STATUS_STYLE = {"completed": "green", "cached": "cyan", "failed": "red", "running": "yellow"}
_META_SHOWN = ("rows", "columns", "schema_fingerprint", "shape", "dtype", "estimator")
# A sensitive artifact's label (docs/data-handling.md); its digest is a keyed digest.
_LABEL_KEY = "classification"


# -- text pieces shared by every format -------------------------------------------------
def short(value: str | None, width: int = 12) -> str:
    """A digest or id shortened for display (``blake3:`` dropped)."""
    if not value:
        return "-"
    return value.removeprefix("blake3:")[:width]


def _size(size: int | None) -> str:
    if size is None:
        return "? B"
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def plain_value(value: Any) -> Any:
    """A recorded (type-tagged) parameter fingerprint as a plain value for display."""
    if isinstance(value, list):
        return [plain_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    keys = list(value)
    if keys == ["$f"]:
        return value["$f"]
    if len(keys) == 1 and keys[0].startswith("$") and not keys[0].startswith("$$"):
        return plain_value(value[keys[0]])
    if "$enum" in value:
        return f"{str(value['$enum']).rsplit('.', 1)[-1]}({plain_value(value.get('v'))})"
    return {
        k.removeprefix("$") if k.startswith("$$") else k: plain_value(v) for k, v in value.items()
    }


def params_text(params: dict[str, Any]) -> str:
    """``name=value`` pairs of a step run's params, values as JSON."""
    return " ".join(
        f"{k}={json.dumps(plain_value(v), sort_keys=True, default=str)}"
        for k, v in sorted(params.items())
    )


def artifact_text(node: ArtifactNode) -> str:
    """One line describing an artifact: short digest, type, size, key facts."""
    parts = [short(node.digest)]
    if node.kind == "source":
        parts.append("source " + ", ".join(node.paths))
    parts.append(node.type_name or "file (by reference)")
    if node.serializer:
        parts.append(node.serializer)
    parts.append(_size(node.size))
    if node.meta.get(_LABEL_KEY):
        parts.append(f"[{node.meta[_LABEL_KEY]}, encrypted, keyed digest]")
    for key in _META_SHOWN:
        if key in node.meta:
            value = node.meta[key]
            text = short(value) if key == "schema_fingerprint" else json.dumps(value)
            parts.append(f"{key.replace('_fingerprint', '')}={text}")
    return "  ".join(parts)


def step_text(node: StepRunNode) -> str:
    """One line describing a step run: node, status, run, time, code digest, params."""
    name = node.node_id if node.node_id == node.step else f"{node.node_id} ({node.step})"
    parts = [name, node.status, f"run {node.run_id}", node.started_at[:19].replace("T", " ")]
    if node.reused_step_run_id:
        parts.append(f"reuses {node.reused_step_run_id}")
    parts.append(f"code {short(node.code_digest)}")
    if node.params:
        parts.append(params_text(node.params))
    return "  ".join(parts)


def _header(graph: LineageGraph) -> str:
    what = f"{graph.target.kind.replace('_', ' ')} {graph.target.id}"
    depth = "" if graph.max_depth is None else f", depth <= {graph.max_depth}"
    counts = ", ".join(
        f"{n} {word}{'' if n == 1 else 's'}"
        for n, word in (
            (len(graph.artifacts), "artifact"),
            (len(graph.step_runs), "step run"),
            (len(graph.runs), "run"),
        )
    )
    how = "path from" if graph.direction == "path" else f"{graph.direction} of"
    return f"{how} {what}: {counts}{depth}"


# -- tree ---------------------------------------------------------------------------------
def tree_lines(graph: LineageGraph) -> list[list[Segment]]:
    """Return the graph as a tree rooted at the reference (see the module docstring).

    Each line is a list of ``(text, style)`` segments; styles are ``""``, ``bold``,
    ``dim`` or a colour name (``green``, ``cyan``, ``red``, ``yellow``). Lines are drawn
    with box-drawing guides. (Not a rich ``Tree``: rich needs seconds for the tens of
    thousands of lines an impact query can produce; this takes milliseconds.)
    """
    artifacts = {a.digest: a for a in graph.artifacts}
    steps = {s.step_run_id: s for s in graph.step_runs}
    forward = graph.direction != "upstream"
    lines: list[list[Segment]] = [[(_header(graph), "bold")]]
    seen: set[str] = set()
    roots = [r for r in sorted(graph.roots, reverse=not forward)]  # ids are time-ordered
    # (node id, edge label, guide prefix, last child?); roots have prefix None
    stack: list[tuple[str, str, str | None, bool]] = [(r, "", None, False) for r in reversed(roots)]
    while stack:
        node_id, via, prefix, last = stack.pop()
        if prefix is None and node_id in seen:
            continue  # a root already drawn inside an earlier root's tree
        repeat = node_id in seen
        seen.add(node_id)
        guide = "" if prefix is None else prefix + ("└── " if last else "├── ")
        line: list[Segment] = [(guide, "dim")] if guide else []
        line += _label(artifacts.get(node_id), steps.get(node_id), via, graph)
        if repeat:
            line.append((" (see above)", "dim"))
        lines.append(line)
        if repeat:
            continue
        children = _children(graph, node_id, node_id in artifacts, forward)
        inner = "" if prefix is None else prefix + ("    " if last else "│   ")
        for i in range(len(children) - 1, -1, -1):
            child, name = children[i]
            stack.append((child, name, inner, i == len(children) - 1))
    return lines


def to_text(graph: LineageGraph) -> str:
    """Return the tree of :func:`tree_lines` as plain text."""
    return "\n".join("".join(text for text, _ in line) for line in tree_lines(graph)) + "\n"


def _children(
    graph: LineageGraph, node_id: str, is_artifact: bool, forward: bool
) -> list[tuple[str, str]]:
    """(child id, edge label) pairs of a node in the tree's direction."""
    if forward:  # outputs, then the cache hits that reused this step run
        out = [(e.target, e.name) for e in graph.edges_from(node_id) if e.kind != "reuses"]
        reused = [(e.source, "reused by") for e in graph.edges_to(node_id) if e.kind == "reuses"]
        return out + reused
    reuse = [e for e in graph.edges_from(node_id) if e.kind == "reuses"]
    if reuse:  # same inputs as the executed step run: follow that one
        return [(e.target, "reuses") for e in reuse]
    wanted = "output" if is_artifact else "input"
    return [
        (e.source, "" if is_artifact else e.name)
        for e in graph.edges_to(node_id)
        if e.kind == wanted
    ]


def _label(
    artifact: ArtifactNode | None, step: StepRunNode | None, via: str, graph: LineageGraph
) -> list[Segment]:
    special = via in ("reuses", "reused by")
    out: list[Segment] = [(f"{via} " if special else f"{via}: ", "dim")] if via else []
    if artifact is not None:
        out.append((artifact_text(artifact), "bold"))
        limited = graph.max_depth is not None and graph.depth(artifact.digest) >= graph.max_depth
        if limited and artifact.role == "output" and graph.direction == "upstream":
            out.append((" (depth limit: not followed)", "dim"))
        return out
    if step is not None:
        text = step_text(step)
        head, _, tail = text.partition(step.status)
        out += [(head, ""), (step.status, _STATUS_STYLE.get(step.status, "")), (tail, "")]
    return out


# -- machine-readable formats ----------------------------------------------------------------
def to_json(graph: LineageGraph) -> str:
    """Return the graph as JSON text (see :meth:`LineageGraph.to_dict`)."""
    return json.dumps(graph.to_dict(), indent=2, sort_keys=True)


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: LineageGraph) -> str:
    """Return the graph in Graphviz DOT: node ids are digests and step run ids.

    Artifacts are boxes (sources are cylinders), step runs are ellipses grouped in one
    cluster per run; ``reuses`` edges are dashed.
    """
    lines = [
        "digraph lineage {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for a in graph.artifacts:
        shape = "cylinder" if a.kind == "source" else "box"
        label = artifact_text(a).replace("  ", "\n")
        lines.append(f"  {_dot_text(a.digest)} [shape={shape}, label={_dot_text(label)}];")
    for run in graph.runs:
        lines.append(f"  subgraph {_dot_text('cluster_' + run.run_id)} {{")
        lines.append(f"    label={_dot_text(f'run {run.run_id} ({run.pipeline})')};")
        lines.append("    style=dashed;")
        for s in graph.step_runs:
            if s.run_id == run.run_id:
                label = step_text(s).replace("  ", "\n")
                lines.append(
                    f"    {_dot_text(s.step_run_id)} [shape=ellipse, label={_dot_text(label)}];"
                )
        lines.append("  }")
    known_runs = {r.run_id for r in graph.runs}
    for s in graph.step_runs:
        if s.run_id not in known_runs:
            label = step_text(s).replace("  ", "\n")
            lines.append(f"  {_dot_text(s.step_run_id)} [shape=ellipse, label={_dot_text(label)}];")
    for e in graph.edges:
        style = ", style=dashed" if e.kind == "reuses" else ""
        label = e.name or e.kind
        lines.append(
            f"  {_dot_text(e.source)} -> {_dot_text(e.target)} [label={_dot_text(label)}{style}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def mermaid_id(node_id: str) -> str:
    """The Mermaid node id of a digest (``a_<hex>``) or step run id (``s_<id>``)."""
    if node_id.startswith("blake3:"):
        return "a_" + node_id.removeprefix("blake3:")
    return "s_" + node_id


def _mermaid_text(text: str) -> str:
    escaped = (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )
    return '"' + escaped.replace("  ", "<br/>") + '"'


def to_mermaid(graph: LineageGraph) -> str:
    """Return the graph as a Mermaid flowchart (left to right), one subgraph per run."""
    lines = ["flowchart LR"]
    for a in graph.artifacts:
        text = _mermaid_text(artifact_text(a))
        shape = f"[({text})]" if a.kind == "source" else f"[{text}]"
        lines.append(f"  {mermaid_id(a.digest)}{shape}")
    for run in graph.runs:
        lines.append(f"  subgraph run_{run.run_id}[{_mermaid_text(f'run {run.run_id}')}]")
        lines.extend(
            f"    {mermaid_id(s.step_run_id)}([{_mermaid_text(step_text(s))}])"
            for s in graph.step_runs
            if s.run_id == run.run_id
        )
        lines.append("  end")
    known_runs = {r.run_id for r in graph.runs}
    lines.extend(
        f"  {mermaid_id(s.step_run_id)}([{_mermaid_text(step_text(s))}])"
        for s in graph.step_runs
        if s.run_id not in known_runs
    )
    for e in graph.edges:
        arrow = "-.->" if e.kind == "reuses" else "-->"
        label = _mermaid_text(e.name or e.kind)
        lines.append(f"  {mermaid_id(e.source)} {arrow}|{label}| {mermaid_id(e.target)}")
    return "\n".join(lines) + "\n"
