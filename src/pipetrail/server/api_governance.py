"""``/api/v1``: models, versions, aliases, promotion requests, approvals, audit status.

Writes go through :class:`pipetrail.governance.service.Governance`, acting as the
authenticated user and signing with that user's own key, which the server holds only
when the user put it in the server's key folder (``pipetrail serve --signing-keys``).
Without it the server refuses (403) and records nothing: the user approves from the
command line instead. The library's rules apply as they do there: the requester may not
approve their own request, one person counts once, a service account never approves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipetrail.governance.roles import Action
from pipetrail.server.api_runs import project_of
from pipetrail.server.auth import Principal, need
from pipetrail.server.encoding import JsonResponse
from pipetrail.server.params import ALIAS, MODEL, REQUEST
from pipetrail.server.problems import Problem
from pipetrail.server.routes import RouteTable

if TYPE_CHECKING:
    from pipetrail.governance.service import Governance
    from pipetrail.governance.state import GovernanceState
    from pipetrail.governance.state import Request as PromotionRequest

__all__ = [
    "PromotionBody",
    "VoteBody",
    "acting",
    "body_doc",
    "parse_body",
    "request_dict",
    "routes",
]

routes = RouteTable("/api/v1", tags=["governance"], response_class=JsonResponse)
Reader = Annotated[Principal, Depends(need(Action.READ))]
Requester = Annotated[Principal, Depends(need(Action.REQUEST_PROMOTION))]
Approver = Annotated[Principal, Depends(need(Action.APPROVE))]
ModelName = Annotated[str, PathParam(pattern=MODEL)]
RequestId = Annotated[str, PathParam(pattern=REQUEST, description="A request id or prefix.")]


class PromotionBody(BaseModel):
    """A promotion request: which alias, why, and the risk."""

    model_config = ConfigDict(extra="forbid")
    alias: str = Field(pattern=ALIAS)
    rationale: str = Field(min_length=1, max_length=4000)
    risk: str = Field(pattern=r"^(low|medium|high)$")
    risk_notes: str = Field(default="", max_length=4000)


class VoteBody(BaseModel):
    """An approval or a rejection, with a comment."""

    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=4000)


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI description of a route whose JSON body is ``model``."""
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": schema}}


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    """The request's JSON body as ``model`` (read after the caller is authorized)."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise Problem(415, "send the body as JSON (Content-Type: application/json)")
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        malformed = any(e["type"] == "json_invalid" for e in exc.errors())
        if malformed:
            raise Problem(400, "the body is not valid JSON; send one JSON object") from None
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise Problem(422, f"the body does not fit: {where}") from None


def acting(request: Request, principal: Principal) -> Governance:
    """Governance acting as the caller, signing with their key held by the server (or 403)."""
    from pipetrail.governance.service import Governance

    signer = request.app.state.context.signer_for(principal.user)
    if signer is None:
        raise Problem(
            403,
            f"this server holds no signing key for {principal.user}, so it cannot sign "
            f"for them; act from the command line (`pipetrail approve`, `pipetrail promote`) "
            "or have the operator put the key in the folder given to --signing-keys",
        )
    return Governance(project_of(request), signer=signer)


def _state(request: Request) -> GovernanceState:
    state: GovernanceState = request.app.state.context.governance_state()
    return state


def request_dict(req: PromotionRequest) -> dict[str, Any]:
    """A promotion request as the API and the pages show it."""
    return {
        "request_id": req.request_id,
        "model": req.model,
        "version": req.version,
        "alias": req.alias,
        "by": req.by,
        "ts": req.ts,
        "status": req.status,
        "needed": int(req.policy.get("approvals", 1)),
        "approvals": [{"by": a.by, "comment": a.comment, "ts": a.ts} for a in req.approvals],
        "rejections": [{"by": a.by, "comment": a.comment, "ts": a.ts} for a in req.rejections],
    }


@routes.get("/me", summary="Who the token belongs to, and what they may do")
def me(_: Request, principal: Reader) -> JsonResponse:
    """The user, their roles, the token id, and the session's CSRF token (browser)."""
    from pipetrail.governance.roles import PERMISSIONS

    allowed = sorted({a.value for r in principal.roles for a in PERMISSIONS[r]})
    return JsonResponse(
        {
            "user": principal.user,
            "roles": sorted(r.value for r in principal.roles),
            "may": allowed,
            "token_id": principal.token_id,
            "csrf_token": principal.csrf,
        }
    )


