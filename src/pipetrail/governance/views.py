"""What governance commands show: users, models, a version's record, the decision trail.

Every function returns JSON-able data built from a folded
:class:`~pipetrail.governance.state.GovernanceState` (and, for :func:`model_show`, the
source run's record); the CLI renders it as text or prints it as JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.errors import NotFoundError, PipetrailError
from pipetrail.ledger.events import EventKind

if TYPE_CHECKING:
    from pipetrail.execution.project import Project
    from pipetrail.governance.state import Entry, GovernanceState, ModelVersion

__all__ = ["decisions_about", "list_models", "list_users", "model_history", "model_show"]


def list_users(state: GovernanceState) -> list[dict[str, Any]]:
    """Every user: name, kind, email, roles, current key id, when and by whom added."""
    return [
        {
            "name": u.name,
            "kind": u.kind,
            "email": u.email,
            "roles": sorted(r.value for r in u.roles),
            "key_id": u.current_key.key_id,
            "keys": len(u.keys),
            "added_seq": u.added_seq,
            "added_by": u.added_by,
        }
        for u in sorted(state.users.values(), key=lambda u: u.name)
    ]


def _aliases_of(state: GovernanceState, model: str) -> dict[str, int]:
    return {a: s[-1] for a, s in sorted(state.aliases.get(model, {}).items()) if s}


def list_models(state: GovernanceState) -> list[dict[str, Any]]:
    """Every model: its versions count, newest version and aliases."""
    return [
        {
            "model": name,
            "versions": len(versions),
            "latest": max(versions) if versions else None,
            "aliases": _aliases_of(state, name),
        }
        for name, versions in sorted(state.models.items())
    ]


def _version(state: GovernanceState, model: str, version: int | None) -> ModelVersion:
    versions = state.models.get(model)
    if not versions:
        raise NotFoundError(f"there is no model {model!r}; `pipetrail model list` lists them")
    number = version if version is not None else max(versions)
    if number not in versions:
        raise NotFoundError(f"model {model} has no version {number} (it has 1 to {max(versions)})")
    return versions[number]


def _version_dict(found: ModelVersion) -> dict[str, Any]:
    return {
        "model": found.model,
        "version": found.version,
        "digest": found.digest,
        "run_id": found.run_id,
        "node_id": found.node_id,
        "output": found.output,
        "serializer": found.serializer,
        "registered_by": found.by,
        "registered_at": found.ts,
        "seq": found.seq,
    }


def decisions_about(
    state: GovernanceState, *, run_id: str | None = None, model: str | None = None
) -> list[dict[str, Any]]:
    """The signed decisions recorded about a run or a model."""
    out = []
    for entry in state.decisions:
        about = entry.content.get("about") or {}
        if (run_id and about.get("run_id") == run_id) or (model and about.get("model") == model):
            out.append(_entry(entry))
    return out


def model_show(
    project: Project, state: GovernanceState, model: str, version: int | None
) -> dict[str, Any]:
    """One version's record, and what the ledger holds around it.

    The source run's params, metrics, contracts and gate results, lineage to its sources,
    the aliases pointing at it, the other versions, its history and decisions.
    """
    found = _version(state, model, version)
    data = _version_dict(found)
    data["aliases"] = [a for a, v in _aliases_of(state, model).items() if v == found.version]
    data["versions"] = [_version_dict(v) for _, v in sorted(state.models[model].items())]
    data["history"] = [
        e for e in model_history(state, model) if e.get("version") in (None, found.version)
    ]
    data["decisions"] = decisions_about(state, model=model)
    data["source_run"] = _source_run(project, found) if found.run_id else None
    if found.run_id:
        data["decisions"] += decisions_about(state, run_id=found.run_id)
    return data


def _source_run(project: Project, found: ModelVersion) -> dict[str, Any]:
    from pipetrail.execution.contract_records import run_contracts
    from pipetrail.ledger.governance_reads import gate_checks
    from pipetrail.lineage.queries import upstream
    from pipetrail.lineage.run_facts import load_run_facts

    assert found.run_id is not None  # noqa: S101 - checked by the caller
    reader = project.reader()
    facts = load_run_facts(project, found.run_id)
    run: dict[str, Any] = {
        "run_id": facts.run_id,
        "pipeline": facts.pipeline,
        "status": facts.status,
        "started_at": facts.started_at,
        "params": facts.params,
        "metrics": {name: m.value for name, m in sorted(facts.metrics.items())},
        "gates": [
            {"seq": g.seq, "ts": g.ts, "passed": g.passed}
            for g in gate_checks(reader, found.run_id)
        ],
    }
    try:
        run["contracts"] = run_contracts(reader, found.run_id)["counts"]
    except PipetrailError as exc:
        run["contracts"] = {"error": str(exc)}
    try:
        graph = upstream(reader, found.digest)
        run["lineage_sources"] = sorted(
            {
                f"{path} ({node.digest})" if path else node.digest
                for node in graph.artifacts
                if node.kind == "source"
                for path in (node.paths or ("",))
            }
        )
        run["lineage_steps"] = sorted({s.node_id for s in graph.step_runs})
    except PipetrailError as exc:
        run["lineage_error"] = str(exc)
    return run


def _entry(entry: Entry) -> dict[str, Any]:
    p = entry.content
    return {
        "seq": entry.seq,
        "ts": entry.ts,
        "event": entry.kind,
        "by": entry.by,
        "signature": entry.status,
        **{k: v for k, v in p.items() if k not in ("by", "key_id", "signature", "policy")},
        **({"policy": p["policy"]} if "policy" in p else {}),
        "key_id": p.get("key_id"),
    }


def model_history(state: GovernanceState, model: str) -> list[dict[str, Any]]:
    """Every governance event about ``model``, oldest first, with its signature status.

    Registrations, requests (rationale, risk, frozen checks and policy), approvals and
    rejections, alias moves (promotions and rollbacks) and decisions; an event that does
    not verify is listed with the reason.
    """
    if model not in state.models:
        raise NotFoundError(f"there is no model {model!r}; `pipetrail model list` lists them")
    mine = {r.request_id for r in state.requests.values() if r.model == model}
    out = []
    for entry in state.entries:
        p = entry.content
        if entry.kind in (EventKind.PROMOTION_APPROVED, EventKind.PROMOTION_REJECTED):
            if p.get("request_id") in mine:
                row = _entry(entry)
                row["version"] = state.requests[p["request_id"]].version
                out.append(row)
        elif p.get("model") == model or (p.get("about") or {}).get("model") == model:
            out.append(_entry(entry))
        elif entry.status != "verified" and not p.get("model"):
            out.append(_entry(entry))  # an unreadable event that did not verify: shown
    return out
