"""A finished run as OpenLineage RunEvents (spec 2-0-2), built as plain dicts.

The pipeline run and every step run become one OpenLineage run each: a ``START`` event
at the recorded ``started_at`` and one ``COMPLETE`` (completed or cached), ``FAIL`` or
``ABORT`` (cut short by a crash) event at ``ended_at``. Step runs carry the standard
``parent`` facet pointing at the pipeline run. Datasets carry ``version`` (the content
digest) and, for tables, ``schema``. Run ids become UUIDs by :func:`run_uuid`.
Every standard facet names the exact schema in tests/schemas/openlineage that the tests
validate it against. Naming conventions: ``pipetrail.lineage.exports``.

A step that recorded privacy operations (``pipetrail.privacy``) gives its outputs the
standard ``columnLineage`` facet, the masking transformations included, and its end
event the ``pipetrail_privacy`` run facet listing what each operation did
(:mod:`pipetrail.lineage.exports.privacy_lineage`).

When the snapshot carries verified governance acts, the pipeline run carries the custom
``pipetrail_governance`` run facet: one entry per signed act (registration, promotion or
rollback request, approval, rejection, promotion, rollback, decision) with its signer,
key id and signature. Its JSON schema ships with the package
(``schemas/PipetrailGovernanceRunFacet.json`` beside this module, :data:`GOVERNANCE_FACET_SCHEMA`).
"""

from __future__ import annotations

import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipetrail.core.classification import is_sensitive
from pipetrail.core.version import VERSION
from pipetrail.lineage.exports.arrow_types import schema_fields
from pipetrail.lineage.exports.collect import PRODUCER, DatasetName
from pipetrail.lineage.exports.privacy_lineage import column_lineage, operation_attributes

if TYPE_CHECKING:
    from pipetrail.lineage.exports.collect import GovernanceRecord, Row, RunSnapshot

__all__ = ["GOVERNANCE_FACET_SCHEMA", "RUN_EVENT_SCHEMA_URL", "openlineage_events", "run_uuid"]

RUN_EVENT_SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FACETS = "https://openlineage.io/spec/facets"
_SCHEMA_URLS = {
    "parent": f"{_FACETS}/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
    "schema": f"{_FACETS}/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "version": f"{_FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "errorMessage": f"{_FACETS}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "jobType": f"{_FACETS}/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "processing_engine": (
        f"{_FACETS}/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"
    ),
    "outputStatistics": (
        f"{_FACETS}/1-0-2/OutputStatisticsOutputDatasetFacet.json"
        "#/$defs/OutputStatisticsOutputDatasetFacet"
    ),
    "sourceCodeLocation": (
        f"{_FACETS}/1-1-0/SourceCodeLocationJobFacet.json#/$defs/SourceCodeLocationJobFacet"
    ),
    # pipetrail's own facets: what the standard ones cannot say (cache decisions, digests).
    "pipetrail_run": "pipetrail://schemas/openlineage/1-0-0/PipetrailRunFacet.json",
    "pipetrail_step": "pipetrail://schemas/openlineage/1-0-0/PipetrailStepRunFacet.json",
    "pipetrail_artifact": "pipetrail://schemas/openlineage/1-0-0/PipetrailArtifactFacet.json",
    "pipetrail_governance": (
        "pipetrail://schemas/openlineage/1-0-0/PipetrailGovernanceRunFacet.json"
        "#/$defs/PipetrailGovernanceRunFacet"
    ),
    "pipetrail_classification": (
        "pipetrail://schemas/openlineage/1-0-0/PipetrailClassificationFacet.json"
    ),
    "columnLineage": (
        f"{_FACETS}/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
    ),
    "pipetrail_privacy": "pipetrail://schemas/openlineage/1-0-0/PipetrailPrivacyRunFacet.json",
}
# The JSON schema of the ``pipetrail_governance`` facet (its ``$id`` is the URL above).
GOVERNANCE_FACET_SCHEMA = Path(__file__).with_name("schemas") / "PipetrailGovernanceRunFacet.json"
_END_TYPES = {"completed": "COMPLETE", "cached": "COMPLETE", "failed": "FAIL"}
_CROCKFORD = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}
# Ids that are not ULIDs (none today) map through uuid5 in this namespace instead.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "pipetrail://ids")


def run_uuid(identifier: str) -> str:
    """Return the OpenLineage ``runId`` of a run or step run id, deterministically.

    pipetrail ids are ULIDs: 48 bits of Unix milliseconds then 80 random bits. A UUIDv7
    has the same 48-bit millisecond prefix, so the UUID keeps the id's bits and sets only
    the version (``7``) and variant (``10``) bits: the result is a valid, time-ordered
    UUIDv7 that keeps 74 of the 80 random bits. Anything else maps through ``uuid5``.
    """
    value = 0
    text = identifier.upper()
    if len(text) == 26 and all(c in _CROCKFORD for c in text) and _CROCKFORD[text[0]] < 8:
        for char in text:
            value = value << 5 | _CROCKFORD[char]
        value = (value & ~(0xF << 76)) | (0x7 << 76)
        value = (value & ~(0x3 << 62)) | (0x2 << 62)
        return str(uuid.UUID(int=value))
    return str(uuid.uuid5(_ID_NAMESPACE, identifier))


