"""The pipeline graph: nodes (step invocations), their inputs and outputs, and its builder.

Calling steps inside a ``@pipeline`` function records :class:`Node` objects in the active
:class:`GraphBuilder`; each call returns :class:`OutputRef` placeholders that later calls
take as inputs. Because the pipeline function is plain Python running with real parameter
values, loops fan out and helper functions compose naturally. Pure: no I/O here.
"""

from __future__ import annotations

import abc
import contextvars
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.core.classification import PUBLIC, validate_label
from pipetrail.errors import DefinitionError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from pipetrail.core.step import Step

__all__ = [
    "GraphBuilder",
    "Node",
    "OutputRef",
    "PipelineGraph",
    "SourceRef",
    "current_builder",
    "iter_refs",
    "source",
    "step_base",
]

_BUILDER: contextvars.ContextVar[GraphBuilder | None] = contextvars.ContextVar(
    "pipetrail_graph_builder", default=None
)


def current_builder() -> GraphBuilder | None:
    """Return the graph builder of the pipeline being built, if any."""
    return _BUILDER.get()


class _Placeholder(abc.ABC):
    """What a pipeline function holds instead of a value while the graph is built.

    A placeholder has no value yet, so every use that needs one (truth, ``len``,
    indexing, ``in``, arithmetic, comparisons, text, numbers, iteration) raises a
    :class:`DefinitionError` saying what was done, to which output or source, and how to
    fix it. Placeholders of the same kind compare by identity, so they can be dict keys;
    ``repr()`` works, for debugging.
    """

    __slots__ = ()

    @abc.abstractmethod
    def _subject(self) -> str:
        """What the placeholder stands for, as the start of a sentence."""

    @abc.abstractmethod
    def _identity(self) -> tuple[Any, ...]:
        """The fields two placeholders of one kind are equal by."""

    def _fix(self) -> str:
        return "do this inside a step, which receives the real value"

    def _misuse(self, what: str) -> DefinitionError:
        return DefinitionError(
            f"{self._subject()} has no value while the pipeline is being built, so {what}; "
            f"{self._fix()}"
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._identity() == other._identity()
        raise self._misuse("it cannot be compared with '=='")

    def __ne__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._identity() != other._identity()
        raise self._misuse("it cannot be compared with '!='")

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._identity()))

    def __bool__(self) -> bool:
        raise self._misuse("it cannot be used in a condition")

    def __len__(self) -> int:
        raise self._misuse("len() cannot be taken")

    def __contains__(self, item: object) -> bool:
        raise self._misuse(f"'{item!r} in ...' cannot be tested")

    def __getitem__(self, key: object) -> Any:
        raise self._misuse(f"it cannot be indexed ([{key!r}])")

    def __setitem__(self, key: object, value: object) -> None:
        raise self._misuse(f"an item cannot be set ([{key!r}] = ...)")

    def __delitem__(self, key: object) -> None:
        raise self._misuse(f"an item cannot be deleted ([{key!r}])")

    def __iter__(self) -> Iterator[Any]:
        raise self._misuse("it cannot be iterated or unpacked")

    def __reversed__(self) -> Iterator[Any]:
        raise self._misuse("it cannot be reversed")

    def __str__(self) -> str:
        raise self._misuse("it cannot be turned into text (str(), f-strings, print)")

    def __format__(self, spec: str) -> str:
        raise self._misuse("it cannot be turned into text (str(), f-strings, print)")

    def __bytes__(self) -> bytes:
        raise self._misuse("bytes() cannot be taken")


def _refuse(what: str) -> Any:
    def refuse(self: _Placeholder, *other: object) -> Any:
        raise self._misuse(what)

    refuse.__doc__ = f"Refused: a placeholder has no value, so {what}."
    return refuse


_OPERATORS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "matmul": "@",
    "truediv": "/",
    "floordiv": "//",
    "mod": "%",
    "divmod": "divmod()",
    "pow": "**",
    "lshift": "<<",
    "rshift": ">>",
    "and": "&",
    "xor": "^",
    "or": "|",
}
for _name, _symbol in _OPERATORS.items():
    for _method in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        setattr(_Placeholder, _method, _refuse(f"it cannot be used with '{_symbol}'"))
