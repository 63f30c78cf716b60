"""``/api/v1/runs``: list and search runs, one run's record, steps, why, logs and metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam

from pipetrail.governance.roles import Action
from pipetrail.server.auth import Principal, need
from pipetrail.server.encoding import JsonResponse
from pipetrail.server.params import FILTER_PAIR, NAME, RUN_REF, STEP
from pipetrail.server.problems import Problem
from pipetrail.server.routes import RouteTable

if TYPE_CHECKING:
    from pipetrail.core.access import AccessGate
    from pipetrail.read import Project, Run
    from pipetrail.store import ContentStore, StoredArtifact

__all__ = ["routes", "run_brief"]

routes = RouteTable("/api/v1", tags=["runs"], response_class=JsonResponse)
Reader = Annotated[Principal, Depends(need(Action.READ))]
RunRef = Annotated[str, PathParam(pattern=RUN_REF, description="A run id, prefix or 'latest'.")]
StepName = Annotated[str, PathParam(pattern=STEP, description="A node id or step name.")]


def project_of(request: Request) -> Project:
    """This thread's open project."""
    project: Project = request.app.state.context.project()
    return project


def caller_gate(project: Project, principal: Principal) -> AccessGate:
    """The access gate deciding (and recording) sealed reads for the authenticated caller."""
    from pipetrail.governance.access import ReadGate

    return ReadGate(project, user=principal.user)


def run_brief(run: Run) -> dict[str, Any]:
    """The fields of a run a listing shows."""
    return {
        "run_id": run.id,
        "name": run.name,
        "pipeline": run.pipeline,
        "status": run.status,
        "purpose": run.purpose,
        "params": run.params,
        "seed": run.seed,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "tags": run.tags,
        "error": run.error,
    }


def _pairs(values: list[str], what: str) -> dict[str, Any]:
    from pipetrail.ledger.run_query import parse_value

    found: dict[str, Any] = {}
    for text in values:
        key, _, value = text.partition("=")
        found[key] = parse_value(value) if what == "param" else value
    return found


@routes.get("/runs", summary="List and search runs, newest first")
def list_runs(
    request: Request,
    _: Reader,
    pipeline: Annotated[str | None, Query(pattern=NAME)] = None,
    status: Annotated[
        str | None, Query(pattern=r"^(running|completed|failed|crashed|interrupted)$")
    ] = None,
    purpose: Annotated[str | None, Query(pattern=r"^(run|reproduce|check)$")] = None,
    param: Annotated[list[str], Query(description="NAME=VALUE; repeatable")] = [],  # noqa: B006 - FastAPI copies it
    tag: Annotated[list[str], Query(description="KEY=VALUE; repeatable")] = [],  # noqa: B006 - FastAPI copies it
    where: Annotated[str | None, Query(max_length=500)] = None,
    sort: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9A-Za-z_-]{4,64}$")] = None,
) -> JsonResponse:
    """Runs matching every filter; ``next_cursor`` fetches the next page (default order)."""
    import re

    for text in (*param, *tag):
        if not re.fullmatch(FILTER_PAIR, text):
            raise Problem(422, f"{text!r} is not KEY=VALUE (a filter of params or tags)")
    if cursor is not None and sort is not None:
        raise Problem(422, "cursor pages the default order (newest first); leave out sort")
    runs = project_of(request).runs(
        pipeline=pipeline,
        status=status,
        purpose=purpose,
        params=_pairs(param, "param") or None,
        tags=_pairs(tag, "tag") or None,
        where=where or (),
        sort=sort,
        since=since,
        limit=limit + 1,
        before=cursor,
    )
    page = runs[:limit]
    more = len(runs) > limit and sort is None
    return JsonResponse(
        {"runs": [run_brief(r) for r in page], "next_cursor": page[-1].id if more else None}
    )


@routes.get("/runs/{run_ref}", summary="One run's record")
def show_run(request: Request, _: Reader, run_ref: RunRef) -> JsonResponse:
    """The whole record: params, seed, git, environment digest, tags, notes."""
    run = project_of(request).run(run_ref)
    record = run.record
    return JsonResponse(
        run_brief(run)
        | {
            "owner": record.owner,
            "host": record.host,
            "git": record.git,
            "environment": record.environment,
            "steps_total": record.steps_total,
            "pipeline_fingerprint": record.pipeline_fingerprint,
            "record": record.record,
            "notes": [asdict(note) for note in run.notes],
        }
    )


@routes.get("/runs/{run_ref}/steps", summary="A run's step runs, in the order they started")
def run_steps(request: Request, _: Reader, run_ref: RunRef) -> JsonResponse:
    """Each step run: status, cache decision and reason, digests, timings, resources."""
    run = project_of(request).run(run_ref)
    return JsonResponse({"run_id": run.id, "steps": [asdict(step) for step in run.steps]})


@routes.get("/runs/{run_ref}/steps/{step}/why", summary="Why a step was a cache hit or miss")
def step_why(request: Request, _: Reader, run_ref: RunRef, step: StepName) -> JsonResponse:
    """The cache key's components, and which changed since the step's previous run."""
    project = project_of(request)
    return JsonResponse(asdict(project.why(project.run(run_ref).id, step)))


@routes.get("/runs/{run_ref}/logs", summary="The captured output of a run's steps")
def run_logs(
    request: Request,
    principal: Reader,
    run_ref: RunRef,
    step: Annotated[str | None, Query(pattern=STEP)] = None,
) -> JsonResponse:
    """stdout, stderr and logging output of each step (or one), as recorded.

    The sealed log of a step that handled sensitive data is decrypted only for a caller
    whose role or grant allows reading its label; anyone else is refused (403, recorded).
    """
    from pipetrail.lineage.readout import step_logs

    project = project_of(request)
    run_id = project.run(run_ref).id
    gate = caller_gate(project, principal)

    def store_for(record: StoredArtifact) -> ContentStore:
        # The caller's roles and grants decide; the read or refusal is recorded.
        return project.store_for(record, action="logs", run_id=run_id, gate=gate)

    found = step_logs(project.reader(), project.store, run_id, step, store_for=store_for)
    return JsonResponse({"run_id": run_id, "steps": [asdict(log) for log in found]})


@routes.get("/runs/{run_ref}/metrics", summary="The metric series a run logged")
def run_metrics(
    request: Request,
    _: Reader,
    run_ref: RunRef,
    step: Annotated[str | None, Query(pattern=STEP)] = None,
) -> JsonResponse:
    """Each series: its node, steps and values (non-finite values as null)."""
    run = project_of(request).run(run_ref)
    series = run.metrics(step)
    return JsonResponse(
        {
            "run_id": run.id,
            "metrics": {
                name: {"node_id": s.node_id, "steps": list(s.steps), "values": list(s.values)}
                for name, s in series.items()
            },
        }
    )