def _facet(key: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": _SCHEMA_URLS[key], **fields}


def _dataset(snap: RunSnapshot, where: DatasetName, digest: str, *, output: bool) -> dict[str, Any]:
    artifact = snap.artifacts.get(digest) or {}
    meta = artifact.get("meta") or {}
    facets: dict[str, Any] = {"version": _facet("version", datasetVersion=digest)}
    schema = meta.get("schema")
    if isinstance(schema, list) and schema:
        facets["schema"] = _facet("schema", fields=schema_fields(schema))
    if artifact:
        facets["pipetrail_artifact"] = _facet(
            "pipetrail_artifact",
            digest=digest,
            role=artifact["role"],
            typeName=artifact["type_name"],
            serializer=artifact["serializer"],
            size=artifact["size"],
        )
    label = snap.labels.get(digest)
    if label is not None:
        # docs/data-handling.md: a sensitive dataset's version is a keyed digest.
        facets["pipetrail_classification"] = _facet(
            "pipetrail_classification",
            label=label,
            sensitive=is_sensitive(label),
            keyedDigest=is_sensitive(label),
            **(
                {"declassifiedFrom": snap.declassified[digest]["from"]}
                if digest in snap.declassified
                else {}
            ),
        )
    dataset: dict[str, Any] = {"namespace": where.namespace, "name": where.name, "facets": facets}
    if output and artifact:
        stats: dict[str, Any] = {"size": int(artifact["size"])}
        if isinstance(meta.get("rows"), int):
            stats["rowCount"] = meta["rows"]
        dataset["outputFacets"] = {"outputStatistics": _facet("outputStatistics", **stats)}
    return dataset


def _unique(datasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for dataset in datasets:
        key = (dataset["namespace"], dataset["name"])
        if key not in seen:
            seen.add(key)
            out.append(dataset)
    return out


def _event(
    event_type: str,
    time: str,
    run: dict[str, Any],
    job: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": time,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA_URL,
        "run": run,
        "job": job,
        "inputs": _unique(inputs),
        "outputs": _unique(outputs),
    }


def _job(snap: RunSnapshot, node_id: str | None) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "jobType": _facet(
            "jobType",
            processingType="BATCH",
            integration="PIPETRAIL",
            jobType="PIPELINE" if node_id is None else "STEP",
        )
    }
    git = snap.run.get("git") or {}
    pipeline_file = snap.record.get("pipeline_file")
    if git.get("commit") and isinstance(pipeline_file, str) and pipeline_file.startswith("/"):
        url = PurePosixPath(pipeline_file).as_uri()
        location = {"type": "git", "url": url, "version": git["commit"]}
        if git.get("root"):
            location["repoUrl"] = str(git["root"])
        if git.get("branch"):
            location["branch"] = str(git["branch"])
        facets["sourceCodeLocation"] = _facet("sourceCodeLocation", **location)
    return {"namespace": snap.namespace, "name": snap.job_name(node_id), "facets": facets}


def _error(message: str | None, stack: str | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"message": message or "failed", "programmingLanguage": "python"}
    if stack:
        fields["stackTrace"] = stack
    return {"errorMessage": _facet("errorMessage", **fields)}


def _governance_facet(acts: tuple[GovernanceRecord, ...]) -> dict[str, Any]:
    entries = []
    for act in acts:
        entry: dict[str, Any] = {
            "seq": act.seq,
            "time": act.ts,
            "event": act.kind,
            "action": act.action,
            "by": act.by,
            "keyId": act.key_id,
            "signature": act.signature,
            "model": act.model,
            "version": act.version,
            "alias": act.alias,
            "requestId": act.request_id,
            "digest": act.digest,
            "previousVersion": act.previous,
            "text": act.text,
            "risk": act.risk,
            "riskNotes": act.risk_notes,
            "decisionKind": act.decision_kind,
            "aboutRun": act.about_run,
            "checks": [dict(check) for check in act.checks] or None,
        }
        entries.append({k: v for k, v in entry.items() if v is not None})
    return _facet("pipetrail_governance", signatureScheme="ed25519", acts=entries)


def _pipeline_events(snap: RunSnapshot) -> tuple[dict[str, Any], dict[str, Any]]:
    run, git = snap.run, snap.run.get("git") or {}
    facets: dict[str, Any] = {
        "processing_engine": _facet(
            "processing_engine",
            name="pipetrail",
            version=VERSION,
            openlineageAdapterVersion=VERSION,
        ),
        "pipetrail_run": _facet(
            "pipetrail_run",
            runId=snap.run_id,
            name=run.get("name"),
            purpose=run.get("purpose"),
            tags=run.get("tags") or {},
            status=run["status"],
            owner=run["owner"],
            host=run["host"],
            params=run["params"],
            seed=run["seed"],
            pipelineFingerprint=run["pipeline_fingerprint"],
            environment=run.get("environment"),
            gitCommit=git.get("commit"),
            gitDirty=git.get("dirty"),
        ),
    }
    if snap.governance:
        facets["pipetrail_governance"] = _governance_facet(snap.governance)
    run_id = run_uuid(snap.run_id)
    inputs = [
        _dataset(snap, snap.dataset(src["digest"]), src["digest"], output=False)
        for src in snap.sources
    ]
    outputs = [
        _dataset(snap, snap.dataset(digest), digest, output=True)
        for _, _, digest in snap.final_outputs()
    ]
    start = _event(
        "START",
        run["started_at"],
        {"runId": run_id, "facets": facets},
        _job(snap, None),
        inputs,
        [],
    )
    end_type = {"completed": "COMPLETE", "failed": "FAIL"}.get(run["status"], "ABORT")
    end_facets = dict(facets)
    if end_type != "COMPLETE":
        end_facets.update(_error(run.get("error")))
    end = _event(
        end_type,
        snap.ended_at,
        {"runId": run_id, "facets": end_facets},
        _job(snap, None),
        inputs,
        outputs,
    )
    return start, end


def _step_events(snap: RunSnapshot, step: Row) -> tuple[dict[str, Any], dict[str, Any]]:
    parent_run = {"runId": run_uuid(snap.run_id)}
    parent_job = {"namespace": snap.namespace, "name": snap.job_name()}
    facets: dict[str, Any] = {
        "parent": _facet(
            "parent",
            run=parent_run,
            job=parent_job,
            root={"run": dict(parent_run), "job": dict(parent_job)},
        ),
        "pipetrail_step": _facet(
            "pipetrail_step",
            stepRunId=step["step_run_id"],
            runId=snap.run_id,
            nodeId=step["node_id"],
            step=step["step"],
            status=step["status"],
            cacheDecision=step["cache_decision"],
            cacheReason=step["cache_reason"],
            cacheKey=step["cache_key"],
            codeDigest=step["code_digest"],
            reusedStepRunId=step["reused_step_run_id"],
            seed=step["seed"],
        ),
    }
    node_id = step["node_id"]
    run_id = run_uuid(step["step_run_id"])
    inputs = [
        _dataset(snap, snap.dataset(digest, consumer=node_id), digest, output=False)
        for digest in (step["inputs"] or {}).values()
    ]
    job = _job(snap, node_id)
    start = _event(
        "START", step["started_at"], {"runId": run_id, "facets": facets}, job, inputs, []
    )
    end_type = _END_TYPES.get(step["status"], "ABORT")
    outputs = []
    end_facets = dict(facets)
    if end_type == "COMPLETE":
        outputs = [
            _dataset(
                snap,
                DatasetName(snap.namespace, snap.output_name(node_id, name), "output"),
                digest,
                output=True,
            )
            for name, digest in (step["outputs"] or {}).items()
        ]
        ops = snap.privacy.get(step["step_run_id"])
        if ops:
            _add_column_lineage(ops, inputs, outputs)
            end_facets["pipetrail_privacy"] = _facet(
                "pipetrail_privacy", operations=[operation_attributes(op) for op in ops]
            )
    elif end_type == "FAIL":
        end_facets.update(_error(step["error"], step["traceback"]))
    else:
        end_facets.update(_error(snap.run.get("error") or "the run ended before this step did"))
    end = _event(
        end_type,
        snap.step_ended_at(step),
        {"runId": run_id, "facets": end_facets},
        job,
        inputs,
        outputs,
    )
    return start, end


def _columns(dataset: dict[str, Any]) -> list[str] | None:
    schema = dataset["facets"].get("schema")
    return [str(f["name"]) for f in schema["fields"]] if schema else None


def _add_column_lineage(
    ops: list[Row],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> None:
    """Give each output the ``columnLineage`` facet of the step's privacy operations."""
    sources = [(d["namespace"], d["name"], _columns(d)) for d in _unique(inputs)]
    for dataset in outputs:
        fields = column_lineage(ops, sources, _columns(dataset))
        if fields is not None:
            dataset["facets"]["columnLineage"] = _facet("columnLineage", **fields)


def openlineage_events(snap: RunSnapshot) -> list[dict[str, Any]]:
    """Return the run's OpenLineage RunEvents in time order.

    The pipeline run's ``START`` comes first and its end event last; in between, each
    step run's ``START`` and end event, in the order the steps started.
    """
    start, end = _pipeline_events(snap)
    events = [start]
    for step in snap.steps:
        events.extend(_step_events(snap, step))
    events.append(end)
    return events
