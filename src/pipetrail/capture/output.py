"""Output capture: one ordered text log of a block's stdout, stderr and logging records.

Owns :func:`capture_output` and :class:`CapturedOutput`. While a capture is active,
``sys.stdout`` and ``sys.stderr`` are replaced by taps that copy each completed line into
the log (and pass the text through to the original stream when ``tee`` is on), and a
handler on the root logger copies every logging record. Imports only the standard
library.

Log format, one entry per line, in the order lines were completed::

    [stdout] epoch 1 done
    [log] 2024-05-01 12:00:00,123 WARNING train: loss is NaN
    [stderr] 50%|#####     | 5/10

What is not captured: writes to the file descriptors themselves (C extensions,
subprocesses, ``sys.stdout.buffer``), which go straight to the original streams.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO, cast

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

__all__ = ["CapturedOutput", "LOG_FORMAT", "OutputCapture", "capture_output"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FORMATTER = logging.Formatter(LOG_FORMAT)
_STDOUT = "[stdout] "
_STDERR = "[stderr] "
_LOG = "[log] "


class _Transcript:
    """The shared, lock-protected log that taps and the logging handler append to."""

    __slots__ = ("_lines", "_lock", "_pending")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []
        # Per stream, the text written after its last newline.
        self._pending = {_STDOUT: "", _STDERR: ""}

    def add_stream(self, marker: str, text: str) -> None:
        with self._lock:
            pending = self._pending[marker] + text
            if "\n" in pending:
                *complete, pending = pending.split("\n")
                self._lines.extend(marker + _visible(line) + "\n" for line in complete)
            # Keep only what follows the last carriage return, so a progress bar that
            # redraws one line thousands of times does not grow without bound. A
            # trailing "\r" is kept: it may be the first half of "\r\n".
            cut = pending.rfind("\r", 0, len(pending) - 1)
            self._pending[marker] = pending[cut + 1 :] if cut >= 0 else pending

    def add_log(self, text: str) -> None:
        with self._lock:
            self._lines.extend(_LOG + line + "\n" for line in text.split("\n"))

    def close(self) -> None:
        """Turn unfinished lines into lines, so they are not lost."""
        with self._lock:
            self._lines.extend(self._unfinished())
            self._pending = {_STDOUT: "", _STDERR: ""}

    def render(self) -> str:
        with self._lock:
            return "".join(self._lines) + "".join(self._unfinished())

    def is_empty(self) -> bool:
        with self._lock:
            return not self._lines and not any(self._pending.values())

    def _unfinished(self) -> list[str]:
        return [marker + _visible(text) + "\n" for marker, text in self._pending.items() if text]


def _visible(line: str) -> str:
    """Return what a terminal shows of a line redrawn with carriage returns."""
    line = line.rstrip("\r")
    return line[line.rfind("\r") + 1 :]


class CapturedOutput:
    """The interleaved log of one :func:`capture_output` block.

    Readable during the block (a snapshot so far) and after it (complete; an unfinished
    last line of a stream is ended with a newline).
    """

    __slots__ = ("_transcript",)

    def __init__(self, transcript: _Transcript) -> None:
        self._transcript = transcript

    def text(self) -> str:
        """Return the log: one ``[stdout] ``, ``[stderr] `` or ``[log] `` line per line."""
        return self._transcript.render()

    @property
    def is_empty(self) -> bool:
        """Whether nothing was written or logged."""
        return self._transcript.is_empty()

    def __repr__(self) -> str:
        return f"<CapturedOutput {len(self.text())} chars>"


class _StreamTap:
    """Stands in for ``sys.stdout``/``sys.stderr`` while a capture is active.

    After the capture ends it keeps forwarding to the original stream, for objects that
    kept a reference to it (a ``logging.StreamHandler`` created inside the block).
    """

    def __init__(
        self, original: TextIO | None, transcript: _Transcript, marker: str, *, tee: bool
    ) -> None:
        self.original = original
        self._transcript = transcript
        self._marker = marker
        self._tee = tee and original is not None
        self.active = True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.original is not None and (self._tee or not self.active):
            self.original.write(text)
        if self.active and text:
            self._transcript.add_stream(self._marker, text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.original is not None and (self._tee or not self.active):
            self.original.flush()

    def isatty(self) -> bool:
        # Report a terminal only when the text really reaches one, so libraries do not
        # put colour codes and cursor movements into a log nobody sees live.
        return (
            self.original is not None and (self._tee or not self.active) and self.original.isatty()
        )

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        # encoding, errors, fileno, buffer, name...: those of the original stream.
        if name.startswith("_") or name == "original":
            raise AttributeError(name)
        return getattr(self.original, name)


class _LevelGate(logging.Filter):
    """Keeps other handlers seeing only what they saw before the root level was lowered."""

    def __init__(self, original_root_level: int) -> None:
        super().__init__()
        self.original_root_level = original_root_level

    def filter(self, record: logging.LogRecord) -> bool:
        return _enabled_before(record, self.original_root_level)


def _logger_for(name: str) -> logging.Logger:
    logger = logging.root.manager.loggerDict.get(name)
    return logger if isinstance(logger, logging.Logger) else logging.root


def _enabled_before(record: logging.LogRecord, original_root_level: int) -> bool:
    """Whether the record's logger was enabled for it before the root level changed."""
    logger: logging.Logger | None = _logger_for(record.name)
    while logger is not None and logger is not logging.root:
        if logger.level != logging.NOTSET:
            return record.levelno >= logger.level
        logger = logger.parent
    return record.levelno >= original_root_level