@routes.get("/models", summary="Every model: versions, newest version, aliases")
def models(request: Request, _: Reader) -> JsonResponse:
    """The registry."""
    from pipetrail.governance.views import list_models

    return JsonResponse({"models": list_models(_state(request))})


@routes.get("/models/{model}", summary="A model's versions, aliases and history")
def model(
    request: Request,
    _: Reader,
    model: ModelName,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> JsonResponse:
    """One version's record (default: the newest) with the model's signed history."""
    from pipetrail.governance.views import model_show

    return JsonResponse(model_show(project_of(request), _state(request), model, version))


@routes.get("/requests", summary="Promotion requests")
def requests(
    request: Request,
    _: Reader,
    status: Annotated[str | None, Query(pattern=r"^(open|approved|rejected)$")] = None,
) -> JsonResponse:
    """Every request (or those with ``status``), oldest first."""
    found = sorted(_state(request).requests.values(), key=lambda r: r.seq)
    return JsonResponse(
        {"requests": [request_dict(r) for r in found if status in (None, r.status)]}
    )


@routes.get("/requests/{request_id}", summary="One promotion request")
def promotion_request(request: Request, _: Reader, request_id: RequestId) -> JsonResponse:
    """Its model, version, alias, status and votes."""
    from pipetrail.governance.service import Governance

    state = _state(request)
    found = Governance(project_of(request), user="reader").resolve_request(state, request_id)
    return JsonResponse(request_dict(state.requests[found]))


@routes.post(
    "/models/{model}/versions/{version}/promotions",
    summary="Request that an alias point at this version",
    status_code=201,
    openapi_extra=body_doc(PromotionBody),
)
async def request_promotion(
    request: Request,
    principal: Requester,
    model: ModelName,
    version: Annotated[int, PathParam(ge=1, le=1_000_000)],
) -> JsonResponse:
    """Opens a request, signed by the caller's key (held by the server); checks must pass."""
    from starlette.concurrency import run_in_threadpool

    body: PromotionBody = await parse_body(request, PromotionBody)

    def act() -> dict[str, Any]:
        return acting(request, principal).request_promotion(
            model,
            version,
            body.alias,
            rationale=body.rationale,
            risk=body.risk,
            risk_notes=body.risk_notes,
        )

    return JsonResponse(await run_in_threadpool(act), status_code=201)


async def _vote(request: Request, principal: Principal, request_id: str, kind: str) -> Any:
    from starlette.concurrency import run_in_threadpool

    body: VoteBody = await parse_body(request, VoteBody)

    def act() -> dict[str, Any]:
        gov = acting(request, principal)
        if kind == "approve":
            return gov.approve(request_id, comment=body.comment)
        return gov.reject(request_id, comment=body.comment)

    return JsonResponse(await run_in_threadpool(act))


@routes.post(
    "/requests/{request_id}/approve",
    summary="Approve a request (signed with the caller's key)",
    openapi_extra=body_doc(VoteBody),
)
async def approve(request: Request, principal: Approver, request_id: RequestId) -> JsonResponse:
    """Approves; when that completes the policy, the alias moves in the same transaction."""
    result: JsonResponse = await _vote(request, principal, request_id, "approve")
    return result


@routes.post(
    "/requests/{request_id}/reject",
    summary="Reject a request (signed with the caller's key)",
    openapi_extra=body_doc(VoteBody),
)
async def reject(request: Request, principal: Approver, request_id: RequestId) -> JsonResponse:
    """Rejects; the request is then closed."""
    result: JsonResponse = await _vote(request, principal, request_id, "reject")
    return result


@routes.get("/audit", summary="Whether the governance record verifies, and the ledger's head")
def audit(request: Request, _: Reader) -> JsonResponse:
    """Events, governance signatures checked, and each governance event that fails."""
    project = project_of(request)
    state = _state(request)
    return JsonResponse(
        {
            "events": project.reader().event_count(),
            "governance": {
                "last_seq": state.last_seq,
                "signatures_checked": state.signatures,
                "intact": not state.problems,
                "problems": [
                    {"seq": p.seq, "kind": p.kind, "reason": p.reason} for p in state.problems
                ],
            },
            "full_check": "run `pipetrail audit verify` for the hash chain, derived rows, "
            "the Merkle tree and the checkpoints",
        }
    )
