"""Errors as RFC 9457 problem details (``application/problem+json``), and refusals logged.

Every refusal (a status of 400 or more) is one JSON object: ``type`` (a stable URI
naming the kind of problem), ``title``, ``status``, ``detail`` (the library's message:
what, which object, how to fix) and ``instance`` (the path asked for). Each is logged on
the ``pipetrail.server`` logger with the method, the path and the user, if known.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipetrail.errors import (
    AmbiguousPrefixError,
    GovernanceError,
    IdentityError,
    IntegrityError,
    LedgerError,
    NotFoundError,
    ParamError,
    PermissionDeniedError,
    PipetrailError,
    ProjectError,
    StoreError,
)

if TYPE_CHECKING:
    from fastapi import Request
    from fastapi.responses import JSONResponse

__all__ = ["PROBLEM_TYPE", "Problem", "log", "problem_response", "status_of"]

PROBLEM_TYPE = "https://pipetrail.dev/problems/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("pipetrail.server")

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid parameter",
    500: "Server error",
    503: "Metadata store unavailable",
}
_SLUGS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "invalid-parameter",
    500: "server-error",
    503: "unavailable",
}


class Problem(Exception):
    """A refusal to answer with a problem document.

    Args:
        status: the HTTP status.
        detail: what was wrong and how to fix it.
        headers: extra response headers (``WWW-Authenticate``...).
        extra: extension members of the problem document (RFC 9457, section 3.2).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}


def status_of(exc: PipetrailError) -> int:
    """The HTTP status a library error answers with."""
    if isinstance(exc, AmbiguousPrefixError):
        return 409
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, PermissionDeniedError):
        return 403
    if isinstance(exc, IdentityError):
        return 403
    if isinstance(exc, GovernanceError):
        return 409
    if isinstance(exc, ParamError):
        return 422
    if isinstance(exc, IntegrityError):
        return 500
    if isinstance(exc, LedgerError | StoreError | ProjectError):
        return 503
    return 400


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """The problem document for ``status``, logged as a refusal."""
    from fastapi.responses import JSONResponse

    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + _SLUGS.get(status, "error"),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if extra:
        body.update(extra)
    user = getattr(request.state, "user", None)
    log.warning(
        "refused %s %r with %d for %s: %s",
        request.method,
        request.url.path,
        status,
        user or "an anonymous caller",
        detail,
    )
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)