def _would_reach_last_resort(record: logging.LogRecord) -> bool:
    """Whether logging's last-resort handler would print the record without us."""
    last_resort = logging.lastResort
    if last_resort is None or record.levelno < last_resort.level:
        return False
    logger: logging.Logger | None = _logger_for(record.name)
    while logger is not None:
        if any(not isinstance(handler, _CaptureHandler) for handler in logger.handlers):
            return False
        if not logger.propagate:
            break
        logger = logger.parent
    return True


class _CaptureHandler(logging.Handler):
    """Copies records into one capture; only the innermost active capture's handler runs."""

    def __init__(
        self,
        transcript: _Transcript,
        *,
        tee: bool,
        parent: _CaptureHandler | None,
        console: TextIO | None,
        original_root_level: int,
    ) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(_FORMATTER)
        self.transcript = transcript
        self.tee = tee
        self.parent = parent
        self.console = console
        self.original_root_level = original_root_level
        self.suspended = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.suspended:
            return
        try:
            self.deliver(self.format(record))
            if (
                self.tee
                and self.console is not None
                and logging.lastResort is not None
                and _enabled_before(record, self.original_root_level)
                and _would_reach_last_resort(record)
            ):
                # Without a capture this record would have been printed by logging's
                # last-resort handler; tee means the console must look the same.
                self.console.write(logging.lastResort.format(record) + "\n")
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - the logging.Handler contract: report, never raise
            self.handleError(record)

    def deliver(self, text: str) -> None:
        self.transcript.add_log(text)
        if self.tee and self.parent is not None:
            self.parent.deliver(text)