for _name, _what in {
    "lt": "it cannot be compared with '<'",
    "le": "it cannot be compared with '<='",
    "gt": "it cannot be compared with '>'",
    "ge": "it cannot be compared with '>='",
    "neg": "it cannot be negated",
    "pos": "unary '+' cannot be applied",
    "invert": "'~' cannot be applied",
    "abs": "abs() cannot be taken",
    "int": "int() cannot be taken",
    "float": "float() cannot be taken",
    "complex": "complex() cannot be taken",
    "index": "it cannot be used as an index or a slice bound",
    "round": "round() cannot be taken",
    "trunc": "math.trunc() cannot be taken",
    "floor": "math.floor() cannot be taken",
    "ceil": "math.ceil() cannot be taken",
}.items():
    setattr(_Placeholder, f"__{_name}__", _refuse(_what))


@dataclass(frozen=True, eq=False)
class SourceRef(_Placeholder):
    """A raw input from outside the pipeline (a file or a folder), observed at run start.

    Attributes:
        path: the path as given (relative paths resolve against the project root).
        by_reference: record digests only instead of copying the content into the store.
        allow_outside: accept a path (or symlinks inside a folder) leading outside the
            project root.
        classification: its label (see :mod:`pipetrail.core.classification`), None
            for ``public``.
    """

    path: str
    by_reference: bool = False
    allow_outside: bool = False
    classification: str | None = None

    def _subject(self) -> str:
        return f"source({self.path!r}) is a placeholder: it"

    def _identity(self) -> tuple[Any, ...]:
        return (self.path, self.by_reference, self.allow_outside, self.classification)

    def _fix(self) -> str:
        return "pass it to a step, which receives the real path when it runs"

    def __fspath__(self) -> str:
        raise DefinitionError(
            f"source({self.path!r}) is a placeholder while the pipeline is being built; pass "
            "it to a step, which receives the real path when it runs"
        )


def source(
    path: str | os.PathLike[str],
    *,
    by_reference: bool = False,
    allow_outside: bool = False,
    classification: str | None = None,
) -> SourceRef:
    """Declare a raw input, a file or a folder, that a step reads.

    It is observed when the run starts: its digest, size and modification time are
    recorded (for a folder, a manifest of every file's digest and size, so any change to
    any file changes the source's digest) and, unless ``by_reference=True``, the content is
    copied into the store so the run stays reproducible after the data changes. Unchanged
    folders are re-observed from a stat cache. The step receives a ``Path``.

    Args:
        path: path to the file or folder, relative to the project root or absolute.
        by_reference: keep only digests (for large external data); a later reproduction
            verifies them again.
        allow_outside: accept a path outside the project root, or a folder whose symlinks
            lead outside it; refused by default.
        classification: its label, e.g. ``"pii"`` (docs/data-handling.md); sensitive
            content is stored encrypted and recorded under a keyed digest, and what
            steps derive from it inherits the label.

    Returns:
        A placeholder to pass to a step.

    Raises:
        DefinitionError: an empty path or an unknown label.
    """
    text = os.fspath(path)
    if not text:
        raise DefinitionError("source() needs a non-empty path")
    # An s3:// URL stays as written (a Path would fold its "//").
    posix = text if text.startswith("s3://") else Path(text).as_posix()
    label = None
    if classification is not None:
        label = validate_label(classification, f"source({posix!r})")
        label = None if label == PUBLIC else label
    return SourceRef(
        path=posix, by_reference=by_reference, allow_outside=allow_outside, classification=label
    )


