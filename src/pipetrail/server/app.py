"""Build the FastAPI application of one project: routes, error handling, the request guard.

:func:`create_app` is what ``pipetrail serve`` runs (one per worker process) and what
tests drive with FastAPI's test client. It refuses to build an application with a route
that declares no need and is not public (:data:`PUBLIC`): deny by default.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipetrail.errors import PipetrailError
from pipetrail.governance.roles import Action
from pipetrail.server import (
    api_artifacts,
    api_governance,
    api_runs,
    api_signing,
    audit_views,
    drift_views,
    pages,
    pages_governance,
)
from pipetrail.server.auth import Principal, check_every_route_declares, need
from pipetrail.server.context import ServerContext, ServerSettings
from pipetrail.server.encoding import JsonResponse
from pipetrail.server.limits import BodyTooLarge, RequestGuard
from pipetrail.server.problems import Problem, problem_response, status_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["PUBLIC", "create_app"]

#: The routes anyone may call: the login form and its submission. Everything else needs
#: an authenticated caller whose roles allow the route's action.
PUBLIC = pages.PUBLIC_PAGES
API_VERSION = "v1"


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith("/api/")


def _refusal(
    request: Request,
    status: int,
    detail: str,
    headers: dict[str, str] | None,
    extra: dict[str, Any] | None = None,
) -> Any:
    if status == 401 and _is_page(request):
        # A browser asked for a page: say so, and point at the login form.
        problem_response(request, status, detail)  # logged like every refusal
        return HTMLResponse(
            '<!doctype html><html lang="en"><title>Log in</title><main><h1>Log in first</h1>'
            '<p><a href="/login">Log in with an API token</a></p></main></html>',
            status_code=401,
        )
    return problem_response(request, status, detail, headers=headers, extra=extra)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        result: Response = _refusal(request, exc.status, exc.detail, exc.headers, exc.extra)
        return result

    @app.exception_handler(PipetrailError)
    async def _library(request: Request, exc: PipetrailError) -> Response:
        result: Response = _refusal(request, status_of(exc), str(exc), None)
        return result

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
        limit = request.app.state.context.settings.max_body
        return problem_response(
            request, 413, f"the request body is larger than this server accepts ({limit} bytes)"
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()))
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return problem_response(
            request, 422, "; ".join(parts) or "a parameter is not valid",
        )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = (
            f"there is no {request.url.path!r} here; the API is under /api/{API_VERSION} "
            f"(its schema: /api/{API_VERSION}/openapi.json)"
            if exc.status_code == 404
            else str(exc.detail)
        )
        result: Response = _refusal(request, exc.status_code, detail, None)
        return result


def create_app(settings: ServerSettings) -> FastAPI:
    """The application serving ``settings.root``'s project.

    Raises:
        ProjectError: the folder is in no pipetrail project.
        RuntimeError: a route declares no need and is not public.
    """
    from pipetrail.config import load_config

    load_config(settings.root.resolve(), must_exist=True)  # refuse a folder that is no project
    context = ServerContext(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        context.close()

    app = FastAPI(
        title="pipetrail",
        version=API_VERSION,
        description="The record of a pipetrail project: runs, artifacts, lineage, models "
        "and approvals. Every route needs an API token (`pipetrail token create`).",
        openapi_url=None,
        redirect_slashes=False,  # a trailing slash is a 404, not a redirect to guess from
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = context
    _install_handlers(app)
    for table in (
        api_runs.routes,
        api_artifacts.routes,
        api_governance.routes,
        api_signing.routes,
        drift_views.api,
        audit_views.api,
        pages.routes,
        pages_governance.routes,
        drift_views.pages,
        audit_views.pages,
    ):
        table.install(app)

    @app.get(
        f"/api/{API_VERSION}/openapi.json",
        include_in_schema=False,
        response_class=JsonResponse,
    )
    def openapi(_: Request, __: Annotated[Principal, Depends(need(Action.READ))]) -> JsonResponse:
        return JsonResponse(app.openapi())

    app.mount(
        "/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static"
    )
    check_every_route_declares(app, PUBLIC)
    app.add_middleware(RequestGuard, max_body=settings.max_body)
    return app
