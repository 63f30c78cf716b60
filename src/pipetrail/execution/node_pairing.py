"""Which node of one run is which node of another: pairing by name, params and wiring.

A node id counts calls (``train[2]``), so when a list of params grows or is reordered
the same id names different configurations. ``diff``, ``compare``, ``why`` and ``check
--baseline`` pair the step runs of two runs with :func:`pair_nodes` instead:

1. **name**: nodes named at the call site (:meth:`~pipetrail.core.step.Step.named`) pair
   with the node of the same id (same step, same name) in the other run;
2. **params**: the other nodes pair when they are alike: same step at the same place
   (:func:`~pipetrail.core.graph.step_base`), same recorded params, and each input read
   from the same source path or from the same output of paired nodes. Nodes are matched
   upstream first, so a consumer pairs through its producers' pairing;
3. **step**: what is left of one step pairs when exactly one such node remains in each
   run (the same step with changed params), unless both carry different names.

Nothing is guessed: when several nodes could pair (two unnamed calls with the same step
and params, or several calls of one step whose params all changed), they are reported as
:class:`AmbiguousNodes`, paired with nothing. Nodes with no counterpart are ``removed``
(only in run A) or ``added`` (only in run B). Pure, apart from :func:`recorded_nodes`,
which reads a run's nodes through a :class:`~pipetrail.ledger.Reader`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.core.graph import step_base

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pipetrail.ledger import Reader

__all__ = [
    "AmbiguousNodes",
    "NodePair",
    "NodePairing",
    "RecordedNode",
    "pair_nodes",
    "recorded_nodes",
]


@dataclass(frozen=True)
class RecordedNode:
    """What pairing reads about one step run.

    Attributes:
        node_id: its node id in its run.
        step: the step's name.
        name: the name given at the call site, or None.
        params: plain argument name -> fingerprint (the ``params`` key component).
        inputs: flat input name -> digest (artifacts and sources).
        outputs: output name -> digest.
        upstream: ids of the nodes it reads from (None when the run did not record
            them: then the earlier nodes that output one of its input digests).
    """

    node_id: str
    step: str
    name: str | None
    params: Mapping[str, Any]
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    upstream: tuple[str, ...] | None = None


@dataclass(frozen=True)
class NodePair:
    """Node ``a`` of run A is node ``b`` of run B; ``by`` is ``name``, ``params`` or ``step``."""

    a: str
    b: str
    by: str


@dataclass(frozen=True)
class AmbiguousNodes:
    """Nodes of one step that could pair in several ways, so pair with nothing.

    Attributes:
        step: the step's place (``outer/train``).
        a: the candidates in run A.
        b: the candidates in run B.
        reason: why no pairing is certain, and how to make it so.
    """

    step: str
    a: tuple[str, ...]
    b: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class NodePairing:
    """How the nodes of run A and run B pair (see the module docstring)."""

    pairs: tuple[NodePair, ...] = ()
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    ambiguous: tuple[AmbiguousNodes, ...] = ()

    def b_of(self, node_a: str) -> str | None:
        """Return the node of run B paired with ``node_a`` of run A, or None."""
        return next((p.b for p in self.pairs if p.a == node_a), None)

    def a_of(self, node_b: str) -> str | None:
        """Return the node of run A paired with ``node_b`` of run B, or None."""
        return next((p.a for p in self.pairs if p.b == node_b), None)

    def ambiguity_of(self, node: str, *, side: str) -> AmbiguousNodes | None:
        """Return the ambiguous group holding ``node`` of run ``side`` (``a``/``b``)."""
        for group in self.ambiguous:
            if node in (group.a if side == "a" else group.b):
                return group
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the pairing as JSON-able data."""
        return {
            "pairs": [asdict(p) for p in self.pairs],
            "removed": list(self.removed),
            "added": list(self.added),
            "ambiguous": [{**asdict(g), "a": list(g.a), "b": list(g.b)} for g in self.ambiguous],
        }


_SAME_PARAMS = (
    "same step, params and inputs, so any pairing would be a guess; name the calls "
    "(step.named(...)) to pair them"
)
_CHANGED_PARAMS = (
    "several unnamed calls of this step differ in params or inputs, so which became which "
    "is unknown; name the calls (step.named(...)) to pair them"
)