class OutputCapture:
    """The context manager returned by :func:`capture_output`; single use."""

    __slots__ = (
        "_gate",
        "_gated",
        "_handler",
        "_parent",
        "_saved_level",
        "_saved_stderr",
        "_saved_stdout",
        "_taps",
        "_tee",
        "_transcript",
    )

    def __init__(self, *, tee: bool) -> None:
        self._tee = tee
        self._transcript: _Transcript | None = None
        self._handler: _CaptureHandler | None = None
        self._parent: _CaptureHandler | None = None
        self._gate: _LevelGate | None = None
        self._gated: list[logging.Handler] = []
        self._taps: tuple[_StreamTap, _StreamTap] | None = None
        self._saved_level = logging.NOTSET
        self._saved_stdout: TextIO = sys.stdout
        self._saved_stderr: TextIO = sys.stderr

    def __enter__(self) -> CapturedOutput:
        if self._transcript is not None:
            raise RuntimeError("an OutputCapture is single use; call capture_output() again")
        transcript = self._transcript = _Transcript()
        root = logging.getLogger()
        self._saved_level = root.level
        self._parent = next(
            (
                handler
                for handler in reversed(root.handlers)
                if isinstance(handler, _CaptureHandler) and not handler.suspended
            ),
            None,
        )
        self._saved_stdout, self._saved_stderr = sys.stdout, sys.stderr
        console = self._saved_stderr
        while isinstance(console, _StreamTap):
            console = console.original
        self._handler = _CaptureHandler(
            transcript,
            tee=self._tee,
            parent=self._parent,
            console=console,
            original_root_level=(
                self._parent.original_root_level if self._parent else self._saved_level
            ),
        )
        root.addHandler(self._handler)
        if self._parent is not None:
            self._parent.suspended = True
        if self._saved_level != logging.NOTSET:
            # Lowering the root level lets records below it reach our handler; the gate
            # keeps every other handler's output exactly as it was.
            self._gate = _LevelGate(self._saved_level)
            self._gated = _gateable_handlers()
            for handler in self._gated:
                handler.addFilter(self._gate)
            root.setLevel(logging.NOTSET)
        self._taps = (
            _StreamTap(self._saved_stdout, transcript, _STDOUT, tee=self._tee),
            _StreamTap(self._saved_stderr, transcript, _STDERR, tee=self._tee),
        )
        sys.stdout, sys.stderr = cast("TextIO", self._taps[0]), cast("TextIO", self._taps[1])
        return CapturedOutput(transcript)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Undo __enter__, streams first. Nothing here raises, so everything is restored
        # also when the block raised.
        sys.stdout, sys.stderr = self._saved_stdout, self._saved_stderr
        if self._taps is not None:
            for tap in self._taps:
                tap.active = False
        root = logging.getLogger()
        # A block that set the root level itself keeps its choice.
        if self._gate is not None:
            if root.level == logging.NOTSET:
                root.setLevel(self._saved_level)
            for handler in self._gated:
                handler.removeFilter(self._gate)
            self._gated.clear()
        if self._handler is not None:
            root.removeHandler(self._handler)
        if self._parent is not None:
            self._parent.suspended = False
        if self._transcript is not None:
            self._transcript.close()


def _gateable_handlers() -> list[logging.Handler]:
    """Every handler in the logger tree that could output something, except ours."""
    handlers = list(logging.root.handlers)
    # Runs at every capture: ~50 ns per logger. The tree also holds PlaceHolder nodes.
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.handlers:
            handlers.extend(logger.handlers)
    return [
        handler
        for handler in handlers
        if not isinstance(handler, _CaptureHandler | logging.NullHandler)
    ]


def capture_output(*, tee: bool = True) -> OutputCapture:
    r"""Return a context manager capturing stdout, stderr and logging into one ordered log.

    While active: ``print``, ``sys.stdout.write`` and ``sys.stderr.write`` are captured
    line by line; every logging record from any logger is captured (the root logger's
    level is lowered to ``NOTSET`` for the duration and restored afterwards, unless the
    block set it itself) in the format :data:`LOG_FORMAT`. Other logging handlers keep
    receiving exactly the records they would have received, and with ``tee`` a record
    that logging would have printed through its last-resort handler is still printed.
    While a capture is active, ``logging.basicConfig()`` is a no-op, because the root
    logger has a handler.

    Captures nest: the innermost one records; with ``tee`` it also passes everything on
    to the enclosing capture (streams and log records), without ``tee`` it keeps them.
    Capturing is process-wide (any thread's writes are captured), so run one captured
    step at a time. Everything is restored when the block exits, also by an exception.

    Args:
        tee: also pass stream output through to the original streams.

    Returns:
        The context manager; entering it gives the :class:`CapturedOutput`.

    Example:
        >>> with capture_output(tee=False) as out:
        ...     print("hello")
        >>> out.text()
        '[stdout] hello\n'
    """
    return OutputCapture(tee=tee)
