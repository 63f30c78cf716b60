"""A node's identity in a run: the key its seed derives from, whatever its call position.

A node id counts calls (``train[2]``), so it changes when a list of params grows or is
reordered; the seed a step gets, and so its cache key, must not. A node's identity is:

* for a step called **once** at its place in the pipeline: the place itself
  (:attr:`~pipetrail.core.graph.Node.base`: nested pipeline names and step name, which
  is its node id when unnamed). Changing the call's params keeps its seed, so a run with
  other params differs by the params only (and keys recorded before identities existed
  stay valid);
* for a step called **several times** there (a fan-out): ``<place>@<digest>``, the digest
  of the place, the fingerprint of each plain argument (as the cache key holds them),
  each input's shape with every step output replaced by its producer's identity and
  output name and every source by its path, and ``occurrence``: how many earlier nodes
  (in pipeline order) have all of these the same. Only identical calls are told apart by
  order, so growing or reordering a list of params keeps every call's seed.

The node's name (:meth:`~pipetrail.core.step.Step.named`) is not part of it: a name is a
label, renaming a node keeps its seed and its cache hits. The per-step seed is
``derive_seed(run_seed, identity)``; step events record the identity
(docs/adr/0015-node-identity.md). Imports hashing and core only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.core.graph import OutputRef, SourceRef
from pipetrail.errors import UnhashableValueError
from pipetrail.hashing import digest_value
from pipetrail.hashing.canonical import is_plain
from pipetrail.hashing.digest import digest_plain
from pipetrail.hashing.fingerprint import fingerprint_obj

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.core.graph import Node, PipelineGraph

__all__ = ["IDENTITY_FORMAT", "NodeIdentities", "node_identities", "plain_params"]

IDENTITY_FORMAT = "pt-node1"


@dataclass
class NodeIdentities:
    """The identities of a graph's nodes, and the fingerprints of their plain arguments.

    Attributes:
        identity: node id -> its identity (a digest).
        params: node id -> plain argument name -> its fingerprint (``{"$unhashable":
            type}`` for a value that has none); the cache key reuses them.
        unhashable: node id -> why arguments could not be fingerprinted.
    """

    identity: dict[str, str] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    unhashable: dict[str, list[str]] = field(default_factory=dict)


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, OutputRef | SourceRef):
        return True
    if isinstance(value, list | tuple):
        items: Iterable[Any] = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return False
    for item in items:  # plain members are checked here, without a call each
        if isinstance(item, OutputRef | SourceRef):
            return True
        if isinstance(item, list | tuple | dict) and _holds_placeholder(item):
            return True
    return False


def _fingerprint(value: Any) -> Any:
    try:
        return fingerprint_obj(value)
    except UnhashableValueError:
        return {"$unhashable": type(value).__qualname__}


def _wired(value: Any, identity: dict[str, str]) -> Any:
    if isinstance(value, OutputRef):
        return {"node": identity[value.node_id], "output": value.name}
    if isinstance(value, SourceRef):
        return {"source": value.path}
    if isinstance(value, list | tuple):
        return [_wired(v, identity) for v in value]
    if isinstance(value, dict):
        return {str(k): _wired(v, identity) for k, v in value.items()}
    return _fingerprint(value)


def plain_params(node: Node) -> tuple[dict[str, Any], list[str]]:
    """Fingerprint a node's plain arguments (those holding no step output or source).

    Returns:
        name -> fingerprint, and why values could not be fingerprinted (their
        fingerprint is then ``{"$unhashable": type}``).
    """
    params: dict[str, Any] = {}
    unhashable: list[str] = []
    for name, value in node.inputs.items():
        if _holds_placeholder(value):
            continue
        try:
            params[name] = fingerprint_obj(value)
        except UnhashableValueError as exc:
            params[name] = {"$unhashable": type(value).__qualname__}
            unhashable.append(f"parameter {name!r}: {exc}")
    return params, unhashable


def node_identities(graph: PipelineGraph) -> NodeIdentities:
    """Compute every node's identity (module docstring), in pipeline order.

    Upstream nodes come first in a built graph, so each producer's identity is known
    when its consumers are described.
    """
    found = NodeIdentities()
    identity, all_params = found.identity, found.params
    bases = [node.base for node in graph.nodes.values()]
    calls = Counter(bases)
    # shape -> how many nodes had it so far: a dict, not a Counter (whose count of a new
    # key is a call of its own), as nearly every node of a fan-out has a shape of its own.
    seen: dict[str, int] = {}
    for (node_id, node), base in zip(graph.nodes.items(), bases, strict=True):
        fanned = calls[base] > 1
        # One pass over the arguments: plain ones are fingerprinted (plain_params gives
        # the same), the others wired (only a fan-out's identity describes them).
        params: dict[str, Any] = {}
        unhashable: list[str] = []
        inputs: dict[str, Any] = {}
        # Whether the inputs described are only producers' identities and output names
        # (text): with plain params, the shape is then hashed without a walk over it.
        wired_plainly = True
        for name, value in node.inputs.items():
            if type(value) is OutputRef:  # the most common argument: one upstream output
                if fanned:
                    output = value.name
                    inputs[name] = {"node": identity[value.node_id], "output": output}
                    if type(output) is not str:  # output names are not checked to be text
                        wired_plainly = False
            elif _holds_placeholder(value):
                if fanned:
                    inputs[name] = _wired(value, identity)
                    wired_plainly = False
            else:
                try:
                    params[name] = fingerprint_obj(value)
                except UnhashableValueError as exc:
                    params[name] = {"$unhashable": type(value).__qualname__}
                    unhashable.append(f"parameter {name!r}: {exc}")
        all_params[node_id] = params
        if unhashable:
            found.unhashable[node_id] = unhashable
        if not fanned:
            identity[node_id] = base
            continue
        described = {"format": IDENTITY_FORMAT, "step": base, "params": params, "inputs": inputs}
        plain = wired_plainly and type(base) is str and (not params or is_plain(params))
        shape = digest_plain(described) if plain else digest_value(described)
        occurrence = seen.get(shape, 0)
        seen[shape] = occurrence + 1
        # Text and a count: plain (the digest is digest_value's).
        digest = digest_plain({"format": IDENTITY_FORMAT, "shape": shape, "occurrence": occurrence})
        identity[node_id] = f"{base}@{digest.split(':', 1)[-1][:32]}"
    return found
