"""The web pages: log in and out, the runs table, a run.

Pages are rendered on the server (Jinja2, autoescaped) and need no script to work. The
login form takes an API token; on success the browser gets the session cookie holding
it (HttpOnly, Secure, SameSite=Strict), and every form that changes something carries
the session's CSRF token. The login form itself is protected by a one-time value in a
cookie of its own, which the form must send back.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from pipetrail.errors import IdentityError
from pipetrail.governance.roles import Action
from pipetrail.server.api_runs import project_of, run_brief
from pipetrail.server.auth import Principal, need
from pipetrail.server.params import NAME, RUN_REF
from pipetrail.server.problems import Problem, log
from pipetrail.server.routes import RouteTable

if TYPE_CHECKING:
    from pipetrail.server.context import ServerContext

__all__ = ["PUBLIC_PAGES", "routes", "templates"]

routes = RouteTable(include_in_schema=False, response_class=HTMLResponse)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
Viewer = Annotated[Principal, Depends(need(Action.READ))]
LOGIN_COOKIE = "pipetrail_login"
SESSION_HOURS = 12
PUBLIC_PAGES = {("GET", "/login"), ("POST", "/login")}


def _settings(request: Request) -> Any:
    context: ServerContext = request.app.state.context
    return context.settings


def _login_page(request: Request, status: int, error: str | None = None) -> Response:
    value = secrets.token_urlsafe(24)
    page = templates.TemplateResponse(
        request,
        "login.html",
        {"title": "Log in", "user": None, "error": error, "login_csrf": value},
        status_code=status,
    )
    page.set_cookie(
        LOGIN_COOKIE, value, max_age=600, path="/login", secure=True, httponly=True,
        samesite="strict",
    )  # fmt: skip
    return page


@routes.get("/login")
def login_form(request: Request) -> Response:
    """The login form."""
    return _login_page(request, 200)


@routes.post("/login")
async def login(request: Request) -> Response:
    """Check the token; on success set the session cookie and go to the runs."""
    from starlette.concurrency import run_in_threadpool

    from pipetrail.governance.tokens import check_token

    form = await request.form()
    token, sent = form.get("token"), form.get("login_csrf")
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        log.warning("refused POST '/login' with 403: the login form's one-time value is missing")
        return _login_page(request, 403, "The form expired; log in again.")
    if not isinstance(token, str) or not token.strip():
        return _login_page(request, 401, "Give your API token.")
    try:
        # The project is opened and read in the worker thread: a SQLite connection must
        # stay in the thread that opened it.
        record = await run_in_threadpool(
            lambda: check_token(project_of(request).reader(), token.strip())
        )
    except IdentityError as exc:
        log.warning("refused POST '/login' with 401: %s", exc)
        return _login_page(request, 401, str(exc))
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        _settings(request).session_cookie, token.strip(), max_age=SESSION_HOURS * 3600,
        path="/", secure=True, httponly=True, samesite="strict",
    )  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    log.info("%s logged in (token %s)", record.user, record.token_id)
    return response


@routes.post("/logout")
def logout(request: Request, principal: Viewer) -> Response:
    """End the browser session (the token itself stays valid)."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(_settings(request).session_cookie, path="/")
    log.info("%s logged out", principal.user)
    return response


#: A column of the runs table: ``params.NAME``, ``metrics.NAME`` (``NODE.NAME`` too) or
#: ``tags.KEY``.
COLUMN = r"^(params|metrics|tags)\.[A-Za-z0-9_][A-Za-z0-9_.:\[\]-]{0,199}$"
MAX_COLUMNS = 12


@routes.get("/")
def runs_page(
    request: Request,
    principal: Viewer,
    pipeline: Annotated[str | None, Query(pattern=r"^$|" + NAME)] = None,
    status: Annotated[
        str | None, Query(pattern=r"^(|running|completed|failed|crashed|interrupted)$")
    ] = None,
    where: Annotated[str | None, Query(max_length=500)] = None,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9A-Za-z_-]{4,64}$")] = None,
    col: Annotated[list[str], Query(description="a column; repeatable")] = [],  # noqa: B006 - FastAPI copies it
) -> Response:
    """The runs table: filters, parameter and metric columns, pages of 50.

    Without ``col`` the table shows the first eight parameter names of the page; each
    ``col`` (``params.C``, ``metrics.f1``, ``tags.team``; up to 12) picks a column instead.
    """
    import re

    from pipetrail.ledger.run_query import field_values

    chosen = list(dict.fromkeys(c for c in col if c))
    bad = [c for c in chosen if not re.fullmatch(COLUMN, c)]
    if bad or len(chosen) > MAX_COLUMNS:
        raise Problem(
            422,
            f"col: {bad[0]!r} is not a column; give params.NAME, metrics.NAME or tags.KEY"
            if bad
            else f"col: at most {MAX_COLUMNS} columns, {len(chosen)} given",
        )
    project = project_of(request)
    runs = project.runs(
        pipeline=pipeline or None,
        status=status or None,
        where=where or (),
        limit=51,
        before=cursor,
    )
    page = [run_brief(r) for r in runs[:50]]
    columns = chosen
    if not columns:
        columns = [f"params.{n}" for n in sorted({n for r in page for n in r["params"]})[:8]]
    values = field_values(project.reader(), [r["run_id"] for r in page], columns)
    for run in page:
        run["columns"] = [values[run["run_id"]].get(c) for c in columns]
    return templates.TemplateResponse(
        request,
        "runs.html",
        {
            "title": "Runs",
            "user": principal,
            "runs": page,
            "columns": columns,
            "filters": {"pipeline": pipeline, "status": status, "where": where},
            "next_query": _next_query(page, runs, pipeline, status, where, chosen),
        },
    )


def _next_query(
    page: list[dict[str, Any]],
    runs: list[Any],
    pipeline: str | None,
    status: str | None,
    where: str | None,
    columns: list[str],
) -> str | None:
    """The query string of the next page (same filters and columns), or None at the end."""
    from urllib.parse import urlencode

    if len(runs) <= 50:
        return None
    pairs = [("cursor", page[-1]["run_id"])]
    pairs += [
        (k, v) for k, v in (("pipeline", pipeline), ("status", status), ("where", where)) if v
    ]
    pairs += [("col", c) for c in columns]
    return urlencode(pairs)


@routes.get("/runs/{run_ref}")
def run_page(
    request: Request, principal: Viewer, run_ref: Annotated[str, PathParam(pattern=RUN_REF)]
) -> Response:
    """One run: record, parameters, steps, metric charts, contracts, data operations."""
    from pipetrail.execution.explain import run_summary
    from pipetrail.server.charts import line_chart

    project = project_of(request)
    run = project.run(run_ref)
    summary = run_summary(project.reader(), run.id)
    charts = [
        {"name": name, "node_id": s.node_id, "steps": list(s.steps), "values": list(s.values),
         "chart": line_chart(f"chart-{i}", name, s.steps, s.values)}
        for i, (name, s) in enumerate(sorted(run.metrics().items()))
    ]  # fmt: skip
    steps = summary["steps"]
    return templates.TemplateResponse(
        request,
        "run.html",
        {
            "title": f"Run {run.id}",
            "user": principal,
            "run": run_brief(run) | {"git": run.record.git, "environment": run.record.environment},
            "steps": run.steps,
            "charts": charts,
            "metric_values": summary.get("metrics") or [],
            "contracts": [s for s in steps if s.get("contracts")],
            "data_ops": [(s["node_id"], op) for s in steps for op in s.get("data_ops") or []],
            "labelled": [s for s in steps if s.get("classification")],
        },
    )