@dataclass(frozen=True, eq=False, init=False)
class OutputRef(_Placeholder):
    """A placeholder for one output of a node, usable as another step's input."""

    node_id: str
    index: int
    name: str

    def __init__(self, node_id: str, index: int, name: str) -> None:
        # What the generated __init__ does (one object.__setattr__ per field, since the
        # class is frozen) in one step: a pipeline makes one per call of a step.
        self.__dict__.update(node_id=node_id, index=index, name=name)

    def _subject(self) -> str:
        return f"the output {self.name!r} of step {self.node_id!r}"

    def _identity(self) -> tuple[Any, ...]:
        return (self.node_id, self.index, self.name)

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"{self._subject()} has no value while the pipeline is being built, so it "
            "cannot be used in a condition; branch on parameters instead, or move the logic "
            "into a step"
        )

    def __iter__(self) -> Iterator[Any]:
        raise DefinitionError(
            f"{self._subject()} has no value while the pipeline is being built, so it cannot "
            f"be iterated or unpacked: step {self.node_id!r} has a single output; declare "
            "several with a tuple[...] return annotation or @step(outputs=(...)) to unpack "
            "them, or loop over the value inside a step"
        )

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        raise self._misuse(f"'.{item}' cannot be used here")


class MultiOutput(tuple[OutputRef, ...]):
    """The outputs of a step that returns several values; unpack or index it."""

    __slots__ = ()

    def __getattr__(self, item: str) -> OutputRef:
        for ref in self:
            if ref.name == item:
                return ref
        raise AttributeError(item)


@dataclass
class Node:
    """One invocation of a step inside a pipeline.

    Attributes:
        id: unique within the run: the step name, ``name[1]`` for later unnamed calls,
            ``name[NODE_NAME]`` for a call named with :meth:`Step.named`, prefixed
            ``outer/`` inside nested pipelines.
        step: the step invoked.
        inputs: parameter name -> an :class:`OutputRef`, a :class:`SourceRef`, or a
            literal value (a parameter).
        output_names: the names of the node's outputs.
        name: the name given at the call site, or None.
    """

    id: str
    step: Step[..., Any]
    inputs: dict[str, Any]
    output_names: tuple[str, ...]
    name: str | None = None
    # What upstream() found: a node's inputs are not changed once it is built, and a
    # run asks several times per node (planning, recording, scheduling, releasing).
    _upstream: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def base(self) -> str:
        """The step's place in the pipeline: nested pipeline names and step name.

        The same for every call of the step at that place, whatever its position or
        name (``outer/train`` for ``outer[1]/train[2]``).
        """
        return step_base(self.id)

    def upstream(self) -> list[str]:
        """Return the ids of the nodes this node reads from (in parameter order)."""
        found = self._upstream
        if found is None:
            seen: list[str] = []
            for value in self.inputs.values():
                for ref in iter_refs(value):
                    if ref.node_id not in seen:
                        seen.append(ref.node_id)
            found = self._upstream = tuple(seen)
        return list(found)


def iter_refs(value: Any) -> Iterator[OutputRef]:
    """Yield the step outputs an input holds: itself, or inside lists, tuples and dicts."""
    if isinstance(value, OutputRef):
        yield value
        return
    if isinstance(value, list | tuple):
        items: Iterable[Any] = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return
    for item in items:  # a member that is a plain value needs no generator of its own
        if isinstance(item, OutputRef):
            yield item
        elif isinstance(item, list | tuple | dict):
            yield from iter_refs(item)


@dataclass
class PipelineGraph:
    """A built pipeline: nodes in a valid execution order, and what it returns."""

    name: str
    nodes: dict[str, Node] = field(default_factory=dict)
    result: Any = None

    def downstream_of(self, node_id: str) -> set[str]:
        """Return the ids of every node that depends on ``node_id``, directly or not."""
        found: set[str] = set()
        frontier = [node_id]
        consumers: dict[str, list[str]] = {}
        for node in self.nodes.values():
            for up in node.upstream():
                consumers.setdefault(up, []).append(node.id)
        while frontier:
            for child in consumers.get(frontier.pop(), []):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
        return found

    def sources(self) -> list[SourceRef]:
        """Return every distinct source the graph reads, in first-use order."""
        found: list[SourceRef] = []
        for node in self.nodes.values():
            for value in node.inputs.values():
                for src in _iter_sources(value):
                    if src not in found:
                        found.append(src)
        return found


