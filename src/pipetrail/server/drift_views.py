"""Drift between two runs, per step and column: ``GET /api/v1/drift`` and the drift page.

Both compare the table profiles of run B against run A (or against the pooled profiles of
the runs before it) with :func:`pipetrail.observability.drift.drift_runs`, thresholds from
``[drift]`` in ``pipetrail.toml``. Profiles of sensitive outputs are never recorded
(docs/data-handling.md), so nothing here can show a sealed table's statistics.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from pipetrail.governance.roles import Action
from pipetrail.server.api_runs import project_of
from pipetrail.server.auth import Principal, need
from pipetrail.server.encoding import JsonResponse
from pipetrail.server.pages import templates
from pipetrail.server.params import RUN_REF
from pipetrail.server.problems import Problem
from pipetrail.server.routes import RouteTable

__all__ = ["api", "pages"]

api = RouteTable("/api/v1", tags=["drift"], response_class=JsonResponse)
pages = RouteTable(include_in_schema=False, response_class=HTMLResponse)
Reader = Annotated[Principal, Depends(need(Action.READ))]
RunA = Annotated[str | None, Query(pattern=RUN_REF, description="The baseline run.")]
RunB = Annotated[str | None, Query(pattern=RUN_REF, description="The run compared with it.")]
Pooled = Annotated[
    int | None,
    Query(ge=1, le=100, description="Pool this many runs as the baseline (A optional)."),
]


def _report(request: Request, a: str | None, b: str, baseline_runs: int | None) -> dict[str, Any]:
    from pipetrail.observability.drift import drift_runs

    report: dict[str, Any] = drift_runs(
        project_of(request), a, b, baseline_runs=baseline_runs
    ).to_dict()
    return report


@api.get("/drift", summary="Which columns of which steps' tables drift from run A to run B")
def drift(
    request: Request, _: Reader, b: RunB = None, a: RunA = None, baseline_runs: Pooled = None
) -> JsonResponse:
    """Per paired step output its rows and, per column, the measures and whether it drifts.

    Also the origins (the steps where the drift enters) and the thresholds used.
    """
    if b is None or (a is None and baseline_runs is None):
        raise Problem(
            422,
            "give b (the run to check) and a (the baseline run), or b and baseline_runs=N "
            "to compare it with the N runs of its pipeline before it",
        )
    return JsonResponse(_report(request, a, b, baseline_runs))


@pages.get("/drift")
def drift_page(request: Request, principal: Reader, a: RunA = None, b: RunB = None) -> Response:
    """Pick two runs; see, per step and column, what drifts and where the drift starts."""
    project = project_of(request)
    runs = [(r.id, f"{r.name or r.id} ({r.pipeline})") for r in project.runs(limit=100)]
    report = _report(request, a, b, None) if a and b else None
    return templates.TemplateResponse(
        request,
        "drift.html",
        {"title": "Drift", "user": principal, "runs": runs, "a": a, "b": b, "report": report},
    )
