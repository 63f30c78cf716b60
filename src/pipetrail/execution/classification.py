"""Labels down a run's lineage, declassification, and storing sensitive outputs sealed.

:func:`plan_labels` gives every node output its label before anything runs: the label
``@step(classification=...)`` declares for it, or else the strictest label among the
step's inputs (sources and upstream outputs). A declared label lower than a sensitive
inherited one is a *declassification*: the step must record, while it runs, a privacy
operation that earns it (:func:`declassifying_ops`): ``privacy.aggregate`` with
``min_group_size >= DECLASSIFY_MIN_K``, or a passing ``privacy.check_k_anonymity`` with
``k >= DECLASSIFY_MIN_K``. Without one the step fails and nothing of it is stored.

:func:`store_outputs` is how a task stores its outputs: those labelled sensitive go
through a :class:`~pipetrail.store.sealed.SealedStore` and are recorded under their keyed
digest (docs/adr/0023-keyed-digests.md), without a table profile (its statistics would
show the data).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.core.classification import LABELS, PUBLIC, is_sensitive, strictest
from pipetrail.core.graph import OutputRef, SourceRef
from pipetrail.errors import DefinitionError, StoreError
from pipetrail.store.serializers.kept_bytes import BytesKeeper

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.core.graph import PipelineGraph
    from pipetrail.store import ContentStore, SerializerRegistry, StoredArtifact
    from pipetrail.store.sealed import SealedStore, SealingKeys

__all__ = [
    "DECLASSIFY_MIN_K",
    "NodeLabels",
    "OutputPrivacy",
    "declassified",
    "declassifying_ops",
    "keyed_digests",
    "plan_labels",
    "seal_record",
    "store_outputs",
]

#: The smallest group size (k) a privacy operation must guarantee to declassify.
DECLASSIFY_MIN_K = 5
SEALED_KEY = "sealed"
SEALED_VERSION = 1
LABEL_KEY = "classification"


# The labels of a node whose outputs are all public (see NodeLabels.recorded).
_PUBLIC_ONLY = frozenset({PUBLIC})


@dataclass(frozen=True)
class NodeLabels:
    """The labels of one node.

    Attributes:
        outputs: output name -> its label (``public`` included).
        inherited: the strictest label among the node's inputs.
        lowered: output name -> the sensitive label it is declassified from.
    """

    outputs: dict[str, str]
    inherited: str = PUBLIC
    lowered: dict[str, str] = field(default_factory=dict)

    def recorded(self) -> dict[str, str]:
        """The labels a step event records: when one is not ``public`` or was lowered."""
        # One call in C rather than a generator: every step of a run asks.
        if not self.lowered and _PUBLIC_ONLY.issuperset(self.outputs.values()):
            return {}
        return dict(self.outputs)

    def sensitive(self) -> bool:
        """Whether any output is stored sealed."""
        return any(is_sensitive(label) for label in self.outputs.values())


def _input_refs(value: Any) -> Iterator[OutputRef | SourceRef]:
    if isinstance(value, OutputRef | SourceRef):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _input_refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _input_refs(item)


def _rank(label: str) -> int:
    return LABELS.index(label)


def plan_labels(graph: PipelineGraph) -> dict[str, NodeLabels]:
    """Every node's labels, from declarations and the labels of what it reads."""
    planned: dict[str, NodeLabels] = {}
    for node in graph.nodes.values():  # in execution order: producers come first
        found: list[str | None] = []
        for value in node.inputs.values():
            if type(value) is OutputRef:  # the most common input: one upstream output
                found.append(planned[value.node_id].outputs.get(value.name))
                continue
            for ref in _input_refs(value):
                if isinstance(ref, SourceRef):
                    found.append(ref.classification)
                else:
                    found.append(planned[ref.node_id].outputs.get(ref.name))
        inherited = strictest(found)
        if not node.step.options.classification:  # nothing declared: every output inherits
            planned[node.id] = NodeLabels(
                outputs=dict.fromkeys(node.output_names, inherited), inherited=inherited
            )
            continue
        declared = dict(node.step.options.classification)
        outputs: dict[str, str] = {}
        lowered: dict[str, str] = {}
        for name in node.output_names:
            label = declared.get(name)
            if label is None or _rank(label) >= _rank(inherited):
                outputs[name] = label or inherited
                continue
            outputs[name] = label
            if is_sensitive(inherited):
                lowered[name] = inherited
        planned[node.id] = NodeLabels(outputs=outputs, inherited=inherited, lowered=lowered)
    return planned