def _iter_sources(value: Any) -> Iterator[SourceRef]:
    if isinstance(value, SourceRef):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _iter_sources(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _iter_sources(item)


class GraphBuilder:
    """Collects nodes while a pipeline function runs; use as a context manager."""

    def __init__(self, name: str) -> None:
        self.graph = PipelineGraph(name=name)
        self._prefix: list[str] = []
        self._counts: dict[str, int] = {}
        self._token: contextvars.Token[GraphBuilder | None] | None = None

    def __enter__(self) -> GraphBuilder:
        self._token = _BUILDER.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _BUILDER.reset(self._token)
            self._token = None

    def nested(self, name: str) -> _Nested:
        """Return a context in which node ids are prefixed with ``name/``."""
        return _Nested(self, name)

    def add_step(
        self,
        step: Step[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str | None = None,
    ) -> Any:
        """Record an invocation of ``step`` and return its output placeholder(s).

        Args:
            step: the step called.
            args: its positional arguments.
            kwargs: its keyword arguments.
            name: the node's name (:meth:`Step.named`, validated there); None numbers
                the call among the unnamed calls of the step.

        Raises:
            DefinitionError: the arguments do not fit, or ``name`` is already taken.
        """
        inputs = step.bind(args, kwargs)
        nodes = self.graph.nodes
        for param_name, value in inputs.items():
            # One upstream output (the most common argument) is checked here, at once.
            if type(value) is not OutputRef or value.node_id not in nodes:
                _check_input(step.name, param_name, value, self.graph)
        base = "/".join([*self._prefix, step.name]) if self._prefix else step.name
        if name is not None:
            node_id = f"{base}[{name}]"
            if node_id in self.graph.nodes:
                raise DefinitionError(
                    f"pipeline {self.graph.name!r} calls step {step.name!r} twice with the "
                    f"node name {name!r}; give each call of a step its own name"
                )
        else:
            # Named calls do not count: naming one call never renumbers the others.
            count = self._counts.get(base, 0)
            self._counts[base] = count + 1
            node_id = base if count == 0 else f"{base}[{count}]"
        node = Node(
            id=node_id, step=step, inputs=inputs, output_names=step.options.outputs, name=name
        )
        nodes[node_id] = node
        names = node.output_names
        if len(names) == 1:
            return OutputRef(node_id, 0, names[0])
        return MultiOutput(OutputRef(node_id, i, name) for i, name in enumerate(names))


class _Nested:
    def __init__(self, builder: GraphBuilder, name: str) -> None:
        self.builder = builder
        self.name = name

    def __enter__(self) -> None:
        prefix = "/".join([*self.builder._prefix, self.name])  # noqa: SLF001 - same module
        count = self.builder._counts.get(prefix + "/", 0)  # noqa: SLF001
        self.builder._counts[prefix + "/"] = count + 1  # noqa: SLF001
        self.builder._prefix.append(self.name if count == 0 else f"{self.name}[{count}]")  # noqa: SLF001

    def __exit__(self, *exc: object) -> None:
        self.builder._prefix.pop()  # noqa: SLF001


def step_base(node_id: str) -> str:
    """Return a node id without call positions or names: ``a[1]/b[lr]`` -> ``a/b``."""
    if "/" not in node_id:  # a node outside nested pipelines: one part
        return node_id.split("[", 1)[0]
    return "/".join(part.split("[", 1)[0] for part in node_id.split("/"))


def _check_input(step_name: str, param: str, value: Any, graph: PipelineGraph) -> None:
    for ref in iter_refs(value):
        if ref.node_id not in graph.nodes:
            raise DefinitionError(
                f"step {step_name!r} parameter {param!r} reads an output of {ref.node_id!r}, "
                "which belongs to a different pipeline build; call both steps in the same "
                "pipeline"
            )
