"""Structured logs: pipetrail's own log lines, rendered by structlog.

Owns :func:`configure_logging`, what ``pipetrail --log-format json|console`` installs: one
handler on the root logger whose lines are rendered by structlog, each carrying the run
id, step, step-run id, trace id and span id of the run or step it was written in (see
:mod:`pipetrail.capture.log_context`). The steps' own output is stored structured by
output capture (:mod:`pipetrail.capture.log_lines`) and read back by
:mod:`pipetrail.lineage.readout`.

structlog is imported by :func:`configure_logging` only (it is in the ``observability``
extra, and importing it costs more than pipetrail's whole start-up): without
``--log-format``, log records go where Python's logging sends them by default.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from pipetrail.capture.log_context import current_context
from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping

__all__ = ["LOG_FORMATS", "configure_logging", "logging_kept"]

LOG_FORMATS = ("console", "json")
_INSTALL = "pip install 'pipetrail[observability]'"


def _add_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Structlog processor: the ids of the run or step the line was written in."""
    context = current_context()
    if context is not None:
        for key, value in context.fields().items():
            event.setdefault(key, value)
    return event


class _StructuredHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (recognized to replace it)."""


def configure_logging(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """Render every log record that reaches the root logger as a structured line.

    Replaces a handler installed by an earlier call. Records keep the levels their
    loggers let through (WARNING and above by default).

    Args:
        log_format: ``json`` (one JSON object per line) or ``console`` (aligned
            ``key=value`` text for people).
        stream: where lines go (default: standard error).

    Returns:
        The installed handler.

    Raises:
        ProjectError: an unknown format, or structlog is not installed.
    """
    if log_format not in LOG_FORMATS:
        raise ProjectError(
            f"unknown log format {log_format!r}; choose one of {', '.join(LOG_FORMATS)}"
        )
    try:
        import structlog
    except ImportError as exc:
        raise ProjectError(f"--log-format {log_format} needs structlog; {_INSTALL}") from exc
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    chain: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_context,
    ]
    if log_format == "json":
        chain.append(structlog.processors.format_exc_info)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StructuredHandler)]:
        root.removeHandler(old)
    handler = _StructuredHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    return handler


def logging_kept() -> Callable[[], None]:
    """Note the root logger's handlers and level; return what puts them back.

    For a command that calls :func:`configure_logging` for its own duration: calling the
    returned function removes the handlers added since, adds back those
    removed since (an earlier structured handler that :func:`configure_logging` replaced)
    and restores the level.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def restore() -> None:
        for added in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(added)
            added.flush()  # not closed: its stream (standard error) is not its own
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)

    return restore
