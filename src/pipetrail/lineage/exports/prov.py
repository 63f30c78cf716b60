"""A finished run as a W3C PROV-JSON document (https://www.w3.org/submissions/prov-json/).

The model, one record per fact the ledger holds:

- entities: every artifact the run touched, named by digest (content is identity, so a
  value that is both a source and an output is one entity): sources, step outputs,
  step code (``prov:Plan``), the environment snapshot and the uncommitted git diff;
- activities: the pipeline run and each step run (``prov:startTime``/``prov:endTime``
  as recorded); for a cache hit, also the earlier step run that generated the outputs;
- agents: the run's owner (``prov:Person``) and pipetrail at its version
  (``prov:SoftwareAgent``), acting on the owner's behalf;
- relations: ``used`` (inputs, sources, code, environment), ``wasGeneratedBy``,
  ``wasDerivedFrom`` (each output from each input of its step run),
  ``wasAssociatedWith`` (run with owner and pipetrail, step run with pipetrail and its
  code as plan), ``wasAttributedTo`` (outputs made in this run, to the owner),
  ``wasStartedBy`` (step run by the pipeline run), ``wasInformedBy`` (step run by its
  upstream step runs), ``actedOnBehalfOf``;
- governance (when the snapshot carries verified acts, see
  :class:`~pipetrail.lineage.exports.collect.GovernanceRecord`): each model version
  registered from the run is an entity (``pipetrail:ModelVersion``,
  ``pipetrail:model-<name>-v<N>``) derived from its artifact; each signed act is an
  activity (``pipetrail:ModelRegistration``, ``PromotionRequest``, ``RollbackRequest``,
  ``Approval``, ``Rejection``, ``Promotion``, ``Rollback``, ``Decision``;
  ``pipetrail:governance-<seq>``) associated with its signer (a ``prov:Person`` agent
  ``pipetrail:user-<name>``, role the act), carrying the signature and key id as
  attributes; a registration generates its version, requests, moves and decisions use
  it, votes and moves are informed by their request, a decision about the run by the run;
- privacy operations (``pipetrail.privacy``): each call a step run recorded is an
  activity (``pipetrail:PrivacyOperation`` and ``pipetrail:Pseudonymization``,
  ``ColumnDrop``, ``Generalization``, ``Aggregation`` or ``KAnonymityCheck``;
  ``pipetrail:privacy-<step run>-<n>``) the step run ``wasInformedBy``, with what it did
  as attributes (``pipetrail:operation``, ``columns``, ``groups_suppressed``,
  ``rows_suppressed``, ``k``, ``masking``...), never a key or a value of the data.

Identifiers and attributes live in the ``pipetrail:`` namespace (``pipetrail://prov/``).
Built as plain dicts; the ``prov`` package reads the result back (tests do).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pipetrail.core.version import VERSION
from pipetrail.hashing.digest import hex_of
from pipetrail.lineage.exports.collect import PRODUCER
from pipetrail.lineage.exports.privacy_lineage import operation_attributes

if TYPE_CHECKING:
    from pipetrail.lineage.exports.collect import GovernanceRecord, Row, RunSnapshot

__all__ = ["PROV_NAMESPACE", "entity_id", "prov_document"]

PROV_NAMESPACE = "pipetrail://prov/"
_RELATION_PREFIX = {
    "used": "u",
    "wasGeneratedBy": "g",
    "wasDerivedFrom": "d",
    "wasAssociatedWith": "a",
    "wasAttributedTo": "t",
    "wasStartedBy": "s",
    "wasInformedBy": "i",
    "actedOnBehalfOf": "b",
}
_ENTITY_TYPES = {
    "source": "pipetrail:Source",
    "output": "pipetrail:Artifact",
    "code": "pipetrail:Code",
    "environment": "pipetrail:Environment",
    "git-diff": "pipetrail:GitDiff",
}
_ACTIVITY_TYPES = {
    "registration": "pipetrail:ModelRegistration",
    "promotion request": "pipetrail:PromotionRequest",
    "rollback request": "pipetrail:RollbackRequest",
    "approval": "pipetrail:Approval",
    "rejection": "pipetrail:Rejection",
    "promotion": "pipetrail:Promotion",
    "rollback": "pipetrail:Rollback",
    "decision": "pipetrail:Decision",
}
_SIGNER_ROLES = {
    "registration": "registrar",
    "promotion request": "requester",
    "rollback request": "requester",
    "approval": "approver",
    "rejection": "approver",
    "promotion": "approver",
    "rollback": "approver",
    "decision": "decider",
}


def entity_id(digest: str) -> str:
    """The PROV id of an artifact: ``pipetrail:blake3-<hex>``."""
    return f"pipetrail:blake3-{hex_of(digest)}"


def _run_id(run_id: str) -> str:
    return f"pipetrail:run-{run_id}"


def _step_id(step_run_id: str) -> str:
    return f"pipetrail:steprun-{step_run_id}"


def _qname(name: str) -> dict[str, str]:
    return {"$": name, "type": "prov:QUALIFIED_NAME"}


def _attrs(**values: Any) -> dict[str, Any]:
    """``pipetrail:``-prefixed attributes; None is left out, other scalars typed for PROV."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = {"$": "true" if value else "false", "type": "xsd:boolean"}
        elif isinstance(value, dict | list):
            value = json.dumps(value, sort_keys=True, separators=(",", ":"))
        out[f"pipetrail:{key}"] = value
    return out


