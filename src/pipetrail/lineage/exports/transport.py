"""Sending OpenLineage events to a collector (Marquez or any OpenLineage HTTP endpoint).

One ``POST <url>/api/v1/lineage`` per event, through the reference client's
``HttpTransport`` (package ``openlineage-python``, extra ``pipetrail[openlineage]``,
imported on first use): it serializes the event, adds the bearer token
(``ApiKeyTokenProvider``), custom headers and gzip compression, and retries through
urllib3 (connection failures, read failures and the answers 500, 502, 503, 504, with
exponential backoff and ``Retry-After``; ``retries`` and ``backoff`` here).

Two guarantees the library does not give are kept around it, here:

- **A deadline for the whole request**, retries included: ``timeout`` seconds from the
  first connection attempt to the end of the final answer's headers. The library passes
  ``timeout`` to requests, which bounds each socket operation, not their sum (a collector
  trickling bytes would hold the command for ever). So each event is sent from a worker
  thread that the caller waits for at most ``timeout``; at the deadline the caller gets
  a :class:`CollectorError` and every socket the request opened is shut down, and the
  backoff sleep is cut short, so the worker ends at once.
- **A bounded read of the answer**: the session streams, so of a final answer only the
  status and headers are read, and at most :data:`MAX_ERROR_DETAIL` bytes of an error's
  body; an answer that is retried is closed unread (urllib3 would otherwise read all of
  it before retrying).

Every failure, whether the collector is unreachable, misses the deadline or answers with
an HTTP error, becomes a one-line :class:`CollectorError` naming the endpoint and the
event that was refused; events before it were delivered. An emitter sends one event at a
time (its connection is reused from one event to the next).
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipetrail.config import redact_url
from pipetrail.core.version import VERSION
from pipetrail.errors import PipetrailError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["MAX_ERROR_DETAIL", "CollectorError", "OpenLineageHttpEmitter"]

LINEAGE_ENDPOINT = "api/v1/lineage"
#: The most bytes of an error answer's body read (and shown in the message).
MAX_ERROR_DETAIL = 300
#: Retries of an event after its first attempt, by default.
DEFAULT_RETRIES = 3
#: Backoff factor between retries, in seconds (urllib3: 0, then 2 x factor, 4 x ...).
DEFAULT_BACKOFF = 0.3
_INSTALL = "pip install 'pipetrail[openlineage]'"


class CollectorError(PipetrailError):
    """An OpenLineage collector could not be reached or refused an event."""


class OpenLineageHttpEmitter:
    """POSTs OpenLineage events to ``<url>/api/v1/lineage``.

    Args:
        url: the collector's base URL (``http://localhost:5000`` for Marquez).
        api_key: sent as ``Authorization: Bearer <api_key>`` when given.
        timeout: seconds each event may take in all, retries included, from the first
            connection attempt to the end of the final answer's headers.
        retries: how many times an event is tried again after a failure the collector
            may recover from (no connection, a broken answer, HTTP 500/502/503/504).
        backoff: the backoff factor between retries, in seconds.
        headers: extra HTTP headers sent with every event.
        gzip: compress the events (``Content-Encoding: gzip``).

    Raises:
        CollectorError: the URL is not ``http(s)://host...``, a setting is out of range,
            or openlineage-python is not installed (the message says how to install it).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        headers: Mapping[str, str] | None = None,
        gzip: bool = False,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CollectorError(
                f"OpenLineage collector URL {redact_url(url)!r} must look like "
                "http://host:port (the events go to <url>/api/v1/lineage)"
            )
        if not timeout > 0 or math.isinf(timeout):
            raise CollectorError(
                f"the timeout for sending to an OpenLineage collector must be a positive "
                f"number of seconds, got {timeout!r}"
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
            raise CollectorError(f"retries must be a whole number from 0 to 100, got {retries!r}")
        if not 0 <= backoff < math.inf:
            raise CollectorError(
                f"the retry backoff must be a number of seconds >= 0, got {backoff!r}"
            )
        try:
            import openlineage.client.transport.http  # noqa: F401 - fails early when missing
        except ImportError:
            raise CollectorError(
                f"sending OpenLineage events needs the openlineage-python package: {_INSTALL}"
            ) from None
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}/{LINEAGE_ENDPOINT}"
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.headers = dict(headers or {})
        self.gzip = gzip
        self._transport: Any = None

    def emit(self, event: dict[str, Any]) -> None:
        """Send one event.

        Raises:
            CollectorError: the collector is unreachable, did not answer before the
                deadline, or answered with an error.
        """
        from pipetrail.lineage.exports import _http

        if self._transport is None:
            self._transport = _http.make_transport(self)
        request = _http.Request(self._transport, event)
        worker = threading.Thread(target=request.run, name="pipetrail-openlineage", daemon=True)
        worker.start()
        done = request.done.wait(self.timeout)
        if not done:
            request.abort()
            self._transport = None  # abandoned mid-request: never reused
        where = redact_url(self.endpoint)
        what = f"{event.get('eventType')} event of job {event.get('job', {}).get('name')!r}"
        if request.status is not None and request.status >= 400:
            tries = f" (sent {request.attempts} times)" if request.attempts > 1 else ""
            late = f"; no better answer came within {self.timeout:g} s" if not done else ""
            detail = f": {request.detail}" if request.detail else ""
            raise CollectorError(
                f"the OpenLineage collector at {where} refused the {what}{tries}{late}: HTTP "
                f"{request.status} {request.reason}{detail}"
            )
        if not done:
            raise CollectorError(
                f"the OpenLineage collector at {where} did not take the {what} within "
                f"{self.timeout:g} s (the deadline for the whole request, --timeout); "
                "check that the collector is healthy, or allow more time"
            )
        if request.error is not None:
            raise CollectorError(
                f"cannot send the {what} to the OpenLineage collector at {where}: "
                f"{request.error}; check the URL and that the collector is running"
            )

    def emit_all(self, events: Iterable[dict[str, Any]]) -> int:
        """Send events in order, stopping at the first failure; return how many were sent.

        Raises:
            CollectorError: as :meth:`emit`, naming the refused event.
        """
        sent = 0
        for event in events:
            self.emit(event)
            sent += 1
        return sent

    def close(self) -> None:
        """Close the connection kept for the next event."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> OpenLineageHttpEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def user_agent(self) -> str:
        """The ``User-Agent`` header sent."""
        return f"pipetrail/{VERSION}"
