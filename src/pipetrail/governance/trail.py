"""The governance acts that concern one run, verified, for the exports to state.

A run's governance trail is what was decided about it and about the model versions
registered from its outputs: the registrations, the promotion requests for those versions
(rationale, risk, frozen checks), the approvals and rejections of those requests, the
alias moves to or away from those versions (promotions and rollbacks), and the signed
decisions about the run or the model. Only acts that verify (signature, key at that
point, rules) are listed: they come from the fold
(:class:`~pipetrail.governance.state.GovernanceState`), never from the raw events. The
exports (``pipetrail.lineage.exports``, a layer below) take the result as plain
:class:`~pipetrail.lineage.exports.collect.GovernanceRecord` values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.ledger.events import EventKind
from pipetrail.lineage.exports.collect import GovernanceRecord

if TYPE_CHECKING:
    from pipetrail.execution.project import Project
    from pipetrail.governance.state import Entry, GovernanceState

__all__ = ["run_governance", "trail_of_run"]

_VERIFIED = "verified"


def run_governance(project: Project, run_ref: str) -> tuple[GovernanceRecord, ...]:
    """The verified governance acts about run ``run_ref`` (id, prefix or ``latest``).

    Folds the project's governance events (with the acting user's verification cache)
    and keeps those :func:`trail_of_run` selects.

    Raises:
        NotFoundError: no run matches ``run_ref``.
    """
    from pipetrail.governance.state import read_state
    from pipetrail.governance.verified import user_cache

    reader = project.reader()
    run_id = reader.resolve_run(run_ref)
    state = read_state(reader, user_cache(project.config.metadata_url))
    return trail_of_run(state, run_id)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def trail_of_run(state: GovernanceState, run_id: str) -> tuple[GovernanceRecord, ...]:
    """Select, in ledger order, the verified acts of ``state`` that concern ``run_id``."""
    versions = {
        (v.model, v.version) for vs in state.models.values() for v in vs.values()
        if v.run_id == run_id
    }  # fmt: skip
    models = {model for model, _ in versions}
    requests = {r.request_id for r in state.requests.values() if (r.model, r.version) in versions}
    found = []
    for entry in state.entries:
        if entry.status != _VERIFIED:
            continue
        c = entry.content
        model, version = _str(c.get("model")), _int(c.get("version"))
        about: dict[str, Any] = c["about"] if isinstance(c.get("about"), dict) else {}
        if entry.kind in (EventKind.PROMOTION_APPROVED, EventKind.PROMOTION_REJECTED):
            concerns = c.get("request_id") in requests
            request = state.requests.get(str(c.get("request_id")))
            if concerns and request is not None:
                model, version = request.model, request.version
        elif entry.kind == EventKind.ALIAS_MOVED:
            concerns = (model, version) in versions or (model, _int(c.get("previous"))) in versions
        elif entry.kind == EventKind.DECISION_RECORDED:
            model, version = _str(about.get("model")), _int(about.get("version"))
            concerns = about.get("run_id") == run_id or (
                model in models and (version is None or (model, version) in versions)
            )
        else:  # a registration or a request
            concerns = (model, version) in versions
        if concerns:
            known = state.models.get(model or "", {}).get(version or 0)
            digest = known.digest if known is not None else None
            found.append(_record(entry, model, version, about, digest))
    return tuple(found)


def _action(entry: Entry) -> str:
    c = entry.content
    if entry.kind == EventKind.MODEL_REGISTERED:
        return "registration"
    if entry.kind == EventKind.PROMOTION_REQUESTED:
        return "rollback request" if c.get("rollback") is True else "promotion request"
    if entry.kind == EventKind.PROMOTION_APPROVED:
        return "approval"
    if entry.kind == EventKind.PROMOTION_REJECTED:
        return "rejection"
    if entry.kind == EventKind.ALIAS_MOVED:
        return "rollback" if c.get("cause") == "rollback" else "promotion"
    return "decision"


def _record(
    entry: Entry,
    model: str | None,
    version: int | None,
    about: dict[str, Any],
    digest: str | None,
) -> GovernanceRecord:
    c = entry.content
    text = next(
        (_str(c.get(k)) for k in ("rationale", "reason", "comment", "text") if c.get(k)), None
    )
    decided = entry.kind == EventKind.DECISION_RECORDED
    checks: list[Any] = c["checks"] if isinstance(c.get("checks"), list) else []
    return GovernanceRecord(
        seq=entry.seq,
        ts=entry.ts,
        kind=entry.kind,
        action=_action(entry),
        by=entry.by,
        key_id=str(c.get("key_id", "")),
        signature=str(c.get("signature", "")),
        model=model,
        version=version,
        alias=_str(c.get("alias")),
        request_id=_str(c.get("request_id")),
        digest=digest,
        previous=_int(c.get("previous")),
        text=text,
        risk=_str(c.get("risk")),
        risk_notes=_str(c.get("risk_notes")) or None,
        decision_kind=_str(c.get("kind")) if decided else None,
        about_run=_str(about.get("run_id")) if decided else None,
        checks=tuple(dict(check) for check in checks if isinstance(check, dict)),
    )
