"""Who is calling, and whether their roles allow what the route needs (deny by default).

A caller proves who they are with an API token (:mod:`pipetrail.governance.tokens`):
``Authorization: Bearer TOKEN``, or the browser's session cookie set by the login form,
which holds the same token (HttpOnly, Secure, SameSite=Strict). A token names a user;
what the user may do is the roles the governance events give them at the time of the
request (:mod:`pipetrail.governance.roles`), so a revoked role or token is refused on the
next request.

Every route declares what it needs with :func:`need` (an :class:`Action`); the
application refuses to start when a route that is not listed public declares nothing
(:func:`check_every_route_declares`). No token: 401. A token whose user's roles do not
allow the action: 403.

A request authenticated by the session cookie that changes something (any method but
GET, HEAD, OPTIONS) must carry the session's CSRF token, in the ``X-CSRF-Token`` header
or a ``csrf_token`` form field: the digest of the session token under a fixed domain,
which a page of another site can neither read nor compute.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from pipetrail.errors import IdentityError
from pipetrail.governance.roles import PERMISSIONS, Action, Role, roles_allowing
from pipetrail.hashing import digest_bytes
from pipetrail.server.problems import Problem

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pipetrail.server.context import ServerContext

__all__ = [
    "Need",
    "Principal",
    "SAFE_METHODS",
    "check_every_route_declares",
    "csrf_token",
    "need",
    "route_needs",
]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a recorded user, their roles now, and how they came in."""

    user: str
    roles: frozenset[Role]
    token_id: str
    via: str  # "bearer" or "session"
    session_token: str | None = None

    def may(self, action: Action) -> bool:
        """Whether one of the caller's roles allows ``action``."""
        return any(action in PERMISSIONS[role] for role in self.roles)

    @property
    def csrf(self) -> str | None:
        """The CSRF token of the browser session (None for a bearer token)."""
        return csrf_token(self.session_token) if self.session_token else None


def csrf_token(session_token: str) -> str:
    """The CSRF token bound to a session: a digest of its token under a fixed domain."""
    return digest_bytes(b"pipetrail csrf v1\n" + session_token.encode("ascii"))[7:]


def _context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context


def _credentials(request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Problem(
                401,
                "the Authorization header must be 'Bearer TOKEN' with a pipetrail API token "
                "(`pipetrail token create`)",
                {"WWW-Authenticate": 'Bearer realm="pipetrail"'},
            )
        return value.strip(), "bearer"
    cookie = request.cookies.get(_context(request).settings.session_cookie)
    if cookie:
        return cookie, "session"
    raise Problem(
        401,
        "this needs authentication: send 'Authorization: Bearer TOKEN' (a token from "
        "`pipetrail token create`) or log in at /login",
        {"WWW-Authenticate": 'Bearer realm="pipetrail"'},
    )


def authenticate(request: Request) -> Principal:
    """The caller of ``request``, with the roles their user holds now.

    Raises:
        Problem: 401 without a usable token (none, malformed, unknown, expired, revoked).
    """
    from pipetrail.governance.tokens import check_token

    token, via = _credentials(request)
    context = _context(request)
    project = context.project()
    try:
        record = check_token(project.reader(), token)
    except IdentityError as exc:
        raise Problem(401, str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from exc
    request.state.user = record.user
    user = context.governance_state().users.get(record.user)
    roles = frozenset(user.roles) if user is not None else frozenset()
    return Principal(record.user, roles, record.token_id, via, token if via == "session" else None)


class Need:
    """A route's requirement: an authenticated caller whose roles allow ``action``.

    Used as a FastAPI dependency (:func:`need`); the application and its tests find it on
    each route (:func:`route_needs`).
    """

    def __init__(self, action: Action) -> None:
        self.action = action

    def __repr__(self) -> str:
        return f"Need({self.action.value!r})"

    async def __call__(self, request: Request) -> Principal:
        """Authenticate, authorize, and check CSRF for a session's unsafe request."""
        from starlette.concurrency import run_in_threadpool

        principal = await run_in_threadpool(authenticate, request)
        if not principal.may(self.action):
            needed = " or ".join(role.value for role in roles_allowing(self.action))
            held = ", ".join(sorted(role.value for role in principal.roles)) or "no role"
            raise Problem(
                403,
                f"{principal.user} may not {self.action.value}: that needs the role {needed}, "
                f"and {principal.user} has {held}",
            )
        if principal.via == "session" and request.method not in SAFE_METHODS:
            await _check_csrf(request, principal)
        return principal


async def _check_csrf(request: Request, principal: Principal) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    expected = principal.csrf or ""
    if not sent or not hmac.compare_digest(sent.encode("utf-8"), expected.encode("ascii")):
        raise Problem(
            403,
            f"a browser session must send its CSRF token ({CSRF_HEADER} header or "
            f"{CSRF_FIELD} form field) to change anything; reload the page and try again",
        )


_NEEDS: dict[Action, Need] = {}


def need(action: Action) -> Need:
    """The dependency a route declares to require ``action`` (one object per action)."""
    if action not in _NEEDS:
        _NEEDS[action] = Need(action)
    return _NEEDS[action]


def route_needs(app: FastAPI) -> dict[tuple[str, str], Action | None]:
    """``(method, path) -> the action it needs`` for every route of ``app`` (None: none)."""
    from fastapi.routing import APIRoute

    found: dict[tuple[str, str], Action | None] = {}
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        actions = [
            dep.call.action for dep in route.dependant.dependencies if isinstance(dep.call, Need)
        ]
        for method in sorted(route.methods or ()):
            found[(method, route.path)] = actions[0] if actions else None
    return found


def check_every_route_declares(app: FastAPI, public: set[tuple[str, str]]) -> None:
    """Refuse an application with a route that needs nothing and is not listed public.

    Only plain API routes can declare a need; any other kind of route (a mount, an
    included router, a bare Starlette route) is refused too, except the static files.

    Raises:
        RuntimeError: naming each such route.
    """
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    bare = {key for key, action in route_needs(app).items() if action is None} - public
    other = [
        f"{type(route).__name__} {getattr(route, 'path', '?')}"
        for route in app.routes
        if not isinstance(route, APIRoute)
        and not (isinstance(route, Mount) and route.path == "/static")
    ]
    if bare or other:
        raise RuntimeError(
            "routes without a declared need (deny by default): "
            + ", ".join([f"{m} {p}" for m, p in sorted(bare)] + other)
        )
