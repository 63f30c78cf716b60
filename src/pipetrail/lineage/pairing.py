"""Two runs' facts lined up node by node: :func:`pair_facts` and :func:`align_facts`.

Comparisons (``diff``, ``compare``, ``check --baseline``) must put a node of run B next
to the node of run A that computes the same thing, not the one at the same call position:
:func:`pair_facts` applies :func:`~pipetrail.execution.node_pairing.pair_nodes` (by name,
then step, params and wiring; ties reported, never guessed) to loaded
:class:`~pipetrail.lineage.run_facts.RunFacts`. :func:`align_facts` then re-keys run B's
facts by run A's node ids, so code that compares by key (metric names ``NODE.NAME``,
steps by node id) compares paired nodes. Read-only and pure; imports execution and below.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pipetrail.execution.node_pairing import NodePairing, RecordedNode, pair_nodes

if TYPE_CHECKING:
    from pipetrail.lineage.run_facts import Metric, RunFacts

__all__ = ["align_facts", "pair_facts"]


def _recorded(facts: RunFacts) -> list[RecordedNode]:
    return [
        RecordedNode(
            node_id=step.node_id,
            step=step.step,
            name=step.name,
            params=step.components.get("params") or {},
            inputs=step.inputs,
            outputs=step.outputs,
            upstream=step.upstream,
        )
        for step in facts.steps.values()
    ]


def pair_facts(a: RunFacts, b: RunFacts) -> NodePairing:
    """Pair the step runs of run ``a`` with those of run ``b``."""
    return pair_nodes(
        _recorded(a),
        _recorded(b),
        sources_a={digest: path for path, digest in a.sources.items()},
        sources_b={digest: path for path, digest in b.sources.items()},
    )


def _keys_of_b(a: RunFacts, b: RunFacts, pairing: NodePairing) -> dict[str, tuple[str, str]]:
    """Run B's node id -> its key among run A's (A's id when paired, else its own), mark.

    An unpaired node whose own id is one of run A's (the call position it took is another
    configuration's in run A) is marked (`` (added in run B)``), so it is never read as
    that node; the mark is "" otherwise.
    """
    keys: dict[str, tuple[str, str]] = {}
    for node in b.steps:
        partner = pairing.a_of(node)
        if partner is not None:
            keys[node] = (partner, "")
        elif node in a.steps:
            what = "ambiguous" if pairing.ambiguity_of(node, side="b") else "added"
            keys[node] = (node, f" ({what} in run B)")
        else:
            keys[node] = (node, "")
    return keys


def _metric_name(name: str, node: str, key: str, mark: str) -> str:
    renamed = key + name[len(node) :] if name.startswith(node + ".") else name
    return renamed + mark


def align_facts(a: RunFacts, b: RunFacts, pairing: NodePairing | None = None) -> RunFacts:
    """Return run ``b``'s facts keyed by run ``a``'s node ids (module docstring).

    Steps, metrics (``NODE.NAME`` renamed, ``Metric.node_id`` the key) and evaluation
    inputs are re-keyed; each :class:`StepFacts` keeps its own ``node_id``.
    """
    pairing = pairing or pair_facts(a, b)
    keys = _keys_of_b(a, b, pairing)
    metrics: dict[str, Metric] = {}
    step_keys = {node: key + mark for node, (key, mark) in keys.items()}
    for metric in b.metrics.values():
        key, mark = keys.get(metric.node_id, (metric.node_id, ""))
        name = _metric_name(metric.name, metric.node_id, key, mark)
        metrics[name] = replace(metric, name=name, node_id=key + mark)
    return replace(
        b,
        steps={step_keys[node]: facts for node, facts in b.steps.items()},
        metrics=metrics,
        evaluation_inputs={step_keys.get(n, n): v for n, v in b.evaluation_inputs.items()},
    )
