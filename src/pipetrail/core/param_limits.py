"""Limits on parameter values: how deep they nest, how much text one holds.

Hostile or broken input (a value nested 5,000 levels deep, megabytes of text, a value
that contains itself) is refused at once with a one-line
:class:`~pipetrail.errors.ParamError` naming where it came from, the parameter and the
limit, instead of exhausting the stack or the memory further on (validation, hashing,
recording). The walk is iterative and visits a shared container again only when it is
reached at a deeper level, so values built from YAML aliases are judged in time
proportional to their distinct containers.

Pure: no I/O. Imports only ``pipetrail.errors``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ParamError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MAX_DEPTH", "MAX_TEXT_BYTES", "check_params_limits", "text_depth", "text_problem"]

#: The deepest nesting of tables and lists a set of params may have, the top-level table
#: included: ``{"a": {"b": [1]}}`` is 3 levels deep.
MAX_DEPTH = 100
#: The most text one parameter value may hold (bytes of UTF-8).
MAX_TEXT_BYTES = 1024 * 1024

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_CONTAINERS = (dict, list, tuple)


def text_depth(text: str, *, limit: int = MAX_DEPTH) -> int | None:
    """Return the offset in JSON-like ``text`` where brackets nest deeper than ``limit``.

    Brackets inside double-quoted strings do not count. Returns None when the text stays
    within the limit. A parser may recurse once per level; this does not.
    """
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        mark = token.group()
        if mark in "[{":
            depth += 1
            if depth > limit:
                return token.start()
        elif mark in "]}":
            depth -= 1
    return None


def text_problem(text: str | bytes, levels_left: int = MAX_DEPTH) -> str | None:
    """Why a text value is past the limits, as the end of a sentence; None when it is not.

    Args:
        text: the value.
        levels_left: how many bracket levels JSON in it may have before the params as a
            whole would be nested deeper than :data:`MAX_DEPTH`.
    """
    if len(text) * 4 > MAX_TEXT_BYTES:  # a UTF-8 character takes at most 4 bytes
        size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        if size > MAX_TEXT_BYTES:
            return (
                f"is {size / 1024 / 1024:.1f} MiB of text, over the limit of "
                f"{MAX_TEXT_BYTES // 1024 // 1024} MiB for a value; keep large data in a file "
                "the pipeline reads and pass its path"
            )
    if (
        isinstance(text, str)
        and text.lstrip()[:1] in ("[", "{")
        and text_depth(text, limit=levels_left) is not None
    ):
        return (
            f"holds JSON nested deeper than the limit of {MAX_DEPTH} levels; flatten it, or "
            "keep such data in a file the pipeline reads"
        )
    return None


def check_params_limits(given: Mapping[str, Any], *, origin: str) -> None:
    """Refuse params past the limits: nested too deep, or a text value too long.

    Args:
        given: the params, nested or with dotted keys (each part counts as a level).
        origin: where they came from, for the message (a file, or the overrides).

    Raises:
        ParamError: naming ``origin``, the parameter (its key path) and the limit.
    """
    for key, value in given.items():
        level = 2 + key.count(".") if isinstance(key, str) else 2
        if level > MAX_DEPTH:
            reason = f"has {level - 1} dotted parts, deeper than the limit of {MAX_DEPTH} levels"
            raise ParamError(
                f"{origin}: parameter {_shown((key,))!r} {reason}; shorten the key",
                problems=((key, reason),),
            )
        found = _first_problem(value, level)
        if found is not None:
            path, reason = found
            at = f" (at {_shown((key, *path))!r})" if path else ""
            head, _, fix = reason.partition("; ")
            raise ParamError(
                f"{origin}: parameter {_shown((key,))!r} {head}{at}; {fix}",
                problems=((key, head + at),),
            )


# A walk entry: the value, its level, and the entry of its parent with the key to it
# (a linked path, turned into a tuple only for the message).
_Entry = tuple[Any, int, Any, Any]


def _first_problem(value: Any, level: int) -> tuple[tuple[Any, ...], str] | None:
    """The key path to the first place past a limit, with the reason; None if none is.

    ``value`` sits at ``level`` (the top-level table is level 1). A value that contains
    itself comes back deeper and deeper, so it is reported as nested too deep.
    """
    if isinstance(value, str | bytes):
        reason = text_problem(value, MAX_DEPTH - level + 1)
        return None if reason is None else ((), reason)
    if not isinstance(value, _CONTAINERS):
        return None
    deepest: dict[int, int] = {}
    stack: list[_Entry] = [(value, level, None, None)]
    while stack:
        entry = stack.pop()
        item, depth, _, _ = entry
        if depth > MAX_DEPTH:
            return _path(entry), (
                f"is nested deeper than the limit of {MAX_DEPTH} levels; flatten it, or keep "
                "such data in a file the pipeline reads"
            )
        if deepest.get(id(item), 0) >= depth:
            continue
        deepest[id(item)] = depth
        children = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in children:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1, entry, key))
            elif isinstance(child, str | bytes) and (
                len(child) * 4 > MAX_TEXT_BYTES or child[:1] in ("[", "{", " ", "\n", "\t")
            ):
                # A text's outer bracket would sit one level below its container.
                reason = text_problem(child, MAX_DEPTH - depth)
                if reason is not None:
                    return (*_path(entry), key), reason
    return None


def _path(entry: _Entry) -> tuple[Any, ...]:
    parts: list[Any] = []
    while entry[2] is not None:
        parts.append(entry[3])
        entry = entry[2]
    return tuple(reversed(parts))


def _shown(path: tuple[Any, ...]) -> str:
    """A key path as text (``model.layers[2].size``), cut short when long."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    text = text.lstrip(".")
    return text if len(text) <= 40 else text[:37] + "..."
