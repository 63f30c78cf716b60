"""Who is logging: the run, step and trace a log line belongs to.

Owns :class:`LogContext` (the ids every structured log line carries: run id, step,
step-run id, trace id, span id), the context variable that holds the current one
(:func:`bound`, :func:`current_context`), :class:`StepTrace` (what a step task carries to
its worker so the worker's log lines and spans join the run's trace) and the id scheme:

* a run's **trace id** (32 hex digits, W3C trace context) is derived from its run id;
* the **span id** (16 hex digits) of the run, and of each step run, is derived from the
  run id or step-run id.

Deriving the ids, rather than drawing them at random, means that anyone holding the run
record can name the spans of a run, and that a step's worker needs nothing but the ids
it already has. Run ids and step-run ids are unique (80 random bits), so the derived
ids are as unlikely to collide as random ones. The trace id is also recorded in
``run.started`` (``trace_id``) for whoever searches a tracing backend by it.

Imports only the standard library: binding a context costs one context-variable set.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "CURRENT_CONTEXT",
    "LogContext",
    "StepTrace",
    "bound",
    "current_context",
    "otel_attached",
    "run_span_id",
    "step_span_id",
    "trace_id_for",
    "traceparent",
]


@functools.lru_cache(maxsize=64)  # every step of a run asks for its run's
def trace_id_for(run_id: str) -> str:
    """Return the W3C trace id (32 lowercase hex digits) of run ``run_id``."""
    return hashlib.blake2b(b"pipetrail-trace\x00" + run_id.encode(), digest_size=16).hexdigest()


def _span_id(kind: bytes, some_id: str) -> str:
    return hashlib.blake2b(
        b"pipetrail-span\x00" + kind + some_id.encode(), digest_size=8
    ).hexdigest()


def run_span_id(run_id: str) -> str:
    """Return the span id (16 lowercase hex digits) of the span of run ``run_id``."""
    return _span_id(b"run\x00", run_id)


def step_span_id(step_run_id: str) -> str:
    """Return the span id of the span of step run ``step_run_id``."""
    return _span_id(b"step\x00", step_run_id)


def traceparent(trace_id: str, span_id: str) -> str:
    """Return the W3C ``traceparent`` header naming span ``span_id`` (sampled)."""
    return f"00-{trace_id}-{span_id}-01"


class LogContext(NamedTuple):
    """The ids a structured log line carries (a tuple: made once per step, cheaply).

    Attributes:
        run_id: the run.
        trace_id: the run's trace id.
        span_id: the span the line was written in (a step run's, or the run's).
        step: the node id of the step (None outside a step).
        step_run_id: the step run (None outside a step).
    """

    run_id: str
    trace_id: str
    span_id: str
    step: str | None = None
    step_run_id: str | None = None

    def fields(self) -> dict[str, Any]:
        """The ids as log-line fields, in their documented order."""
        return {
            "run_id": self.run_id,
            "step": self.step,
            "step_run_id": self.step_run_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }

    @classmethod
    def for_run(cls, run_id: str) -> LogContext:
        """The context of a run's own lines (outside any step)."""
        return cls(run_id, trace_id_for(run_id), run_span_id(run_id))


@dataclass(frozen=True, init=False)
class StepTrace:
    """What a step task carries so that its worker logs and traces inside the run's trace.

    Picklable (plain strings), so it travels to process and Dask workers with the task.

    Attributes:
        run_id: the run.
        node_id: the step's node id.
        step_run_id: the step run.
        otel: attach the step's span as the OpenTelemetry context while user code runs
            (set when the run exports traces), so spans the code starts are its children.
    """

    run_id: str
    node_id: str
    step_run_id: str
    otel: bool = False

    def __init__(self, run_id: str, node_id: str, step_run_id: str, otel: bool = False) -> None:
        # What the generated __init__ does (one object.__setattr__ per field, since the
        # class is frozen) in one step: every executed step carries one.
        self.__dict__.update(run_id=run_id, node_id=node_id, step_run_id=step_run_id, otel=otel)

    def log_context(self) -> LogContext:
        """The context of the step's log lines."""
        return LogContext(
            self.run_id,
            trace_id_for(self.run_id),
            step_span_id(self.step_run_id),
            step=self.node_id,
            step_run_id=self.step_run_id,
        )


_CURRENT: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "pipetrail_log_context", default=None
)
#: The context variable :func:`bound` sets: a step task sets and resets it itself, which
#: spares the calls of a context manager on every executed step.
CURRENT_CONTEXT = _CURRENT


def current_context() -> LogContext | None:
    """Return the context bound in this thread or task, if any."""
    return _CURRENT.get()


_NOTHING = nullcontext()


def otel_attached(trace: StepTrace | None) -> AbstractContextManager[None]:
    """Make the step's span the current OpenTelemetry span for the block.

    Only when ``trace.otel`` is set (the run exports traces) and OpenTelemetry is
    installed; otherwise nothing is imported and nothing changes. Code in the block that
    starts spans through the OpenTelemetry API (with a tracer provider of its own, on
    whichever worker it runs) makes them children of the step's span.
    """
    if trace is None or not trace.otel:
        return _NOTHING
    return _attached(trace)


@contextmanager
def _attached(trace: StepTrace) -> Iterator[None]:
    try:
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace
    except ImportError:
        yield
        return
    parent = otel_trace.SpanContext(
        trace_id=int(trace_id_for(trace.run_id), 16),
        span_id=int(step_span_id(trace.step_run_id), 16),
        is_remote=True,
        trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED),
    )
    token = otel_context.attach(otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(parent)))
    try:
        yield
    finally:
        otel_context.detach(token)


class bound:
    """Make ``context`` the current one for the block (None: keep the current one).

    A class rather than a generator: it is entered once per step.
    """

    __slots__ = ("_context", "_token")

    def __init__(self, context: LogContext | None) -> None:
        self._context = context
        self._token: contextvars.Token[LogContext | None] | None = None

    def __enter__(self) -> LogContext | None:
        if self._context is None:
            return _CURRENT.get()
        self._token = _CURRENT.set(self._context)
        return self._context

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