class _Side:
    """One run's nodes while they are paired."""

    def __init__(self, label: str, nodes: Sequence[RecordedNode], sources: Mapping[str, str]):
        self.label = label
        self.nodes = {n.node_id: n for n in nodes}
        self.order = {n.node_id: i for i, n in enumerate(nodes)}
        self.sources = sources  # digest -> path
        self.partner: dict[str, str] = {}  # node -> the other run's node (pair key: A's)
        self.done: set[str] = set()  # paired, or settled as unpaired
        # Each node's producers; unrecorded ones are the earlier nodes outputting an input.
        made_by: dict[str, list[str]] = defaultdict(list)
        self.ups: dict[str, list[str]] = {}
        for node in nodes:
            if node.upstream is None:
                found = {u for d in node.inputs.values() for u in made_by.get(d, ())}
                self.ups[node.node_id] = sorted(found, key=self.order.__getitem__)
            else:
                self.ups[node.node_id] = [
                    u for u in node.upstream if u in self.nodes and u != node.node_id
                ]
            for digest in node.outputs.values():
                made_by[digest].append(node.node_id)

    def upstream(self, node: RecordedNode) -> list[str]:
        return self.ups[node.node_id]

    def ready(self, node: RecordedNode) -> bool:
        return all(u in self.done for u in self.upstream(node))

    def token(self, node_id: str) -> str:
        """The same text for paired nodes of both runs; unique for any other node."""
        if node_id in self.partner:
            return "pair:" + (node_id if self.label == "a" else self.partner[node_id])
        return f"{self.label}:{node_id}"

    def input_ref(self, node: RecordedNode, digest: str) -> list[Any]:
        producers = [
            (u, out)
            for u in self.upstream(node)
            for out, d in self.nodes[u].outputs.items()
            if d == digest
        ]
        if len({u for u, _ in producers}) == 1:
            return ["node", self.token(producers[0][0]), sorted(o for _, o in producers)]
        if not producers and digest in self.sources:
            return ["source", self.sources[digest]]
        # Unknown or several producers: only the very same digest matches.
        return ["digest", digest, len(producers)]

    def signature(self, node: RecordedNode) -> str:
        inputs = {name: self.input_ref(node, d) for name, d in node.inputs.items()}
        return json.dumps(
            [step_base(node.node_id), node.step, node.params, inputs],
            sort_keys=True,
            default=str,
        )


def pair_nodes(
    a: Sequence[RecordedNode],
    b: Sequence[RecordedNode],
    *,
    sources_a: Mapping[str, str] | None = None,
    sources_b: Mapping[str, str] | None = None,
) -> NodePairing:
    """Pair the nodes of run A with those of run B (rules: module docstring).

    Args:
        a: run A's nodes, upstream first (the order step runs started in).
        b: run B's nodes, upstream first.
        sources_a: source digest -> path, for run A.
        sources_b: source digest -> path, for run B.

    Returns:
        The pairs, in run A's order; the removed, added and ambiguous nodes.
    """
    side_a, side_b = _Side("a", a, sources_a or {}), _Side("b", b, sources_b or {})
    pairs: list[NodePair] = []
    ambiguous: list[AmbiguousNodes] = []

    def pair(x: str, y: str, by: str) -> None:
        side_a.partner[x], side_b.partner[y] = y, x
        side_a.done.add(x)
        side_b.done.add(y)
        pairs.append(NodePair(x, y, by))

    def settle(base: str, xs: list[str], ys: list[str], reason: str) -> None:
        side_a.done.update(xs)
        side_b.done.update(ys)
        if xs and ys:
            ambiguous.append(AmbiguousNodes(base, tuple(xs), tuple(ys), reason))

    for node in a:
        other = side_b.nodes.get(node.node_id)
        if node.name is not None and other is not None and other.name == node.name:
            pair(node.node_id, other.node_id, "name")
    while True:
        open_a = [n for n in a if n.node_id not in side_a.done]
        open_b = [n for n in b if n.node_id not in side_b.done]
        if not open_a and not open_b:
            break
        if _match_alike(side_a, side_b, open_a, open_b, pair, settle):
            continue
        if _match_by_step(side_a, side_b, open_a, open_b, pair, settle):
            continue
        # Only a cycle in the recorded wiring gets here: what is left stays unpaired.
        settle("", [n.node_id for n in open_a], [], "")
        settle("", [], [n.node_id for n in open_b], "")
    pairs.sort(key=lambda p: side_a.order[p.a])
    paired_or_ambiguous_a = set(side_a.partner) | {x for g in ambiguous for x in g.a}
    paired_or_ambiguous_b = set(side_b.partner) | {y for g in ambiguous for y in g.b}
    return NodePairing(
        pairs=tuple(pairs),
        removed=tuple(n.node_id for n in a if n.node_id not in paired_or_ambiguous_a),
        added=tuple(n.node_id for n in b if n.node_id not in paired_or_ambiguous_b),
        ambiguous=tuple(ambiguous),
    )


