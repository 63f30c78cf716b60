"""Sending OpenLineage events to a collector (Marquez or any OpenLineage HTTP endpoint).

One ``POST <url>/api/v1/lineage`` per event with the event as its JSON body, through the
standard library only (no client dependency; proxies from the environment apply). Each
request has a deadline, ``timeout`` seconds for the whole of it, from connecting to the
end of the answer's headers: every socket operation may only use the time left, so a
collector that trickles bytes cannot hold the command. Of an answer, only the status and
headers are read, and at most :data:`MAX_ERROR_DETAIL` bytes of an error's body.

Every failure, whether the collector is unreachable, misses the deadline or answers with
an HTTP error, becomes a :class:`CollectorError` naming the endpoint and the event that
was refused; events before it were delivered. Thread-safety: an emitter holds no
connection, so threads may share one.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipetrail.config import redact_url
from pipetrail.errors import PipetrailError

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterable

__all__ = ["MAX_ERROR_DETAIL", "CollectorError", "OpenLineageHttpEmitter"]

LINEAGE_ENDPOINT = "api/v1/lineage"
#: The most bytes of an error answer's body read (and shown in the message).
MAX_ERROR_DETAIL = 300


class CollectorError(PipetrailError):
    """An OpenLineage collector could not be reached or refused an event."""


class _DeadlineExceededError(TimeoutError):
    """The request's deadline passed."""


class _Deadline:
    """A moment by which a request must be over."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise _DeadlineExceededError(f"no answer within {self.seconds:g} s")
        return left


class _DeadlineSocket:
    """A connected socket whose every operation may only use the time left.

    Like a socket, it stays open while a file made by :meth:`makefile` is (urllib closes
    the connection's socket before the answer is read).
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline
        self._files = 0
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)  # fileno, setsockopt, ...

    def sendall(self, data: Any, flags: int = 0) -> None:
        # Since Python 3.5 a timeout bounds the whole of sendall, not each chunk.
        self._sock.settimeout(self._deadline.remaining())
        self._sock.sendall(data, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._sock.settimeout(self._deadline.remaining())
        return self._sock.recv_into(buffer, nbytes, flags)

    def makefile(self, mode: str = "r", *args: Any, **kwargs: Any) -> io.BufferedReader:
        # http.client reads the answer through makefile("rb"); route it through recv_into.
        if mode != "rb":
            raise ValueError(f"unsupported mode {mode!r}")
        self._files += 1
        return io.BufferedReader(_SocketReader(self))

    def file_closed(self) -> None:
        self._files -= 1
        if self._closing and self._files == 0:
            self._sock.close()

    def close(self) -> None:
        self._closing = True
        if self._files == 0:
            self._sock.close()


class _SocketReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock: _DeadlineSocket | None = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._sock is None:
            raise ValueError("read from a closed answer")
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.file_closed()
            self._sock = None
        super().close()


class _DeadlineConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        self.timeout = self._deadline.remaining()
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self._deadline)


class _DeadlineHttpsConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


class _DeadlineHttpHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_DeadlineConnection, deadline=self._deadline)
        return self.do_open(connection, req)


class _DeadlineHttpsHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_DeadlineHttpsConnection, deadline=self._deadline)
        return self.do_open(connection, req, context=self._context)  # type: ignore[attr-defined]


class OpenLineageHttpEmitter:
    """POSTs OpenLineage events to ``<url>/api/v1/lineage``.

    Args:
        url: the collector's base URL (``http://localhost:5000`` for Marquez).
        api_key: sent as ``Authorization: Bearer <api_key>`` when given.
        timeout: seconds each request may take in all, from connecting to the end of
            the answer's headers.

    Raises:
        CollectorError: the URL is not ``http(s)://host...``, or ``timeout`` is not a
            positive number of seconds.
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CollectorError(
                f"OpenLineage collector URL {redact_url(url)!r} must look like "
                "http://host:port (the events go to <url>/api/v1/lineage)"
            )
        if not timeout > 0 or timeout == float("inf"):
            raise CollectorError(
                f"the timeout for sending to an OpenLineage collector must be a positive "
                f"number of seconds, got {timeout!r}"
            )
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}/{LINEAGE_ENDPOINT}"
        self.api_key = api_key
        self.timeout = timeout

    def emit(self, event: dict[str, Any]) -> None:
        """Send one event.

        Raises:
            CollectorError: the collector is unreachable, did not answer before the
                deadline, or answered with an error.
        """
        body = json.dumps(event, sort_keys=True).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "pipetrail"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")  # noqa: S310 - the scheme is checked to be http(s) in __init__
        where = redact_url(self.endpoint)
        what = f"{event.get('eventType')} event of job {event.get('job', {}).get('name')!r}"
        deadline = _Deadline(self.timeout)
        opener = urllib.request.build_opener(
            _DeadlineHttpHandler(deadline), _DeadlineHttpsHandler(deadline)
        )
        try:
            # The status says the event was taken; the body is not needed, so not read.
            with opener.open(request, timeout=deadline.remaining()):
                pass
        except urllib.error.HTTPError as exc:
            try:
                detail = _error_detail(exc)
            finally:
                exc.close()  # the error holds the response's socket
            raise CollectorError(
                f"the OpenLineage collector at {where} refused the {what}: HTTP {exc.code} "
                f"{exc.reason}{': ' + detail if detail else ''}"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            # Every socket operation times out when the deadline does.
            if isinstance(reason, TimeoutError):
                raise CollectorError(
                    f"the OpenLineage collector at {where} did not take the {what} within "
                    f"{self.timeout:g} s (the deadline for the whole request, --timeout); "
                    "check that the collector is healthy, or allow more time"
                ) from None
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


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """At most :data:`MAX_ERROR_DETAIL` bytes of an error answer, as one line of text."""
    try:
        data = exc.read(MAX_ERROR_DETAIL)
    except (OSError, http.client.HTTPException):
        return ""  # the deadline passed, or the collector hung up: the status says enough
    return " ".join(data.decode("utf-8", "replace").split())
