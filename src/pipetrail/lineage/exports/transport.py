"""Sending OpenLineage events to a collector (Marquez or any OpenLineage HTTP endpoint).

One ``POST <url>/api/v1/lineage`` per event with the event as its JSON body, through the
standard library only (no client dependency). Every failure, whether the collector is
unreachable, times out or answers with an HTTP error, becomes a :class:`CollectorError`
naming the endpoint and the event that was refused; events before it were delivered.
Thread-safety: an emitter holds no connection, so threads may share one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipetrail.config import redact_url
from pipetrail.errors import PipetrailError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["CollectorError", "OpenLineageHttpEmitter"]

LINEAGE_ENDPOINT = "api/v1/lineage"


class CollectorError(PipetrailError):
    """An OpenLineage collector could not be reached or refused an event."""


class OpenLineageHttpEmitter:
    """POSTs OpenLineage events to ``<url>/api/v1/lineage``.

    Args:
        url: the collector's base URL (``http://localhost:5000`` for Marquez).
        api_key: sent as ``Authorization: Bearer <api_key>`` when given.
        timeout: seconds to wait for each request.

    Raises:
        CollectorError: the URL is not ``http(s)://host...``.
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CollectorError(
                f"OpenLineage collector URL {redact_url(url)!r} must look like "
                "http://host:port (the events go to <url>/api/v1/lineage)"
            )
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}/{LINEAGE_ENDPOINT}"
        self.api_key = api_key
        self.timeout = timeout

    def emit(self, event: dict[str, Any]) -> None:
        """Send one event.

        Raises:
            CollectorError: the collector is unreachable or answered with an error.
        """
        body = json.dumps(event, sort_keys=True).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "pipetrail"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")  # noqa: S310 - the scheme is checked to be http(s) in __init__
        where = redact_url(self.endpoint)
        what = f"{event.get('eventType')} event of job {event.get('job', {}).get('name')!r}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only, see above
                response.read()
        except urllib.error.HTTPError as exc:
            try:
                detail = exc.read(300).decode("utf-8", "replace").strip()
            finally:
                exc.close()  # the error holds the response's socket
            raise CollectorError(
                f"the OpenLineage collector at {where} refused the {what}: HTTP {exc.code} "
                f"{exc.reason}{': ' + detail if detail else ''}"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CollectorError(
                f"cannot send the {what} to the OpenLineage collector at {where}: {reason}; "
                "check the URL and that the collector is running"
            ) from None

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
