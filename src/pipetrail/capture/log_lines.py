"""The stored form of a step's log: one JSON object per line, and reading it back.

A step run's captured output (:mod:`pipetrail.capture.output`) is stored as JSON lines,
one object per line of output, in the order the lines were completed::

    {"timestamp": "2026-05-01T12:00:00.123456Z", "stream": "log", "level": "warning",
     "logger": "train", "event": "loss is NaN", "run_id": "01J...", "step": "train",
     "step_run_id": "01J...", "trace_id": "4bf9...", "span_id": "00f0..."}

``stream`` is ``stdout``, ``stderr`` or ``log``; ``event`` is the line's text (a log
record's message); a log record's line adds ``level``, ``logger``, ``exception`` (the
formatted traceback, when there was one) and its extra fields. The five ids (see
:mod:`pipetrail.capture.log_context`) are those of the step run that wrote the line.
The field names are structlog's (``event``, ``level``, ``logger``, ``timestamp``), so a
log shipper reads these lines as it reads pipetrail's own ``--log-format json`` lines.

Logs stored before this format are text (``[stdout] ...`` lines, see
:data:`pipetrail.capture.output.LOG_FORMAT`); :func:`decode_log` reads both, and
:func:`render_text` gives both back in that text form. Imports only the standard library.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.capture.log_context import LogContext

__all__ = [
    "CONTEXT_FIELDS",
    "decode_log",
    "encode_log",
    "record_fields",
    "render_line",
    "render_text",
]

CONTEXT_FIELDS = ("run_id", "step", "step_run_id", "trace_id", "span_id")
_STANDARD = frozenset(
    {"timestamp", "stream", "level", "logger", "event", "exception", *CONTEXT_FIELDS}
)
_MARKERS = {"stdout": "[stdout] ", "stderr": "[stderr] ", "log": "[log] "}
# "[log] 2024-05-01 12:00:00,123 WARNING train: loss is NaN" (logging's default asctime)
_OLD_LOG = re.compile(
    r"(?P<asctime>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>[^:]*): "
    r"(?P<event>.*)"
)


_FORMATTER = logging.Formatter()

# The attributes every LogRecord has; any other attribute came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"]
)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a log record: level, logger, event, exception, extras.

    A record whose message is a dict (structlog's ``wrap_for_formatter``) gives its
    keys as fields, ``event`` among them.
    """
    fields: dict[str, Any] = {"level": record.levelname.lower(), "logger": record.name}
    if isinstance(record.msg, dict):
        fields.update(record.msg)
        fields.setdefault("event", "")
    else:
        # Set by the formatter that made the text line (no second %-formatting).
        message = getattr(record, "message", None)
        fields["event"] = message if isinstance(message, str) else record.getMessage()
    if record.exc_text:
        fields["exception"] = record.exc_text
    elif record.exc_info and record.exc_info[0] is not None:
        fields["exception"] = _FORMATTER.formatException(record.exc_info)
    attributes = vars(record)
    extra = attributes.keys() - _RECORD_ATTRIBUTES  # most records: none
    if extra:
        for name, value in attributes.items():  # in the order they were given
            if name in extra and name not in fields:
                fields[name] = value
    return fields


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_log(lines: Iterable[dict[str, Any]], context: LogContext | None) -> str:
    """Return the stored form of ``lines`` (from :meth:`CapturedOutput.lines`).

    Args:
        lines: the captured lines; ``timestamp`` in seconds since the epoch.
        context: the ids stamped on every line (None: the ids are null).

    Returns:
        JSON lines ("" for no line); values that are not JSON are stored as their ``str``.
    """
    ids = context.fields() if context is not None else dict.fromkeys(CONTEXT_FIELDS)
    # The ids are the same on every line: encoded once, appended to each line's object.
    tail = "," + _dumps(ids)[1:]
    out = []
    second, prefix = -1, ""
    for line in lines:
        seconds = line["timestamp"]
        whole = int(seconds)
        if whole != second:  # lines of one second share the date and time
            second, prefix = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        micros = min(int((seconds - whole) * 1_000_000), 999_999)
        item: dict[str, Any] = {"timestamp": f"{prefix}.{micros:06d}Z"}
        item.update((k, v) for k, v in line.items() if k != "timestamp" and k not in ids)
        out.append(_dumps(item)[:-1] + tail)
    return "\n".join(out) + "\n" if out else ""


_dumps = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":")).encode


def decode_log(data: bytes) -> list[dict[str, Any]]:
    """Return the lines of a stored log, in the JSON-lines form (old text logs too).

    A line of an old text log has ``stream`` and ``event`` (and ``timestamp``, ``level``
    and ``logger`` for a log record, read from its text); its ids are absent. Lines that
    cannot be read as either form are kept as ``stdout`` text.
    """
    text = data.decode("utf-8", errors="replace")
    if not text.startswith("{"):
        return [_old_line(line) for line in text.splitlines()]
    found = []
    for raw in text.splitlines():
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            item = None
        found.append(item if isinstance(item, dict) else {"stream": "stdout", "event": raw})
    return found


def _old_line(line: str) -> dict[str, Any]:
    for stream, marker in _MARKERS.items():
        if line.startswith(marker):
            item: dict[str, Any] = {"stream": stream, "event": line[len(marker) :]}
            break
    else:
        return {"stream": "stdout", "event": line}
    match = _OLD_LOG.fullmatch(item["event"]) if stream == "log" else None
    if match is not None:
        local = time.strptime(match["asctime"][:19], "%Y-%m-%d %H:%M:%S")
        seconds = time.mktime(local) + int(match["asctime"][20:]) / 1000
        item.update(
            timestamp=_iso(seconds),
            level=match["level"].lower(),
            logger=match["logger"],
            event=match["event"],
        )
    return item


def _asctime(timestamp: str) -> str:
    """Logging's default ``asctime`` (local time, milliseconds) of an ISO UTC timestamp."""
    moment = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    local = moment.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S") + f",{moment.microsecond // 1000:03d}"


def render_line(item: dict[str, Any]) -> str:
    """One stored line as the text log shows it (several text lines for a traceback).

    A log record's extra fields follow its message as ``key=value``.
    """
    stream = item.get("stream", "stdout")
    marker = _MARKERS.get(stream, _MARKERS["stdout"])
    event = str(item.get("event", ""))
    if stream != "log" or "level" not in item:
        return marker + event + "\n"
    try:
        when = _asctime(str(item["timestamp"]))
    except (KeyError, ValueError):
        when = str(item.get("timestamp", ""))
    text = f"{when} {str(item['level']).upper()} {item.get('logger', '')}: {event}"
    extra = [f"{k}={v}" for k, v in item.items() if k not in _STANDARD]
    if extra:  # fields given with extra= or by structlog
        text += " " + " ".join(extra)
    if item.get("exception"):
        text += "\n" + str(item["exception"])
    return "".join(marker + part + "\n" for part in text.split("\n"))


def render_text(data: bytes) -> str:
    """A stored log (either form) as text: ``[stdout] ``, ``[stderr] `` or ``[log] `` lines."""
    text = data.decode("utf-8", errors="replace")
    if not text.startswith("{"):
        return text
    return "".join(render_line(item) for item in decode_log(data))
