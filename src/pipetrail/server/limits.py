"""The request guard: what is refused before any route runs.

A pure ASGI middleware, outside everything else:

* a path or query that, percent-decoded once, holds a control character (NUL included),
  a backslash, or a ``.`` or ``..`` path segment: 400 (no route names a file, and no
  parameter may look like a path either);
* a body larger than the server accepts: a ``Content-Length`` over the limit is
  answered 413 at once; a body sent without one (chunked) is counted as it arrives and
  cut off with 413 as soon as it passes the limit (:class:`BodyTooLarge`, which the
  application answers), so a route never holds more than the limit in memory.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from pipetrail.server.problems import MEDIA_TYPE, PROBLEM_TYPE, log

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["BodyTooLarge", "RequestGuard", "SECURITY_HEADERS", "unsafe_target"]

#: Sent with every answer: scripts and styles from this server only, no framing, no
#: sniffing of content types, no referrer to other sites.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]

_CONTROLS = frozenset(range(0x20)) | {0x7F, ord("\\")}


class BodyTooLarge(Exception):
    """A request body passed the limit while a route was reading it."""


def unsafe_target(raw_path: bytes, query: bytes) -> str | None:
    """Why a request target is refused (percent-decoded once), or None when it is not."""
    path = unquote_to_bytes(raw_path)
    if any(b in _CONTROLS for b in path):
        return "the path holds a control character or a backslash"
    if any(segment in (b".", b"..") for segment in path.split(b"/")):
        return "the path holds a '.' or '..' segment"
    for pair in query.split(b"&"):
        decoded = unquote_to_bytes(pair.replace(b"+", b" "))
        if any(b in _CONTROLS for b in decoded):
            return "the query holds a control character or a backslash"
        if any(s in (b".", b"..") for part in decoded.split(b"=", 1) for s in part.split(b"/")):
            return "the query holds a '.' or '..' path segment"
    return None


class RequestGuard:
    """ASGI middleware: refuses unsafe targets (400) and bodies over ``max_body`` (413)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Guard one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        why = unsafe_target(scope.get("raw_path") or b"", scope.get("query_string") or b"")
        if why is not None:
            await self._refuse(scope, send, 400, why + "; no parameter names a file")
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._refuse(scope, send, 413, self._too_large)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send, 413, self._too_large)

    @property
    def _too_large(self) -> str:
        return (
            f"the request body is larger than this server accepts ({self.max_body} bytes); "
            "send less"
        )

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        log.warning("refused %s %r with %d: %s", scope["method"], scope["path"], status, detail)
        slug, title = (
            ("too-large", "Request too large") if status == 413 else ("bad-request", "Bad request")
        )
        body = json.dumps(
            {
                "type": PROBLEM_TYPE + slug,
                "title": title,
                "status": status,
                "detail": detail,
                "instance": scope["path"],
            }
        ).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", MEDIA_TYPE.encode("ascii")),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"connection", b"close"),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
