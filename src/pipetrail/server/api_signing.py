"""``/api/v1``: votes signed by the approver's own key, held where the approver is.

The server never sees the key: the caller asks for the bytes its vote appends
(``POST /requests/{id}/to-sign``), signs each with the Ed25519 key the ledger records for
them (in the browser: WebCrypto, ``static/signing.js``), and sends the signatures
(``POST /requests/{id}/signed``). The server checks them against that recorded key under
the write lock, with the same rules as every vote
(:mod:`pipetrail.governance.remote_signing`): a signature that does not verify, a wrong
key, or the requester approving their own request is refused and nothing is written.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from pipetrail.governance.remote_signing import MAX_SIGNATURES
from pipetrail.governance.roles import Action
from pipetrail.server.api_governance import body_doc, parse_body
from pipetrail.server.api_runs import project_of
from pipetrail.server.auth import Principal, need
from pipetrail.server.encoding import JsonResponse
from pipetrail.server.params import REQUEST
from pipetrail.server.routes import RouteTable

__all__ = ["SignedVoteBody", "VoteDraftBody", "routes"]

routes = RouteTable("/api/v1", tags=["governance"], response_class=JsonResponse)
Approver = Annotated[Principal, Depends(need(Action.APPROVE))]
RequestId = Annotated[str, PathParam(pattern=REQUEST, description="A request id or prefix.")]
_DECISION = r"^(approve|reject)$"
_SIGNATURE = r"^[A-Za-z0-9+/]{86}==$"  # 64 bytes in base64


class VoteDraftBody(BaseModel):
    """The vote to be signed: approve or reject, and its comment."""

    model_config = ConfigDict(extra="forbid")
    decision: str = Field(pattern=_DECISION)
    comment: str = Field(default="", max_length=4000)


class SignedVoteBody(VoteDraftBody):
    """The vote again, with one signature (base64) per event it appends, in order."""

    signatures: list[Annotated[str, Field(pattern=_SIGNATURE)]] = Field(
        min_length=1, max_length=MAX_SIGNATURES
    )


@routes.post(
    "/requests/{request_id}/to-sign",
    summary="The bytes the caller signs to vote with a key the server does not hold",
    openapi_extra=body_doc(VoteDraftBody),
)
async def to_sign(request: Request, principal: Approver, request_id: RequestId) -> JsonResponse:
    """Each event the vote would append, and the exact bytes (base64) its signature covers.

    The vote is checked as a real one would be (refused the same way); nothing is written.
    """
    from pipetrail.governance.remote_signing import vote_to_sign

    body: VoteDraftBody = await parse_body(request, VoteDraftBody)

    def preview() -> dict[str, Any]:
        draft = vote_to_sign(
            project_of(request),
            principal.user,
            request_id,
            approve=body.decision == "approve",
            comment=body.comment,
        )
        return {"request_id": request_id, **draft.to_dict()}

    return JsonResponse(await run_in_threadpool(preview))


@routes.post(
    "/requests/{request_id}/signed",
    summary="Vote with signatures made by the caller's own key",
    openapi_extra=body_doc(SignedVoteBody),
)
async def signed(request: Request, principal: Approver, request_id: RequestId) -> JsonResponse:
    """Checks each signature against the caller's recorded key, then records the vote."""
    from pipetrail.governance.remote_signing import vote_signed

    body: SignedVoteBody = await parse_body(request, SignedVoteBody)

    def act() -> dict[str, Any]:
        return vote_signed(
            project_of(request),
            principal.user,
            request_id,
            approve=body.decision == "approve",
            signatures=body.signatures,
            comment=body.comment,
        )

    return JsonResponse(await run_in_threadpool(act))
