"""Sending spans over OTLP/HTTP with the OpenTelemetry SDK (the ``observability`` extra).

Imported only when a trace is exported (see :mod:`pipetrail.execution.telemetry`): the
OpenTelemetry SDK and its exporter are imported here and nowhere else in pipetrail.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetrail.execution.telemetry import SpanRecord, TelemetrySettings

__all__ = ["send_spans"]

_INSTALL = "pip install 'pipetrail[observability]'"


def _readable(spans: list[SpanRecord], resource: Any) -> list[Any]:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, TraceFlags
    from opentelemetry.trace.status import Status, StatusCode

    from pipetrail.core.version import VERSION

    scope = InstrumentationScope("pipetrail", VERSION)
    found = []
    for span in spans:
        trace_id = int(span.trace_id, 16)
        context = SpanContext(
            trace_id, int(span.span_id, 16), is_remote=False, trace_flags=TraceFlags(1)
        )
        parent = (
            None
            if span.parent_span_id is None
            else SpanContext(
                trace_id, int(span.parent_span_id, 16), is_remote=False, trace_flags=TraceFlags(1)
            )
        )
        status = Status(StatusCode.ERROR, span.error) if span.error else Status(StatusCode.OK)
        found.append(
            ReadableSpan(
                name=span.name,
                context=context,
                parent=parent,
                resource=resource,
                attributes=span.attributes,
                status=status,
                start_time=span.start_ns,
                end_time=span.end_ns,
                instrumentation_scope=scope,
            )
        )
    return found


def send_spans(settings: TelemetrySettings, spans: list[SpanRecord]) -> str | None:
    """Send ``spans`` to ``settings.traces_url`` in one request; return why it failed, or None.

    The exporter retries a failed request with backoff within ``settings.timeout``.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import SpanExportResult
    except ImportError:
        return f"OpenTelemetry is not installed, so traces cannot be exported; {_INSTALL}"
    resource = Resource.create({"service.name": settings.service_name})
    exporter = OTLPSpanExporter(endpoint=settings.traces_url, timeout=settings.timeout)
    # The exporter logs each failed attempt itself; our caller reports the outcome once.
    quiet = logging.getLogger("opentelemetry.exporter.otlp.proto.http")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        result = exporter.export(_readable(spans, resource))
    except Exception as exc:  # noqa: BLE001 - any exporter failure is reported, not raised
        return f"{type(exc).__name__}: {exc}"
    finally:
        quiet.setLevel(level)
        exporter.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped
    if result != SpanExportResult.SUCCESS:
        return "the receiver could not be reached or refused the spans"
    return None
