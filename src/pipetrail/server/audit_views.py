"""The audit page and its API: chain verification, checkpoints, audit bundles.

The page (and ``GET /api/v1/audit/checkpoints``) re-hashes the ledger's chain and checks
its derived rows and Merkle tree (``pipetrail audit verify``'s ledger check; the verdict
is kept while no event is appended, :mod:`pipetrail.server.audit_cache`), verifies
the governance signatures, and checks the ledger against every checkpoint kept where
``[audit] checkpoints`` in ``pipetrail.toml`` says, with the keys listed there; the
newest checkpoint is shown. ``GET /audit/bundle`` (and ``/api/v1/audit/bundle``) writes
the offline audit bundle of a run or a model (``pipetrail audit bundle``), signed with
the caller's own key held by the server (``--signing-keys``), for the roles that may
export audit bundles (approver, admin); the bundle's checkpoint is also kept in the
``[audit] checkpoints`` witness, as ``pipetrail audit bundle`` keeps it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.background import BackgroundTask

from pipetrail.config_tables import project_table
from pipetrail.errors import GovernanceError, ProjectError
from pipetrail.governance.roles import Action
from pipetrail.server.api_runs import project_of
from pipetrail.server.auth import Principal, need
from pipetrail.server.encoding import JsonResponse
from pipetrail.server.pages import templates
from pipetrail.server.problems import Problem, log
from pipetrail.server.routes import RouteTable

if TYPE_CHECKING:
    from pipetrail.read import Project

__all__ = ["api", "chain_status", "checkpoint_status", "pages"]

api = RouteTable("/api/v1", tags=["audit"], response_class=JsonResponse)
pages = RouteTable(include_in_schema=False, response_class=HTMLResponse)
Reader = Annotated[Principal, Depends(need(Action.READ))]
Exporter = Annotated[Principal, Depends(need(Action.EXPORT_AUDIT))]
# A run id or prefix, or MODEL, MODEL@VERSION.
SCOPE = r"^([0-9A-Za-z_-]{4,64}|latest|[A-Za-z0-9][A-Za-z0-9_.-]{0,199}(@[1-9][0-9]{0,8})?)$"
Scope = Annotated[str, Query(pattern=SCOPE, description="A run, or MODEL[@VERSION].")]


def chain_status(project: Project) -> dict[str, Any]:
    """The ledger's own check: hash chain and head, derived rows, Merkle tree."""
    report = project.ledger.verify()
    return {
        "ok": report.ok,
        "chain_ok": report.chain_ok,
        "checked": report.checked,
        "first_bad_seq": report.first_bad_seq,
        "reason": report.reason,
        "derived_checked": report.derived_checked,
        "derived_problems": len(report.derived),
    }


def _location(project: Project) -> Path | None:
    """Where ``[audit] checkpoints`` keeps the checkpoints (None: not configured)."""
    try:
        table = project_table(project.root, "audit")
    except ProjectError:
        return None
    where = table.get("checkpoints") if isinstance(table, dict) else None
    if not isinstance(where, str) or not where:
        return None
    path = Path(where)
    return path if path.is_absolute() else project.root / path


def checkpoint_status(project: Project, chain: dict[str, Any]) -> dict[str, Any]:
    """Every kept checkpoint checked against the ledger, and the newest one."""
    from pipetrail.governance.audit_trail import verify_checkpoints
    from pipetrail.governance.witness import KEYS_FILE, Witness

    location = _location(project)
    if location is None:
        return {
            "configured": False,
            "ok": None,
            "detail": 'no checkpoints are kept: set [audit] checkpoints = "PATH" in '
            "pipetrail.toml and sign them with `pipetrail audit checkpoint`",
        }
    base: dict[str, Any] = {"configured": True, "location": str(location)}
    witness = Witness(location)
    try:
        keys, notes = witness.keys(), witness.notes()
    except GovernanceError as exc:
        return base | {"ok": False, "detail": str(exc)}
    if not keys:
        return base | {
            "ok": False,
            "detail": f"no key is trusted to sign the checkpoints: list them in "
            f"{location / KEYS_FILE} (NAME ed25519:BASE64 per line)",
        }
    if not notes:
        return base | {"ok": None, "detail": f"no checkpoint is kept in {witness} yet"}
    if not chain["ok"]:
        return base | {
            "ok": False,
            "detail": "not checked: the ledger itself does not verify (see above)",
        }
    report = verify_checkpoints(project.ledger.db, notes, keys).to_dict()
    readable = [c for c in report["checkpoints"] if c["size"] is not None]
    newest = max(readable, key=lambda c: (c["size"], c["time"] or ""), default=None)
    return base | {
        "ok": report["ok"],
        "checked": report["checked"],
        "size": report["size"],
        "newest": newest,
        "failures": [c for c in report["checkpoints"] if not c["ok"]],
        "detail": "",
    }


