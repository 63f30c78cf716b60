"""openlineage-python's ``HttpTransport``, fitted with a deadline and a bounded read.

Imported by :mod:`pipetrail.lineage.exports.transport` on the first event sent (it
imports requests, urllib3 and the OpenLineage client). What each piece adds:

- :class:`_Adapter` mounts connection pools whose connections register their sockets
  with the request running in the current thread, so :meth:`Request.abort` can shut them
  down at the deadline, and retries with :class:`_Retry`;
- :class:`_Retry` (urllib3's ``Retry``) closes an answer it retries instead of reading
  it to the end, notes its status for the message, stops once the request was abandoned,
  and sleeps its backoff in a wait that the abort ends;
- the session streams (``stream = True``) so the transport reads no body, and its
  response hook reads at most :data:`~pipetrail.lineage.exports.transport.MAX_ERROR_DETAIL`
  bytes of an error's.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
    TokenProvider,
)
from openlineage.client.transport.http_common import DEFAULT_RETRY_CONFIG
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.util import Retry

from pipetrail.lineage.exports.transport import LINEAGE_ENDPOINT, MAX_ERROR_DETAIL

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

    from pipetrail.lineage.exports.transport import OpenLineageHttpEmitter

__all__ = ["Request", "make_transport"]

_current = threading.local()


class Request:
    """One event's request, run by a worker thread; the caller reads what it found.

    Attributes:
        done: set when the request is over (sent, refused or failed).
        status: the HTTP status of the last answer seen (``None`` before any).
        reason: its reason phrase.
        detail: up to ``MAX_ERROR_DETAIL`` bytes of an error answer's body, one line.
        error: why the request failed without an HTTP error status, one line.
        attempts: how many times the event was sent (1 + the retries made).
    """

    def __init__(self, transport: _Transport, event: dict[str, Any]) -> None:
        self.transport = transport
        self.event = event
        self.done = threading.Event()
        self.aborted = threading.Event()
        self.status: int | None = None
        self.reason = ""
        self.detail = ""
        self.error: str | None = None
        self.attempts = 1
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        """Send the event (in the worker thread)."""
        _current.request = self
        try:
            self.transport.emit(self.event)
        except requests.HTTPError:
            pass  # the hook noted the status and the detail
        except Exception as exc:  # noqa: BLE001 - any failure is reported, one line
            self.error = _reason(exc)
        finally:
            _current.request = None
            self.done.set()

    def opened(self, sock: socket.socket) -> None:
        """Note a socket of this request (shut down at once if it was abandoned)."""
        with self._lock:
            self._sockets.append(sock)
            if self.aborted.is_set():
                _shut(sock)

    def abort(self) -> None:
        """Abandon the request: shut its sockets down and end its backoff sleep."""
        with self._lock:
            self.aborted.set()
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv in the worker thread


def _request() -> Request | None:
    return getattr(_current, "request", None)


def _reason(exc: BaseException) -> str:
    """The innermost operating-system reason of a failure, else the failure, one line."""
    seen: set[int] = set()
    found: BaseException = exc
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if type(item).__module__ == "builtins" and isinstance(item, OSError) and item.strerror:
            found = item
            break
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
        stack.extend(arg for arg in item.args if isinstance(arg, BaseException))
    return " ".join(str(found).split()) or type(found).__name__


class _Connection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        request = _request()
        if request is not None:
            request.opened(sock)
        return sock


class _HttpsConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        request = _request()
        if request is not None:
            request.opened(sock)
        return sock


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _HttpsPool(HTTPSConnectionPool):
    ConnectionCls = _HttpsConnection


_POOLS = {"http": _Pool, "https": _HttpsPool}


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


class _Retry(Retry):
    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        request = _request()
        if request is not None and response is not None:
            request.status, request.reason = response.status, response.reason or ""
        if request is not None and request.aborted.is_set():
            raise MaxRetryError(_pool, url or "", error)  # type: ignore[arg-type]
        # Raises when no retry is left: the answer is then the final one, read by the hook.
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None:
            response.close()  # retried: its body is not needed, and not read
        return retry

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        seconds = None
        if self.respect_retry_after_header and response is not None:
            seconds = self.get_retry_after(response)
        if seconds is None:
            seconds = self.get_backoff_time()
        request = _request()
        if request is not None:
            if not request.aborted.wait(max(seconds, 0.0)):
                request.attempts += 1  # urllib3 sends again after this sleep
        elif seconds > 0:
            threading.Event().wait(seconds)


def _read_error(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Response hook: note the status; of an error, read at most MAX_ERROR_DETAIL bytes."""
    request = _request()
    if request is None:
        return
    request.status, request.reason = response.status_code, response.reason or ""
    if response.status_code < 400:
        return
    with contextlib.suppress(Exception):  # abandoned, or the collector hung up
        data = response.raw.read(MAX_ERROR_DETAIL, decode_content=True)
        request.detail = " ".join(data.decode("utf-8", "replace").split())


class _Transport(HttpTransport):
    """``HttpTransport`` sending the event's JSON exactly as exported.

    The client's own serializer drops every null field and null list item, which would
    change what the record says (a parameter set to ``None`` would vanish); everything
    else (auth header, custom headers, gzip, session, retries) is the library's.
    """

    def emit(self, event: Any) -> requests.Response:
        body, headers = self._prepare_request(json.dumps(event, sort_keys=True))
        response = self.session.post(
            urljoin(self.url, self.endpoint),
            data=body,
            headers=headers,
            timeout=self.timeout,
            verify=self.verify,
        )
        response.close()  # streamed: closing reads nothing more
        response.raise_for_status()
        return response


def make_transport(emitter: OpenLineageHttpEmitter) -> HttpTransport:
    """An ``HttpTransport`` sending to the emitter's collector with its settings."""
    retry = {
        **DEFAULT_RETRY_CONFIG,
        "total": emitter.retries,
        "connect": emitter.retries,
        "read": emitter.retries,
        "backoff_factor": emitter.backoff,
        "raise_on_status": False,  # the final answer is returned, its status reported
    }
    session = requests.Session()
    session.stream = True  # bodies are read by the hook only, and only of errors
    session.hooks["response"].append(_read_error)
    config = HttpConfig(
        url=emitter.url + "/",
        endpoint=LINEAGE_ENDPOINT,
        timeout=emitter.timeout,  # each socket operation; the deadline bounds their sum
        auth=(
            ApiKeyTokenProvider({"apiKey": emitter.api_key})
            if emitter.api_key
            else TokenProvider({})
        ),
        compression=HttpCompression.GZIP if emitter.gzip else None,
        custom_headers={"User-Agent": emitter.user_agent, **emitter.headers},
        retry=retry,
        session=session,
        adapter=_Adapter(max_retries=_Retry(**retry)),
    )
    return _Transport(config)
