"""The governance pages: models, promotion and approval forms, compare, lineage.

Models with their versions, aliases and requests; comparing two runs; the lineage graph
(drawn by cytoscape.js, listed in a table for keyboards and screen readers). The audit
page is :mod:`pipetrail.server.audit_views`.

The forms post to routes that need the same actions as the API (request a promotion,
approve or reject) and carry the session's CSRF token; the server signs with the user's
own key only (docs/governance.md). A refusal re-renders the page with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pipetrail.errors import PipetrailError
from pipetrail.governance.roles import Action
from pipetrail.server.api_governance import acting, request_dict
from pipetrail.server.api_runs import project_of
from pipetrail.server.auth import Principal, need
from pipetrail.server.pages import templates
from pipetrail.server.params import ALIAS, LINEAGE_REF, MODEL, REQUEST, RUN_REF
from pipetrail.server.problems import Problem, log, status_of
from pipetrail.server.routes import RouteTable

if TYPE_CHECKING:
    from pipetrail.read import Project

__all__ = ["routes"]

routes = RouteTable(include_in_schema=False, response_class=HTMLResponse)
Viewer = Annotated[Principal, Depends(need(Action.READ))]
Requester = Annotated[Principal, Depends(need(Action.REQUEST_PROMOTION))]
Approver = Annotated[Principal, Depends(need(Action.APPROVE))]


def _models_page(
    request: Request, principal: Principal, *, error: str | None = None, status: int = 200
) -> Response:
    from pipetrail.governance.views import list_models

    state = request.app.state.context.governance_state()
    models = list_models(state)
    for model in models:
        model["versions_list"] = sorted(state.models[model["model"]])
    requests = [request_dict(r) for r in sorted(state.requests.values(), key=lambda r: r.seq)]
    return templates.TemplateResponse(
        request,
        "models.html",
        {
            "title": "Models",
            "user": principal,
            "models": models,
            "requests": requests,
            "may_request": principal.may(Action.REQUEST_PROMOTION),
            "may_approve": principal.may(Action.APPROVE),
            "error": error,
        },
        status_code=status,
    )


@routes.get("/models")
def models_page(request: Request, principal: Viewer) -> Response:
    """Models, versions, aliases; promotion requests with their votes and forms."""
    return _models_page(request, principal)


async def _act(request: Request, principal: Principal, act: Any) -> Response:
    """Run a governance act; on success back to the models page, else the page says why."""
    try:
        await run_in_threadpool(act)
    except Problem as exc:
        error, status = exc.detail, exc.status
    except PipetrailError as exc:
        error, status = str(exc), status_of(exc)
    else:
        return RedirectResponse("/models", status_code=303)
    log.warning(
        "refused %s %r with %d for %s: %s",
        request.method, request.url.path, status, principal.user, error,
    )  # fmt: skip
    # Every read of the project happens on a worker thread, never on the event loop's.
    page: Response = await run_in_threadpool(
        lambda: _models_page(request, principal, error=error, status=status)
    )
    return page


@routes.post("/models/{model}/promote")
async def promote_form(
    request: Request,
    principal: Requester,
    model: Annotated[str, PathParam(pattern=MODEL)],
    version: Annotated[int, Form(ge=1, le=1_000_000)],
    alias: Annotated[str, Form(pattern=ALIAS)],
    rationale: Annotated[str, Form(min_length=1, max_length=4000)],
    risk: Annotated[str, Form(pattern=r"^(low|medium|high)$")],
) -> Response:
    """Open a promotion request from the form (signed with the caller's key)."""
    return await _act(
        request,
        principal,
        lambda: acting(request, principal).request_promotion(
            model, version, alias, rationale=rationale, risk=risk
        ),
    )


@routes.post("/requests/{request_id}/vote")
async def vote_form(
    request: Request,
    principal: Approver,
    request_id: Annotated[str, PathParam(pattern=REQUEST)],
    decision: Annotated[str, Form(pattern=r"^(approve|reject)$")],
    comment: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Approve or reject a request from the form (signed with the caller's key)."""

    def act() -> Any:
        gov = acting(request, principal)
        vote = gov.approve if decision == "approve" else gov.reject
        return vote(request_id, comment=comment)

    return await _act(request, principal, act)


@routes.get("/compare")
def compare_page(
    request: Request,
    principal: Viewer,
    a: Annotated[str | None, Query(pattern=RUN_REF)] = None,
    b: Annotated[str | None, Query(pattern=RUN_REF)] = None,
) -> Response:
    """Pick two runs: the verdict, parameters that differ, metric deltas and overlays."""
    project = project_of(request)
    runs = [(r.id, r.name or r.id) for r in project.runs(limit=100)]
    diff = project.diff(a, b).to_dict() if a and b else None
    overlays = _overlays(project, a, b) if a and b else []
    return templates.TemplateResponse(
        request,
        "compare.html",
        {
            "title": "Compare",
            "user": principal,
            "runs": runs,
            "a": a,
            "b": b,
            "diff": diff,
            "overlays": overlays,
        },
    )


def _overlays(project: Project, a: str, b: str) -> list[dict[str, Any]]:
    """Per metric name either run logged: both runs' series on one chart, and the values."""
    from pipetrail.server.charts import Series, overlay_chart

    picked = [
        (f"{letter}: {run.id}", run.metrics())
        for letter, run in zip("AB", (project.run(a), project.run(b)), strict=True)
    ]
    out = []
    for i, name in enumerate(sorted({n for _, metrics in picked for n in metrics})):
        series = [
            Series(label, m.steps, m.values) if m else Series(f"{label} (not logged)", (), ())
            for label, m in ((label, metrics.get(name)) for label, metrics in picked)
        ]
        out.append(
            {
                "name": name,
                "chart": overlay_chart(f"overlay-{i}", name, series),
                "series": [
                    {"label": s.label, "points": list(zip(s.steps, s.values, strict=False))}
                    for s in series
                ],
            }
        )
    return out


@routes.get("/lineage")
def lineage_page(
    request: Request,
    principal: Viewer,
    ref: Annotated[str, Query(pattern=LINEAGE_REF)],
    direction: Annotated[str, Query(pattern=r"^(up|down)$")] = "up",
    depth: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> Response:
    """The lineage graph of a run, step run or artifact: pan, zoom, click for a record."""
    from pipetrail.lineage.queries import downstream, upstream

    query = upstream if direction == "up" else downstream
    graph = query(project_of(request).reader(), ref, max_depth=depth).to_dict()
    return templates.TemplateResponse(
        request,
        "lineage.html",
        {"title": "Lineage", "user": principal, "ref": ref, "direction": direction, "graph": graph},
    )