Verify = Annotated[
    str | None,
    Query(pattern=r"^now$", description="`now`: check the whole ledger again, whatever is kept."),
]


def _chain(request: Request, project: Project, verify: str | None) -> dict[str, Any]:
    """The chain's verdict, kept while the head does not move (see audit_cache)."""
    result: dict[str, Any] = request.app.state.context.chain_checks.status(
        project, fresh=verify == "now"
    )
    return result


@api.get("/audit/checkpoints", summary="The ledger's chain and its kept checkpoints, checked")
def audit_checkpoints(request: Request, _: Reader, verify: Verify = None) -> JsonResponse:
    """The chain check (with when it ran in full), every checkpoint's verdict, the newest."""
    project = project_of(request)
    chain = _chain(request, project, verify)
    return JsonResponse({"chain": chain, "checkpoints": checkpoint_status(project, chain)})


def _bundle(request: Request, principal: Principal, ref: str) -> Response:
    import tempfile

    from pipetrail.verify.bundle import parse_scope, registered_models, write_bundle

    signer = request.app.state.context.signer_for(principal.user)
    if signer is None:
        raise Problem(
            403,
            f"this server holds no signing key for {principal.user}, so it cannot sign a "
            "bundle for them; run `pipetrail audit bundle REF -o FILE`, or have the operator "
            "put the key in the folder given to --signing-keys",
        )
    project = project_of(request)
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bundle-"))
    out = folder / "bundle.tar"
    try:
        made = write_bundle(project, parse_scope(ref, registered_models(project)), out, signer)
    except BaseException:
        _remove(folder)
        raise
    headers = {"Cache-Control": "no-store"}
    location = _location(project)
    if location is not None:  # the bundle's checkpoint is kept outside, as the CLI keeps it
        from pipetrail.governance.witness import Witness

        try:
            kept = Witness(location).write(made.checkpoint, made.note, signer=signer.name)
        except BaseException:
            _remove(folder)
            raise
        headers["X-Pipetrail-Checkpoint-Kept"] = kept.encode("ascii", "replace").decode()
        log.info("kept the checkpoint of %s's bundle of %s in %s", principal.user, ref, kept)
    log.info("%s exported the audit bundle of %s (%d events)", principal.user, ref, made.events)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in ref)
    return FileResponse(
        out,
        media_type="application/x-tar",
        filename=f"audit-{name}.tar",
        headers=headers,
        background=BackgroundTask(_remove, folder),
    )


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


@api.get(
    "/audit/bundle",
    summary="The offline audit bundle of a run or a model (a tar file)",
    response_class=FileResponse,
)
def audit_bundle_api(request: Request, principal: Exporter, ref: Scope) -> Response:
    """Written and signed for the caller with their key held by the server (else 403)."""
    return _bundle(request, principal, ref)


@pages.get("/audit/bundle", response_class=FileResponse)
def audit_bundle_page(request: Request, principal: Exporter, ref: Scope) -> Response:
    """The bundle download of the audit page's form."""
    return _bundle(request, principal, ref)


@pages.get("/audit")
def audit_page(request: Request, principal: Reader, verify: Verify = None) -> Response:
    """Chain and checkpoint verification, the newest checkpoint, the bundle form."""
    project = project_of(request)
    chain = _chain(request, project, verify)
    return templates.TemplateResponse(
        request,
        "audit.html",
        {
            "title": "Audit",
            "user": principal,
            "events": project.reader().event_count(),
            "state": request.app.state.context.governance_state(),
            "chain": chain,
            "checkpoints": checkpoint_status(project, chain),
            "may_export": principal.may(Action.EXPORT_AUDIT),
        },
    )