def declassifying_ops(data_ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded privacy operations that earn a declassification."""
    found = []
    for op in data_ops:
        args = op.get("args") or {}
        if op.get("op") == "aggregate" and int(args.get("min_group_size", 0)) >= DECLASSIFY_MIN_K:
            found.append({"op": "aggregate", "k": int(args["min_group_size"])})
        elif (
            op.get("op") == "check_k_anonymity"
            and op.get("ok")
            and int(args.get("k", 0)) >= DECLASSIFY_MIN_K
        ):
            found.append({"op": "check_k_anonymity", "k": int(op.get("k", 0))})
    return found


def declassified(labels: NodeLabels, data_ops: list[dict[str, Any]]) -> dict[str, Any]:
    """What a step event records of its declassified outputs: from, to, and by what."""
    earned = declassifying_ops(data_ops)
    return {
        name: {"from": label, "to": labels.outputs[name], "by": earned}
        for name, label in labels.lowered.items()
    }


def keyed_digests(value: Any, keys: SealingKeys) -> Any:
    """``value`` with every ``digest`` entry (at any depth) replaced by its keyed digest."""
    if isinstance(value, dict):
        return {
            k: (
                keys.keyed_digest(v)
                if k == "digest" and isinstance(v, str) and v.startswith("blake3:")
                else keyed_digests(v, keys)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [keyed_digests(v, keys) for v in value]
    return value


@dataclass(frozen=True)
class OutputPrivacy:
    """What a task needs to store its outputs as their labels say.

    Attributes:
        labels: output name -> label.
        lowered: output name -> the label it is declassified from.
        keys: the sealing keys (None when the step neither reads nor writes sensitive
            data).
        handles: the strictest sensitive label the step reads or writes (None: none);
            its contract report is then sealed under that label and the step event
            quotes no checked value.
    """

    labels: dict[str, str]
    lowered: dict[str, str] = field(default_factory=dict)
    keys: SealingKeys | None = None
    handles: str | None = None


def seal_record(record: StoredArtifact, sealed: SealedStore, label: str) -> StoredArtifact:
    """The record of an output stored through ``sealed``: keyed digest, label, no profile."""
    plain = record.digest
    if record.digest == record.blob:
        plain = sealed.plain_digests[record.blob]
    meta = {k: v for k, v in record.meta.items() if k != "profile"}
    meta[SEALED_KEY] = SEALED_VERSION
    meta[LABEL_KEY] = label
    return dataclasses.replace(record, digest=sealed.keys.keyed_digest(plain), meta=meta)


def store_outputs(
    step: str,
    values: dict[str, Any],
    store: ContentStore,
    registry: SerializerRegistry,
    *,
    allow_pickle: bool,
    privacy: OutputPrivacy | None,
    data_ops: list[dict[str, Any]],
) -> tuple[dict[str, StoredArtifact], dict[str, bytes]]:
    """Store a step's outputs: plain, or sealed when their label is sensitive.

    Returns:
        Output name -> its record, and the bytes written for small outputs (by blob).

    Raises:
        DefinitionError: an output is declassified and the step recorded no privacy
            operation that earns it; nothing is stored.
        StoreError: a sensitive output but no sealing keys.
    """
    if privacy is not None and privacy.lowered:
        earned = declassifying_ops(data_ops)
        if not earned:
            name, label = next(iter(privacy.lowered.items()))
            raise DefinitionError(
                f"step {step!r} declares output {name!r} as {privacy.labels[name]!r}, but it "
                f"derives from {label!r} data and recorded no privacy operation that "
                f"declassifies it; call pipetrail.privacy.aggregate(..., min_group_size="
                f"{DECLASSIFY_MIN_K} or more) or check_k_anonymity(..., k>={DECLASSIFY_MIN_K}) "
                "that passes, or keep the label"
            )
    plain_keeper = BytesKeeper(store)
    sealed_keeper: BytesKeeper | None = None
    sealed: SealedStore | None = None
    outputs: dict[str, StoredArtifact] = {}
    kept: dict[str, bytes] = {}
    for name, item in values.items():
        label = privacy.labels.get(name, PUBLIC) if privacy is not None else PUBLIC
        if not is_sensitive(label):
            record = registry.dump(
                item, plain_keeper.store, allow_pickle=allow_pickle, step=step, output=name
            )
            outputs[name] = record
            if record.blob in plain_keeper.kept:
                kept[record.blob] = plain_keeper.kept[record.blob]
            continue
        if privacy is None or privacy.keys is None:
            raise StoreError(f"step {step!r}: output {name!r} is {label!r} but no key is open")
        if sealed is None or sealed_keeper is None:
            # Imported here: only a sensitive output is sealed.
            from pipetrail.store.sealed import SealedStore

            sealed = SealedStore(store, privacy.keys)
            sealed_keeper = BytesKeeper(sealed)
        record = registry.dump(
            item, sealed_keeper.store, allow_pickle=allow_pickle, step=step, output=name
        )
        outputs[name] = seal_record(record, sealed, label)
        if record.blob in sealed_keeper.kept:
            kept[record.blob] = sealed_keeper.kept[record.blob]
    return outputs, kept
