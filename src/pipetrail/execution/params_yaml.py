"""Reading a YAML params file safely: PyYAML's safe loader, with limits.

The loader refuses a key given twice in one mapping, values nested deeper than
:data:`~pipetrail.core.param_limits.MAX_DEPTH` levels, aliases that refer to the node holding
them, and aliases that repeat more than :data:`MAX_ALIAS_NODES` nodes in all: an alias
bomb ("billion laughs") is refused while the document is composed, before any value is
built, in time and memory proportional to the file. Errors are
:class:`~pipetrail.errors.ParamsFileError` naming the file, line and column.

PyYAML is imported on first use. Imports ``core`` and ``pipetrail.errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.core.param_limits import MAX_DEPTH
from pipetrail.errors import ParamsFileError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MAX_ALIAS_NODES", "load_yaml"]

#: How many nodes YAML aliases may repeat in one file, all aliases together.
MAX_ALIAS_NODES = 100_000


def load_yaml(path: Path, text: str) -> Any:
    """Parse the YAML ``text`` of the params file ``path``.

    Raises:
        ParamsFileError: the text is malformed or past a limit (naming line and column).
    """
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader
    except _YamlLimitError as exc:
        raise ParamsFileError(
            f"params file {path}, line {exc.line}, column {exc.column}: {exc.reason}",
            path=str(path),
            line=exc.line,
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f", line {line}, column {mark.column + 1}" if mark is not None else ""
        context = exc.context or ""
        if context and exc.context_mark is not None and exc.context_mark is not mark:
            opened = exc.context_mark
            context += f" (line {opened.line + 1}, column {opened.column + 1})"
        problem = " ".join(p for p in (context, exc.problem) if p) or str(exc)
        raise ParamsFileError(
            f"params file {path}{where}: malformed YAML: {problem}",
            path=str(path),
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise ParamsFileError(
            f"params file {path}: malformed YAML: {exc}", path=str(path)
        ) from None


class _YamlLimitError(Exception):
    """A YAML document goes past a limit; ``line`` and ``column`` are 1-based."""

    def __init__(self, reason: str, mark: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = mark.line + 1
        self.column = mark.column + 1


def _unique_key_loader() -> Any:
    """A PyYAML safe loader that refuses a repeated key and input past the limits.

    PyYAML keeps the last value of a repeated key, which YAML itself forbids; merge keys
    (``<<``) still work, and explicit keys still override merged ones. While the document
    is composed (before any value is built) the loader counts the levels of nesting, and
    the nodes each alias repeats: an alias to a node that holds nodes counts them all, so
    nine aliases to nine aliases to ... (a "billion laughs") stop at the budget at once.
    """
    import yaml

    class LimitedComposer(yaml.SafeLoader):
        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self._levels = 0
            self._repeated = 0
            self._open: set[str] = set()
            self._sizes: dict[int, tuple[int, int]] = {}

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML is untyped
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in self._open:
                    raise _YamlLimitError(
                        f"alias *{event.anchor} refers to the node that holds it; a params "
                        "file may not refer to itself",
                        event.start_mark,
                    )
                node = super().compose_node(parent, index)
                size, depth = self._measure(node)
                self._repeated += size
                if self._repeated > MAX_ALIAS_NODES:
                    raise _YamlLimitError(
                        f"YAML aliases repeat more than {MAX_ALIAS_NODES} values in all (the "
                        "limit; an alias bomb?); write the values out, or use fewer aliases",
                        event.start_mark,
                    )
                self._check_levels(self._levels + depth, event.start_mark)
                return node
            container = isinstance(event, yaml.CollectionStartEvent)
            self._levels += container
            self._check_levels(self._levels, event.start_mark)
            if event.anchor is not None:
                self._open.add(event.anchor)
            try:
                return super().compose_node(parent, index)
            finally:
                self._levels -= container
                self._open.discard(event.anchor)

        def _check_levels(self, levels: int, mark: Any) -> None:
            if levels > MAX_DEPTH:
                raise _YamlLimitError(
                    f"values are nested deeper than the limit of {MAX_DEPTH} levels; flatten "
                    "them, or keep such data in a file the pipeline reads",
                    mark,
                )

        def _measure(self, node: Any) -> tuple[int, int]:
            """The nodes ``node`` stands for, aliases expanded, and its levels of nesting."""
            stack = [(node, False)]
            while stack:
                item, children_done = stack.pop()
                if id(item) in self._sizes:
                    continue
                if isinstance(item, yaml.ScalarNode):
                    self._sizes[id(item)] = (1, 0)
                    continue
                children = _children(item)
                if children_done:
                    measured = [self._sizes[id(child)] for child in children]
                    self._sizes[id(item)] = (
                        1 + sum(size for size, _ in measured),
                        1 + max((depth for _, depth in measured), default=0),
                    )
                else:
                    stack.append((item, True))
                    stack.extend((child, False) for child in children)
            return self._sizes[id(node)]

    def _children(node: Any) -> list[Any]:
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return list(node.value)

    class UniqueKeyLoader(LimitedComposer):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:  # an unhashable key; the base class reports it
                        continue
                    if first is not None:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"key {key!r} appears twice in one mapping (first on line "
                            f"{first}); keep one of them",
                            key_node.start_mark,
                        )
                    seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader
