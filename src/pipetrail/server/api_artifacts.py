"""``/api/v1``: artifacts (metadata, verified bytes), lineage, and comparing two runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse

from pipetrail.errors import PermissionDeniedError
from pipetrail.governance.roles import Action, roles_allowing
from pipetrail.server.api_runs import caller_gate, project_of
from pipetrail.server.auth import Principal, need
from pipetrail.server.encoding import JsonResponse
from pipetrail.server.params import ARTIFACT_REF, LINEAGE_REF, RUN_REF
from pipetrail.server.problems import Problem, log
from pipetrail.server.routes import RouteTable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.lineage.readout import OutputRef
    from pipetrail.read import Project

__all__ = ["routes"]

routes = RouteTable("/api/v1", tags=["artifacts"], response_class=JsonResponse)
Reader = Annotated[Principal, Depends(need(Action.READ))]
ArtifactRef = Annotated[
    str, PathParam(pattern=ARTIFACT_REF, description="A digest (or prefix), or RUN:STEP.")
]


def _label(project: Project, found: OutputRef) -> str:
    """The classification a sealed artifact was recorded with (``confidential`` if none)."""
    row = project.reader().artifact(found.digest) or {}
    label = (row.get("meta") or {}).get("classification")
    return str(label) if label else "confidential"


def _refuse_sealed(principal: Principal, found: OutputRef, label: str, why: str) -> NoReturn:
    needed = " or ".join(role.value for role in roles_allowing(Action.READ_SENSITIVE))
    held = ", ".join(sorted(role.value for role in principal.roles)) or "no role"
    raise Problem(
        403,
        f"artifact {found.digest} is labelled {label!r} and stored sealed; {principal.user} "
        f"may not {Action.READ_SENSITIVE.value}: that needs the role {needed} or an open "
        f"grant for {label}, and {principal.user} has {held} ({why})",
        extra={"classification": label, "artifact": found.digest},
    )


@routes.get("/artifacts/{ref}", summary="An artifact's record")
def artifact(request: Request, principal: Reader, ref: ArtifactRef) -> JsonResponse:
    """Digest, stored object, serializer, size, and the step output it is (for RUN:STEP).

    A sealed artifact's record says so with its label; its digest is the keyed digest
    the ledger records, and its size is shown only to callers who may read sensitive data.
    """
    from dataclasses import asdict

    from pipetrail.lineage.readout import resolve_output

    project = project_of(request)
    found = resolve_output(project.reader(), ref)
    body = asdict(found) | {"suggested_name": found.suggested_name}
    if found.sealed:
        body["classification"] = _label(project, found)
        if not principal.may(Action.READ_SENSITIVE):
            body["size"] = None
    return JsonResponse(body)


@routes.get(
    "/artifacts/{ref}/content",
    summary="An artifact's bytes, once they hash to their digest (sealed ones: admins only)",
    response_class=StreamingResponse,
)
def artifact_content(request: Request, principal: Reader, ref: ArtifactRef) -> StreamingResponse:
    """The bytes as stored (verified against the digest first; corrupt bytes: 500).

    A sealed (sensitive) artifact is decrypted for a caller whose roles allow reading
    sensitive data, and refused (403, naming its label) to anyone else.
    """
    from pipetrail.lineage.readout import open_output, resolve_output
    from pipetrail.store.serializers.base import StoredArtifact

    project = project_of(request)
    found = resolve_output(project.reader(), ref)
    store = project.store
    if found.sealed:
        label = _label(project, found)
        meta = {"sealed": 1, "classification": label}
        record = StoredArtifact(
            found.digest, found.blob, found.serializer, "", found.size or 0, meta
        )
        try:
            # The caller's roles and grants decide; the read or refusal is recorded
            # under the caller's name (docs/data-handling.md).
            store = project.store_for(record, action="serve", gate=caller_gate(project, principal))
        except PermissionDeniedError as exc:
            _refuse_sealed(principal, found, label, str(exc))
        log.info("%s downloads the %s artifact %s", principal.user, label, found.digest)
    stream = open_output(store, found)

    def chunks() -> Iterator[bytes]:
        with stream:
            while block := stream.read(1 << 16):
                yield block

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{found.suggested_name}"',
            "X-Pipetrail-Digest": found.digest,
            "Cache-Control": "no-store",
        },
    )


@routes.get("/lineage/{direction}", summary="Provenance (up) or impact (down) of a ref")
def lineage(
    request: Request,
    _: Reader,
    direction: Annotated[str, PathParam(pattern=r"^(up|down)$")],
    ref: Annotated[str, Query(pattern=LINEAGE_REF)],
    depth: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> JsonResponse:
    """The lineage graph: nodes (artifacts, step runs) with depths, edges and runs."""
    from pipetrail.lineage.queries import downstream, upstream

    query = upstream if direction == "up" else downstream
    return JsonResponse(query(project_of(request).reader(), ref, max_depth=depth).to_dict())


@routes.get("/lineage-path", summary="A shortest path between two refs")
def lineage_path(
    request: Request,
    _: Reader,
    a: Annotated[str, Query(pattern=LINEAGE_REF)],
    b: Annotated[str, Query(pattern=LINEAGE_REF)],
) -> JsonResponse:
    """The path from ``a`` to ``b`` (or back); 404 when neither derives from the other."""
    from pipetrail.lineage.queries import path

    found = path(project_of(request).reader(), a, b)
    if found is None:
        raise Problem(404, f"neither {a!r} nor {b!r} is derived from the other")
    return JsonResponse(found.to_dict())


@routes.get("/compare", summary="What differs between run A and run B, with a verdict")
def compare(
    request: Request,
    _: Reader,
    a: Annotated[str, Query(pattern=RUN_REF)],
    b: Annotated[str, Query(pattern=RUN_REF)],
) -> JsonResponse:
    """Params, seeds, sources, steps, environment, metric deltas and the verdict."""
    return JsonResponse(project_of(request).diff(a, b).to_dict())
