"""What a node's inputs put in its cache key: digests, how each is read, parameters.

:func:`describe_inputs` walks a node's inputs: an upstream output or a source contributes
its digest (``inputs``), an upstream output also how it is read (``input_formats``: the
label of the reading its step event records, see
:func:`~pipetrail.store.serializers.registry.reading_label`), and any other value its
fingerprint (``params``). Values that cannot be fingerprinted are listed, so the step is
a forced miss that names them. See docs/adr/0004-cache-keys.md and
docs/adr/0013-how-an-output-is-read.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.core.graph import OutputRef, SourceRef
from pipetrail.errors import PipetrailError, UnhashableValueError
from pipetrail.hashing.fingerprint import fingerprint_obj
from pipetrail.store import StoredArtifact
from pipetrail.store.serializers.registry import reading_label

if TYPE_CHECKING:
    from pipetrail.core.graph import Node
    from pipetrail.execution.run_state import NodeOutput, RunState

__all__ = ["NodeInputs", "describe_inputs", "flat_inputs", "recorded_record"]


@dataclass(init=False)
class NodeInputs:
    """A node's key components from its inputs (``inputs``, ``input_formats``, ``params``).

    Attributes:
        digests: input name -> digest (or a list/dict of them, as the input is shaped).
        formats: flattened input name (``xs[0]``, ``d.key``) -> the reading label of each
            upstream output loaded.
        params: input name -> the fingerprint of a plain value.
        unhashable: why values could not be fingerprinted (a forced miss).
        flat: every value of ``digests`` and ``formats`` is exactly a ``str`` (each input
            one upstream output or source): ``digests`` is then its own
            :func:`flat_inputs`, and both are plain
            (:func:`~pipetrail.hashing.canonical.is_plain`).
    """

    digests: dict[str, Any]
    formats: dict[str, str]
    params: dict[str, Any]
    unhashable: list[str]
    flat: bool

    def __init__(
        self,
        digests: dict[str, Any] | None = None,
        formats: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        unhashable: list[str] | None = None,
        *,
        flat: bool = False,
    ) -> None:
        # One step instead of the generated __init__'s default factories: a run
        # describes the inputs of every node.
        self.__dict__.update(
            digests={} if digests is None else digests,
            formats={} if formats is None else formats,
            params={} if params is None else params,
            unhashable=[] if unhashable is None else unhashable,
            flat=flat,
        )


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, OutputRef | SourceRef):
        return True
    if isinstance(value, list | tuple):
        return any(_holds_placeholder(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_placeholder(v) for v in value.values())
    return False


def _input_digest(state: RunState, value: Any) -> Any:
    if isinstance(value, OutputRef):
        return state.outputs[value.node_id][value.index].digest
    if isinstance(value, SourceRef):
        return state.sources[value][0]
    if isinstance(value, list | tuple):
        return [_input_digest(state, v) for v in value]
    if isinstance(value, dict):
        return {k: _input_digest(state, v) for k, v in value.items()}
    return fingerprint_obj(value)


def recorded_record(state: RunState, digest: str) -> StoredArtifact:
    """Return the artifact's own record (for an output whose reading is not known).

    Raises:
        PipetrailError: the artifact is not recorded.
    """
    record = state.project.ledger.reader().artifact(digest)
    if record is None:
        raise PipetrailError(f"artifact {digest} is not recorded; run `pipetrail audit verify`")
    return StoredArtifact.from_dict(record)


def _output_label(state: RunState, output: NodeOutput) -> str:
    """How ``output`` is read, as its consumers' keys hold it (computed once)."""
    if output.label is None:
        if output.reading is None:
            if output.record is None:
                output.record = recorded_record(state, output.digest)
            output.reading = state.project.registry.reading(output.record)
        output.label = _label_of(output.reading)
    return output.label


# The keys of a reading that gives its label by its format, type and size alone (its
# meta empty), and the labels of such readings by these three. Bounded.
_BASIC_READING_KEYS = frozenset({"format", "type_name", "size", "meta"})
_BASIC_LABELS: dict[tuple[str, str, int], str] = {}
_BASIC_LABELS_MAX = 4096


def _label_of(reading: dict[str, Any]) -> str:
    """:func:`reading_label` of ``reading``, without encoding a reading met before.

    A reading of exactly a format, a type and a size (exact ``str``, ``str`` and
    ``int``) and an empty meta has the canonical bytes, so the label, those three
    give: the outputs of a cached re-run are mostly such readings, each made anew from
    the event a hit reuses.
    """
    if type(reading) is dict and reading.keys() == _BASIC_READING_KEYS:
        fmt, type_name, size, meta = (
            reading["format"], reading["type_name"], reading["size"], reading["meta"]
        )  # fmt: skip
        if (
            type(fmt) is str
            and type(type_name) is str
            and type(size) is int
            and type(meta) is dict
            and not meta
        ):
            basic = (fmt, type_name, size)
            found = _BASIC_LABELS.get(basic)
            if found is None:
                found = reading_label(reading)
                if len(_BASIC_LABELS) >= _BASIC_LABELS_MAX:
                    _BASIC_LABELS.clear()
                _BASIC_LABELS[basic] = found
            return found
    return reading_label(reading)


def _input_formats(state: RunState, name: str, value: Any, found: dict[str, str]) -> None:
    """Add the label of every upstream output in ``value``, named as ``inputs`` are."""
    if isinstance(value, OutputRef):
        found[name] = _output_label(state, state.outputs[value.node_id][value.index])
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _input_formats(state, f"{name}[{i}]", item, found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _input_formats(state, f"{name}.{key}", item, found)


def describe_inputs(state: RunState, node: Node) -> NodeInputs:
    """Describe ``node``'s inputs for its cache key (see the module docstring)."""
    digests: dict[str, Any] = {}
    formats: dict[str, str] = {}
    params: dict[str, Any] = {}
    unhashable: list[str] = []
    flat = True  # every digest and label a str (see NodeInputs.flat)
    # Plain arguments were fingerprinted once, for the node's identity, when the run was
    # planned (pipetrail.execution.node_identity).
    planned = state.identities.params.get(node.id)
    if planned is not None:
        unhashable.extend(state.identities.unhashable.get(node.id, ()))
    for name, value in node.inputs.items():
        if type(value) is OutputRef:  # the most common input: one upstream output
            output = state.outputs[value.node_id][value.index]
            digest = digests[name] = output.digest
            label = formats[name] = output.label or _output_label(state, output)
            if type(digest) is not str or type(label) is not str:
                flat = False
        elif _holds_placeholder(value):
            digests[name] = _input_digest(state, value)
            _input_formats(state, name, value, formats)
            flat = False  # a list or dict of them, or a source: flattened and walked
        elif planned is not None:
            params[name] = planned[name]
        else:
            try:
                params[name] = fingerprint_obj(value)
            except UnhashableValueError as exc:
                params[name] = {"$unhashable": type(value).__qualname__}
                unhashable.append(f"parameter {name!r}: {exc}")
    return NodeInputs(digests, formats, params, unhashable, flat=flat)


def flat_inputs(digests: dict[str, Any]) -> dict[str, str]:
    """Return input digests flattened to one name each (``xs[0]``, ``d.key``)."""
    flat: dict[str, str] = {}
    for name, value in digests.items():
        if isinstance(value, str):
            flat[name] = value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                flat.update(flat_inputs({f"{name}[{i}]": item}))
        elif isinstance(value, dict):
            for key, item in value.items():
                flat.update(flat_inputs({f"{name}.{key}": item}))
    return flat