def _match_alike(
    side_a: _Side,
    side_b: _Side,
    open_a: list[RecordedNode],
    open_b: list[RecordedNode],
    pair: Any,
    settle: Any,
) -> bool:
    """Pair ready nodes with equal signatures; settle ties as ambiguous. Any progress?"""
    groups: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for side, nodes, slot in ((side_a, open_a, 0), (side_b, open_b, 1)):
        for node in nodes:
            if side.ready(node):
                groups[side.signature(node)][slot].append(node.node_id)
    progress = False
    for xs, ys in groups.values():
        if not xs or not ys:
            continue
        progress = True
        if len(xs) == 1 and len(ys) == 1:
            pair(xs[0], ys[0], "params")
        else:
            settle(step_base(xs[0]), xs, ys, _SAME_PARAMS)
    return progress


def _match_by_step(
    side_a: _Side,
    side_b: _Side,
    open_a: list[RecordedNode],
    open_b: list[RecordedNode],
    pair: Any,
    settle: Any,
) -> bool:
    """Settle each step whose open nodes are all ready: one each pairs, else ties/added."""
    by_base: dict[str, tuple[list[RecordedNode], list[RecordedNode]]] = defaultdict(
        lambda: ([], [])
    )
    for node in open_a:
        by_base[step_base(node.node_id)][0].append(node)
    for node in open_b:
        by_base[step_base(node.node_id)][1].append(node)
    progress = False
    for base, (xs, ys) in by_base.items():
        if not all(side_a.ready(n) for n in xs) or not all(side_b.ready(n) for n in ys):
            continue
        progress = True
        if len(xs) == 1 and len(ys) == 1 and (xs[0].name is None or ys[0].name is None):
            pair(xs[0].node_id, ys[0].node_id, "step")
        elif len(xs) == 1 and len(ys) == 1:
            settle(base, [xs[0].node_id], [], "")  # two different names: removed, added
            settle(base, [], [ys[0].node_id], "")
        else:
            settle(base, [n.node_id for n in xs], [n.node_id for n in ys], _CHANGED_PARAMS)
    return progress


def recorded_nodes(reader: Reader, run_id: str) -> tuple[list[RecordedNode], dict[str, str]]:
    """Read a run's step runs as pairing needs them.

    Returns:
        The run's nodes in the order they started, and source digest -> path.

    Raises:
        NotFoundError: the run does not exist.
    """
    run = reader.get_run(run_id)
    recorded = (run["record"] or {}).get("nodes") or {}
    nodes = []
    for row in reader.step_runs(run_id):
        about = recorded.get(row["node_id"]) or {}
        nodes.append(
            RecordedNode(
                node_id=row["node_id"],
                step=row["step"],
                name=about.get("name"),
                params=(row["components"] or {}).get("params") or {},
                inputs=row["inputs"] or {},
                outputs=row["outputs"] or {},
                upstream=None if "upstream" not in about else tuple(about["upstream"]),
            )
        )
    sources = {s["digest"]: s["path"] for s in reader.sources(run_id)}
    return nodes, sources