class _Document:
    """Collects records; relations get stable blank-node ids in the order they are added."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"prefix": {"pipetrail": PROV_NAMESPACE}}
        self._counts: dict[str, int] = {}

    def add(self, kind: str, identifier: str, attributes: dict[str, Any]) -> None:
        self.doc.setdefault(kind, {}).setdefault(identifier, attributes)

    def relate(self, kind: str, **fields: Any) -> None:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        record = {f"prov:{k}": v for k, v in fields.items() if v is not None}
        self.doc.setdefault(kind, {})[f"_:{_RELATION_PREFIX[kind]}{self._counts[kind]}"] = record


def _entity(doc: _Document, snap: RunSnapshot, digest: str, **extra: Any) -> str:
    identifier = entity_id(digest)
    artifact = snap.artifacts.get(digest) or {}
    role = str(extra.pop("role", None) or artifact.get("role") or "artifact")
    types = [_qname(_ENTITY_TYPES.get(role, "pipetrail:Artifact"))]
    if role == "code":
        types.append(_qname("prov:Plan"))
    meta = artifact.get("meta") or {}
    attributes: dict[str, Any] = {"prov:type": types if len(types) > 1 else types[0]}
    attributes.update(
        _attrs(
            digest=digest,
            role=role,
            type_name=artifact.get("type_name"),
            serializer=artifact.get("serializer"),
            size=artifact.get("size"),
            rows=meta.get("rows"),
            schema_fingerprint=meta.get("schema_fingerprint"),
            classification=snap.labels.get(digest),
            declassified_from=(snap.declassified.get(digest) or {}).get("from"),
            **extra,
        )
    )
    doc.add("entity", identifier, attributes)
    return identifier


def _step_activity(doc: _Document, snap: RunSnapshot, step: Row) -> str:
    identifier = _step_id(step["step_run_id"])
    attributes: dict[str, Any] = {
        "prov:type": _qname("pipetrail:StepRun"),
        "prov:label": step["node_id"],
        "prov:startTime": step["started_at"],
    }
    ended = step["ended_at"] or (snap.ended_at if step["run_id"] == snap.run_id else None)
    if ended:
        attributes["prov:endTime"] = ended
    attributes.update(
        _attrs(
            step_run_id=step["step_run_id"],
            run_id=step["run_id"],
            node_id=step["node_id"],
            step=step["step"],
            status=step["status"],
            cache_decision=step["cache_decision"],
            cache_key=step["cache_key"],
            code_digest=step["code_digest"],
            reused_step_run_id=step["reused_step_run_id"],
            error=step["error"],
        )
    )
    doc.add("activity", identifier, attributes)
    return identifier


def _run_part(doc: _Document, snap: RunSnapshot) -> tuple[str, str, str]:
    run = snap.run
    git = run.get("git") or {}
    run_act = _run_id(snap.run_id)
    doc.add(
        "activity",
        run_act,
        {
            "prov:type": _qname("pipetrail:PipelineRun"),
            "prov:label": f"{snap.pipeline} run {snap.run_id}",
            "prov:startTime": run["started_at"],
            "prov:endTime": snap.ended_at,
            **_attrs(
                run_id=snap.run_id,
                name=run.get("name"),
                purpose=run.get("purpose"),
                tags=run.get("tags") or None,
                pipeline=snap.pipeline,
                status=run["status"],
                params=run["params"],
                seed=run["seed"],
                host=run["host"],
                pipeline_fingerprint=run["pipeline_fingerprint"],
                git_commit=git.get("commit"),
                git_branch=git.get("branch"),
                git_dirty=git.get("dirty"),
                error=run.get("error"),
            ),
        },
    )
    owner = f"pipetrail:owner-{quote(str(run['owner']), safe='')}"
    doc.add(
        "agent",
        owner,
        {
            "prov:type": _qname("prov:Person"),
            "prov:label": run["owner"],
            **_attrs(owner=run["owner"]),
        },
    )
    engine = f"pipetrail:pipetrail-{VERSION}"
    doc.add(
        "agent",
        engine,
        {
            "prov:type": _qname("prov:SoftwareAgent"),
            "prov:label": f"pipetrail {VERSION}",
            **_attrs(version=VERSION),
            "pipetrail:producer": {"$": PRODUCER, "type": "xsd:anyURI"},
        },
    )
    doc.relate("wasAssociatedWith", activity=run_act, agent=owner, role="owner")
    doc.relate("wasAssociatedWith", activity=run_act, agent=engine, role="engine")
    doc.relate("actedOnBehalfOf", delegate=engine, responsible=owner, activity=run_act)
    for digest, role in (
        (run.get("environment"), "environment"),
        (git.get("diff_digest"), "git-diff"),
    ):
        if digest and digest in snap.artifacts:
            entity = _entity(doc, snap, digest, role=role)
            doc.relate("used", activity=run_act, entity=entity, time=run["started_at"], role=role)
    for src in snap.sources:
        entity = _entity(
            doc,
            snap,
            src["digest"],
            role="source",
            path=src["path"],
            by_reference=bool(src["by_reference"]),
        )
        doc.relate("used", activity=run_act, entity=entity, time=src["observed_at"], role="source")
    return run_act, owner, engine


def _model_version(doc: _Document, snap: RunSnapshot, act: GovernanceRecord) -> str | None:
    if act.model is None or act.version is None:
        return None
    identifier = f"pipetrail:model-{quote(act.model, safe='')}-v{act.version}"
    if identifier not in doc.doc.get("entity", {}):
        doc.add(
            "entity",
            identifier,
            {
                "prov:type": _qname("pipetrail:ModelVersion"),
                "prov:label": f"{act.model}:{act.version}",
                **_attrs(model=act.model, version=act.version, digest=act.digest),
            },
        )
        if act.digest:
            artifact = _entity(doc, snap, act.digest)
            doc.relate("wasDerivedFrom", generatedEntity=identifier, usedEntity=artifact)
    return identifier


def _governance_part(doc: _Document, snap: RunSnapshot, run_act: str) -> None:
    requests: dict[str, str] = {}
    for act in snap.governance:
        identifier = f"pipetrail:governance-{act.seq}"
        doc.add(
            "activity",
            identifier,
            {
                "prov:type": _qname(_ACTIVITY_TYPES.get(act.action, "pipetrail:GovernanceAct")),
                "prov:label": f"{act.action} by {act.by}",
                "prov:startTime": act.ts,
                "prov:endTime": act.ts,
                **_attrs(
                    seq=act.seq,
                    event=act.kind,
                    model=act.model,
                    version=act.version,
                    alias=act.alias,
                    request_id=act.request_id,
                    previous_version=act.previous,
                    text=act.text,
                    risk=act.risk,
                    risk_notes=act.risk_notes,
                    decision_kind=act.decision_kind,
                    checks=list(act.checks) or None,
                    signed_by=act.by,
                    key_id=act.key_id,
                    signature=act.signature,
                ),
            },
        )
        agent = f"pipetrail:user-{quote(act.by, safe='')}"
        doc.add(
            "agent",
            agent,
            {"prov:type": _qname("prov:Person"), "prov:label": act.by, **_attrs(user=act.by)},
        )
        doc.relate(
            "wasAssociatedWith", activity=identifier, agent=agent, role=_SIGNER_ROLES[act.action]
        )
        version = _model_version(doc, snap, act)
        if act.action == "registration" and version:
            doc.relate("wasGeneratedBy", entity=version, activity=identifier, time=act.ts)
        elif version:
            doc.relate("used", activity=identifier, entity=version, time=act.ts)
        if act.action.endswith("request") and act.request_id:
            requests[act.request_id] = identifier
        elif act.request_id in requests:
            doc.relate("wasInformedBy", informed=identifier, informant=requests[act.request_id])
        if act.about_run == snap.run_id:
            doc.relate("wasInformedBy", informed=identifier, informant=run_act)


_PRIVACY_TYPES = {
    "pseudonymize": "pipetrail:Pseudonymization",
    "drop": "pipetrail:ColumnDrop",
    "generalize": "pipetrail:Generalization",
    "aggregate": "pipetrail:Aggregation",
    "check_k_anonymity": "pipetrail:KAnonymityCheck",
}


def _privacy_part(doc: _Document, snap: RunSnapshot, step: Row, act: str) -> None:
    """Each privacy operation of a step run: an activity the step run was informed by."""
    ops = snap.privacy.get(step["step_run_id"]) or []
    for number, op in enumerate(ops, 1):
        identifier = f"pipetrail:privacy-{step['step_run_id']}-{number}"
        attributes: dict[str, Any] = {
            "prov:type": [
                _qname("pipetrail:PrivacyOperation"),
                _qname(_PRIVACY_TYPES.get(str(op["op"]), "pipetrail:PrivacyOperation")),
            ],
            "prov:label": f"{step['node_id']}: {op['op']}",
        }
        attributes.update(_attrs(step_run_id=step["step_run_id"], **operation_attributes(op)))
        doc.add("activity", identifier, attributes)
        doc.relate("wasInformedBy", informed=act, informant=identifier)


def prov_document(snap: RunSnapshot) -> dict[str, Any]:
    """Return the run as a PROV-JSON document (see the module docstring for the model)."""
    doc = _Document()
    run_act, owner, engine = _run_part(doc, snap)
    by_node = {s["node_id"]: s for s in snap.steps}
    generated: set[str] = set()
    nodes = snap.record.get("nodes") or {}
    for step in snap.steps:
        act = _step_activity(doc, snap, step)
        doc.relate("wasStartedBy", activity=act, starter=run_act, time=step["started_at"])
        code = snap.code.get(step["step_run_id"])
        plan = _entity(doc, snap, code, role="code", step=step["step"]) if code else None
        doc.relate("wasAssociatedWith", activity=act, agent=engine, plan=plan)
        if plan:
            doc.relate("used", activity=act, entity=plan, time=step["started_at"], role="code")
        for upstream in nodes.get(step["node_id"], {}).get("upstream", []):
            if upstream in by_node:
                informant = _step_id(by_node[upstream]["step_run_id"])
                doc.relate("wasInformedBy", informed=act, informant=informant)
        inputs = [_entity(doc, snap, d) for d in (step["inputs"] or {}).values()]
        for name, entity in zip(step["inputs"] or {}, inputs, strict=True):
            doc.relate("used", activity=act, entity=entity, time=step["started_at"], role=name)
        if step["status"] not in ("completed", "cached"):
            continue
        maker, made = step, step
        if step["status"] == "cached" and step["step_run_id"] in snap.reused:
            made = snap.reused[step["step_run_id"]]
            _step_activity(doc, snap, made)
            doc.relate("wasInformedBy", informed=act, informant=_step_id(made["step_run_id"]))
        _privacy_part(doc, snap, step, act)
        for name, digest in (step["outputs"] or {}).items():
            entity = _entity(doc, snap, digest, label=snap.output_name(step["node_id"], name))
            if digest in generated:
                continue
            generated.add(digest)
            generator = _step_id(made["step_run_id"])
            when = made["ended_at"] or made["started_at"]
            doc.relate("wasGeneratedBy", entity=entity, activity=generator, time=when, role=name)
            if made is maker:
                doc.relate("wasAttributedTo", entity=entity, agent=owner)
            for used in dict.fromkeys(inputs):
                doc.relate(
                    "wasDerivedFrom", generatedEntity=entity, usedEntity=used, activity=generator
                )
    _governance_part(doc, snap, run_act)
    return doc.doc
