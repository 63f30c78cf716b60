"""Output capture: one ordered text log of a block's stdout, stderr and logging records.

Owns :func:`capture_output` and :class:`CapturedOutput`. A capture belongs to the thread
that enters it: while any capture is active, ``sys.stdout`` and ``sys.stderr`` are
routers that send each write of a capturing thread into that thread's log (and on to
the original stream when ``tee`` is on) and every other thread's writes straight to the
original stream, and one handler on the root logger does the same with logging
records. Imports only the standard library.

Log format, one entry per line, in the order lines were completed::

    [stdout] epoch 1 done
    [log] 2024-05-01 12:00:00,123 WARNING train: loss is NaN
    [stderr] 50%|#####     | 5/10

What is not captured: writes to the file descriptors themselves (C extensions,
subprocesses, ``sys.stdout.buffer``), which go straight to the original streams, and
whatever other threads write or log, threads the block starts included.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from pipetrail.capture.log_lines import record_fields

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from types import TracebackType

__all__ = [
    "CapturedOutput",
    "LOG_FORMAT",
    "OutputCapture",
    "capture_output",
    "logging_ready",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FORMATTER = logging.Formatter(LOG_FORMAT)
_STDOUT = "[stdout] "
_STDERR = "[stderr] "
_LOG = "[log] "
_STREAM_NAMES = {_STDOUT: "stdout", _STDERR: "stderr", _LOG: "log"}
_PLACEHOLDER = logging.PlaceHolder


class _Transcript:
    """The shared, lock-protected log that taps and the logging handler append to.

    Each entry is ``(time, marker, text, fields)``: the time the line was completed (or
    the record created), its marker, its text (a log record formatted with
    :data:`LOG_FORMAT`) and, for a log record, its structured fields (level, logger,
    message, exception, the record's extra attributes).
    """

    __slots__ = ("_entries", "_lock", "_pending")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[float, str, str, dict[str, Any] | None]] = []
        # Per stream, the text written after its last newline.
        self._pending = {_STDOUT: "", _STDERR: ""}

    def add_stream(self, marker: str, text: str) -> None:
        with self._lock:
            pending = self._pending[marker] + text
            if "\n" in pending:
                *complete, pending = pending.split("\n")
                now = time.time()
                self._entries.extend((now, marker, _visible(line), None) for line in complete)
            # Keep only what follows the last carriage return, so a progress bar that
            # redraws one line thousands of times does not grow without bound. A
            # trailing "\r" is kept: it may be the first half of "\r\n".
            cut = pending.rfind("\r", 0, len(pending) - 1)
            self._pending[marker] = pending[cut + 1 :] if cut >= 0 else pending

    def add_log(self, text: str, record: logging.LogRecord | None = None) -> None:
        fields = record_fields(record) if record is not None else None
        created = record.created if record is not None else time.time()
        with self._lock:
            self._entries.append((created, _LOG, text, fields))

    def has_pending(self) -> bool:
        """Whether a stream holds text written after its last newline."""
        pending = self._pending
        return bool(pending[_STDOUT] or pending[_STDERR])

    def close(self) -> None:
        """Turn unfinished lines into lines, so they are not lost."""
        with self._lock:
            unfinished = self._unfinished()
            if unfinished:  # most steps leave none (or write nothing at all)
                self._entries.extend(unfinished)
                self._pending = {_STDOUT: "", _STDERR: ""}

    def render(self) -> str:
        with self._lock:
            return "".join(_line(entry) for entry in [*self._entries, *self._unfinished()])

    def entries(self) -> list[tuple[float, str, str, dict[str, Any] | None]]:
        with self._lock:
            return [*self._entries, *self._unfinished()]

    def is_empty(self) -> bool:
        with self._lock:
            return not self._entries and not any(self._pending.values())

    def _unfinished(self) -> list[tuple[float, str, str, dict[str, Any] | None]]:
        if not (self._pending[_STDOUT] or self._pending[_STDERR]):
            return []
        now = time.time()
        return [
            (now, marker, _visible(text), None) for marker, text in self._pending.items() if text
        ]


def _line(entry: tuple[float, str, str, dict[str, Any] | None]) -> str:
    """One entry in the text log: each line of its text behind its marker."""
    _, marker, text, _ = entry
    if marker == _LOG:
        return "".join(_LOG + line + "\n" for line in text.split("\n"))
    return marker + text + "\n"


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

    def lines(self) -> list[dict[str, Any]]:
        """Return the log as structured lines, in order (see :mod:`pipetrail.capture.log_lines`).

        Each line has ``timestamp`` (seconds since the epoch), ``stream`` (``stdout``,
        ``stderr`` or ``log``) and ``event`` (the text); a log record's line also has
        ``level``, ``logger``, ``exception`` when it carried one, and its extra fields.
        """
        found = []
        for created, marker, text, fields in self._transcript.entries():
            line: dict[str, Any] = {"timestamp": created, "stream": _STREAM_NAMES[marker]}
            if fields is None:
                line["event"] = text
            else:
                line.update(fields)
            found.append(line)
        return found

    @property
    def is_empty(self) -> bool:
        """Whether nothing was written or logged."""
        return self._transcript.is_empty()

    def __repr__(self) -> str:
        return f"<CapturedOutput {len(self.text())} chars>"


class _Scope:
    """One active capture: its transcript, its thread and the routers it writes through."""

    __slots__ = ("routers", "tee", "thread", "transcript")

    def __init__(self, transcript: _Transcript, *, tee: bool) -> None:
        self.transcript = transcript
        self.tee = tee
        self.thread = threading.get_ident()
        self.routers: dict[str, _Router] = {}


# thread ident -> the captures active in that thread, innermost last. Guarded by _LOCK,
# like everything in _GLOBAL; read without it on the write path (dict reads are atomic).
_LOCK = threading.RLock()
_SCOPES: dict[int, list[_Scope]] = {}


def _enclosing(scope: _Scope, router: _Router | None) -> _Scope | None:
    """The capture enclosing ``scope`` in its thread (through the same router, if given)."""
    stack = _SCOPES.get(scope.thread, [])
    found = False
    for other in reversed(stack):
        if found and (router is None or other.routers.get(router.marker) is router):
            return other
        found = found or other is scope
    return None


class _Router:
    """Stands in for ``sys.stdout``/``sys.stderr`` while captures are active.

    A write goes to the innermost capture of the writing thread that writes through this
    router; a thread with no capture writes to the original stream, as if nothing were
    captured. Kept by objects that hold a reference (a ``logging.StreamHandler`` created
    inside a capture), it goes on forwarding to the original stream after the captures
    end.
    """

    def __init__(self, original: TextIO | None, marker: str) -> None:
        self.original = original
        self.marker = marker
        self.users = 0

    def _scope(self) -> _Scope | None:
        for scope in reversed(_SCOPES.get(threading.get_ident(), ())):
            if scope.routers.get(self.marker) is self:
                return scope
        return None

    def _reaches_original(self, scope: _Scope | None) -> bool:
        while scope is not None:
            if not scope.tee:
                return False
            scope = _enclosing(scope, self)
        return self.original is not None

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        scope = self._scope()
        while scope is not None:
            if text:
                scope.transcript.add_stream(self.marker, text)
            if not scope.tee:
                return len(text)
            scope = _enclosing(scope, self)
        if self.original is not None:
            self.original.write(text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.original is not None:
            self.original.flush()

    def isatty(self) -> bool:
        # Report a terminal only when the text really reaches one, so libraries do not
        # put colour codes and cursor movements into a log nobody sees live.
        return (
            self._reaches_original(self._scope())
            and self.original is not None
            and self.original.isatty()
        )

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        # encoding, errors, fileno, buffer, name...: those of the original stream.
        if name.startswith("_") or name in ("original", "marker", "users"):
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
        if any(not isinstance(handler, _RoutingHandler) for handler in logger.handlers):
            return False
        if not logger.propagate:
            break
        logger = logger.parent
    return True


class _RoutingHandler(logging.Handler):
    """The one root handler while captures are active.

    A record goes to the innermost capture of the thread that logged it; the records of
    threads without a capture are left as they would be without it.
    """

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(_FORMATTER)

    def emit(self, record: logging.LogRecord) -> None:
        thread = record.thread if record.thread is not None else threading.get_ident()
        stack = _SCOPES.get(thread)
        scope = stack[-1] if stack else None
        try:
            reaches_console = True
            if scope is not None:
                text = self.format(record)
            while scope is not None:
                scope.transcript.add_log(text, record)
                if not scope.tee:
                    reaches_console = False
                    break
                scope = _enclosing(scope, None)
            console = _GLOBAL.console
            if (
                reaches_console
                and console is not None
                and logging.lastResort is not None
                and _enabled_before(record, _GLOBAL.saved_level)
                and _would_reach_last_resort(record)
            ):
                # Without a capture logging's last-resort handler would have printed this
                # record: tee, and an uncaptured thread, must see the console unchanged.
                console.write(logging.lastResort.format(record) + "\n")
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - the logging.Handler contract: report, never raise
            self.handleError(record)


class _Global:
    """What the first active capture installs and the last one removes (under _LOCK)."""

    def __init__(self) -> None:
        self.count = 0
        self.handler: _RoutingHandler | None = None
        self.saved_level = logging.NOTSET
        self.gate: _LevelGate | None = None
        self.gated: list[logging.Handler] = []
        self.console: TextIO | None = None
        # The last router of each stream: reused while its original is the stream again,
        # so a handler that kept a reference to it is captured again by a later capture.
        self.spare: dict[str, _Router] = {}
        # Active logging_ready() blocks (each also counts in `count`).
        self.ready = 0
        # What logging's list of live handlers looked like when the gated ones were last
        # brought up to date (None: walk the logger tree at the next capture); see
        # _gate_new_handlers.
        self.handlers_mark: tuple[int, Any] | None = None


_GLOBAL = _Global()
_STREAMS = ((_STDOUT, "stdout"), (_STDERR, "stderr"))


def _install_logging() -> None:
    root = logging.getLogger()
    _GLOBAL.saved_level = root.level
    console = sys.stderr
    while isinstance(console, _Router):
        console = console.original
    _GLOBAL.console = console
    if root.level != logging.NOTSET:
        # Lowering the root level lets records below it reach our handler; the gate
        # keeps every other handler's output exactly as it was.
        _GLOBAL.gate = _LevelGate(root.level)
        _GLOBAL.gated = _gateable_handlers()
        for handler in _GLOBAL.gated:
            handler.addFilter(_GLOBAL.gate)
        root.setLevel(logging.NOTSET)
    _GLOBAL.handler = _RoutingHandler()
    root.addHandler(_GLOBAL.handler)


def _handlers_mark() -> tuple[int, Any] | None:
    """How many handlers logging knows to be alive, and the newest one's reference.

    Every ``logging.Handler`` adds a weak reference to itself to the end of logging's
    list when it is made, and leaves the list when it dies. So while the mark stays the
    same, no handler made since it was taken is alive. None when logging keeps no such
    list.
    """
    refs = getattr(logging, "_handlerList", None)
    if type(refs) is not list:
        return None
    return (len(refs), refs[-1] if refs else None)


def _all_attached(handlers: list[logging.Handler]) -> bool:
    """Whether every live handler logging knows that could be gated is in ``handlers``.

    Logging's last-resort handler is not asked about: it belongs to no logger, and
    records reach it only through :class:`_RoutingHandler` while captures are active.
    """
    known = set(map(id, handlers))
    for ref in list(getattr(logging, "_handlerList", ())):
        handler = ref()
        if (
            handler is not None
            and id(handler) not in known
            and handler is not logging.lastResort
            and not isinstance(handler, _RoutingHandler | logging.NullHandler)
        ):
            return False
    return True


def _gate_new_handlers() -> None:
    """Gate the handlers added since the gate was installed, as a new install would.

    Runs for every capture in a run, where walking the logger tree cost as much as the
    rest of the capture: the tree is walked again only when a handler was made since
    the last walk (see :func:`_handlers_mark`). A handler can only be added to a logger
    once it exists: one made since is seen by the mark, and one that existed unattached
    at the last walk (say, a ``QueueListener``'s) makes every capture walk the tree.
    """
    gate = _GLOBAL.gate
    if gate is None:
        return
    mark, last = _handlers_mark(), _GLOBAL.handlers_mark
    if mark is not None and last is not None and mark[0] == last[0] and mark[1] is last[1]:
        return
    known = set(map(id, _GLOBAL.gated))
    for handler in _gateable_handlers():
        if id(handler) not in known:
            handler.addFilter(gate)
            _GLOBAL.gated.append(handler)
    _GLOBAL.handlers_mark = mark if _all_attached(_GLOBAL.gated) else None


def _uninstall_logging() -> None:
    root = logging.getLogger()
    if _GLOBAL.gate is not None:
        # A block that set the root level itself keeps its choice.
        if root.level == logging.NOTSET:
            root.setLevel(_GLOBAL.saved_level)
        for handler in _GLOBAL.gated:
            handler.removeFilter(_GLOBAL.gate)
    if _GLOBAL.handler is not None:
        root.removeHandler(_GLOBAL.handler)
    _GLOBAL.handler, _GLOBAL.gate, _GLOBAL.gated, _GLOBAL.console = None, None, [], None
    _GLOBAL.handlers_mark = None


def _route(name: str, marker: str) -> _Router:
    """The router a new capture writes ``sys.<name>`` through, installed if need be."""
    current = getattr(sys, name)
    if isinstance(current, _Router) and current.users > 0:
        router = current
    else:
        spare = _GLOBAL.spare.get(marker)
        if spare is not None and spare.original is current and spare.users == 0:
            router = spare
        else:
            router = _Router(current, marker)
        setattr(sys, name, router)
        _GLOBAL.spare[marker] = router
    router.users += 1
    return router


def _unroute(name: str, router: _Router) -> None:
    router.users -= 1
    if router.users > 0:
        return
    current = getattr(sys, name)
    # Put back what the capture found (also if the block replaced the stream itself),
    # unless another thread's capture installed its own router on top meanwhile.
    if not (isinstance(current, _Router) and current.users > 0 and current is not router):
        setattr(sys, name, router.original)


class OutputCapture:
    """The context manager returned by :func:`capture_output`; single use."""

    __slots__ = ("_scope", "_tee")

    def __init__(self, *, tee: bool) -> None:
        self._tee = tee
        self._scope: _Scope | None = None

    def __enter__(self) -> CapturedOutput:
        if self._scope is not None:
            raise RuntimeError("an OutputCapture is single use; call capture_output() again")
        scope = self._scope = _Scope(_Transcript(), tee=self._tee)
        with _LOCK:
            if _GLOBAL.count == 0:
                _install_logging()
            elif _GLOBAL.ready and logging.root.level != logging.NOTSET:
                # Code run since (an earlier step) set the root level: take it as the level
                # to restore, and lower it again, as a capture starting alone would.
                _uninstall_logging()
                _install_logging()
            elif _GLOBAL.ready:
                _gate_new_handlers()  # handlers added since (by an earlier step)
            _GLOBAL.count += 1
            for marker, name in _STREAMS:
                scope.routers[marker] = _route(name, marker)
            _SCOPES.setdefault(scope.thread, []).append(scope)
        return CapturedOutput(scope.transcript)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Undo __enter__. Nothing here raises, so everything is restored also when the
        # block raised.
        scope = self._scope
        if scope is None:
            return
        with _LOCK:
            stack = _SCOPES.get(scope.thread, [])
            if scope in stack:
                stack.remove(scope)
            if not stack:
                _SCOPES.pop(scope.thread, None)
            for marker, name in _STREAMS:
                _unroute(name, scope.routers[marker])
            _GLOBAL.count -= 1
            if _GLOBAL.count == 0:
                _uninstall_logging()
        transcript = scope.transcript
        if transcript.has_pending():  # most steps leave no unfinished line
            transcript.close()


def _gateable_handlers() -> list[logging.Handler]:
    """Every handler in the logger tree that could output something, except ours."""
    handlers = list(logging.root.handlers)
    # Runs for every capture in a run (to gate handlers added since the last step): the
    # loggers are told from the PlaceHolders of the tree by their type, then asked for
    # handlers (a plain attribute read), which costs a third less than asking each entry
    # for ``handlers`` with a default.
    for logger in list(logging.root.manager.loggerDict.values()):
        if (
            type(logger) is not _PLACEHOLDER
            and isinstance(logger, logging.Logger)
            and logger.handlers
        ):
            handlers.extend(logger.handlers)
    return [
        handler
        for handler in handlers
        if not isinstance(handler, _RoutingHandler | logging.NullHandler)
    ]


@contextmanager
def logging_ready() -> Iterator[None]:
    """Keep the logging side of capture installed for a block that captures many times.

    The first capture installs a handler on the root logger and lowers its level (which
    clears every logger's level cache), the last one undoes it: for a run of many short
    steps, most of what capturing costs. Inside this block that happens once. Each
    capture still records only its own thread's output, and the logging seen outside
    captures is what it would be without them (see :func:`capture_output`); a capture
    that finds the root level set since (by code run in an earlier capture) restarts
    from it, as it would have started alone. Everything is restored when the block ends.
    """
    with _LOCK:
        if _GLOBAL.count == 0:
            _install_logging()
        _GLOBAL.count += 1
        _GLOBAL.ready += 1
    try:
        yield
    finally:
        with _LOCK:
            _GLOBAL.ready -= 1
            _GLOBAL.count -= 1
            if _GLOBAL.count == 0:
                _uninstall_logging()


def capture_output(*, tee: bool = True) -> OutputCapture:
    r"""Return a context manager capturing one thread's stdout, stderr and logging.

    While active, in the thread that entered it: ``print``, ``sys.stdout.write`` and
    ``sys.stderr.write`` are captured line by line, and every logging record from any
    logger is captured in the format :data:`LOG_FORMAT` (the root logger's level is
    lowered to ``NOTSET`` for the duration and restored afterwards, unless the block
    set it itself). Other logging handlers keep receiving exactly the records they
    would have received, and with ``tee`` a record that logging would have printed
    through its last-resort handler is still printed. While a capture is active,
    ``logging.basicConfig()`` is a no-op, because the root logger has a handler.

    Only the thread that entered the block is captured: other threads (the caller's
    own, and threads the block starts) write to the real streams and log as if nothing
    were captured. Captures in several threads at once each get their own thread's
    output. Captures nest: the innermost one records; with ``tee`` it also passes
    everything on to the enclosing capture (streams and log records), without ``tee``
    it keeps them. Everything is restored when the last capture exits, also by an
    exception.

    Args:
        tee: also pass the captured output through to the original streams.

    Returns:
        The context manager; entering it gives the :class:`CapturedOutput`.

    Example:
        >>> with capture_output(tee=False) as out:
        ...     print("hello")
        >>> out.text()
        '[stdout] hello\n'
    """
    return OutputCapture(tee=tee)
