"""A finished run as an in-toto Statement v1 with a SLSA Provenance v1 predicate.

- ``subject``: every output of the run's successful step runs (cache hits included: the
  run delivered them), named ``<pipeline>.<node_id>.<output>``, digest
  ``{"blake3": <hex>}``. Only completed runs are attested (a failed or crashed run, or
  one without outputs, raises ExportError), so a policy never mistakes one for a build.
- ``buildDefinition``: ``buildType`` :data:`BUILD_TYPE`; ``externalParameters`` the
  pipeline and its parameters; ``internalParameters`` the seed, cache switch, executor
  and pipeline fingerprint; ``resolvedDependencies`` the sources
  (``file://<host><path>``), each step's code (``<namespace>/code/<step>``), the git
  commit (``git+file://<root>``, ``{"gitCommit": ...}``), the uncommitted diff and the
  environment snapshot, each with its role in ``annotations``.
- ``runDetails``: ``builder.id`` ``pipetrail://builders/<host>`` with pipetrail's
  version; ``metadata`` invocationId (the run id), startedOn, finishedOn; step logs as
  ``byproducts``.

See https://in-toto.io/Statement/v1 and https://slsa.dev/provenance/v1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pipetrail.core.version import VERSION
from pipetrail.hashing.digest import hex_of
from pipetrail.lineage.exports.collect import ExportError

if TYPE_CHECKING:
    from pipetrail.lineage.exports.collect import RunSnapshot

__all__ = ["BUILD_TYPE", "PREDICATE_TYPE", "STATEMENT_TYPE", "intoto_statement"]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "pipetrail://build-types/pipeline-run/v1"


def _digest_set(digest: str) -> dict[str, str]:
    return {"blake3": hex_of(digest)}


def _dependencies(snap: RunSnapshot) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    for src in snap.sources:
        deps.append(
            {
                "uri": f"{snap.source_namespace()}{quote(snap.source_path(src['path']))}",
                "name": src["path"],
                "digest": _digest_set(src["digest"]),
                "annotations": {"role": "source", "byReference": bool(src["by_reference"])},
            }
        )
    code = {
        (s["step"], snap.code[s["step_run_id"]])
        for s in snap.steps
        if s["step_run_id"] in snap.code
    }
    for step, digest in sorted(code):
        deps.append(
            {
                "uri": f"{snap.namespace}/code/{step}",
                "name": step,
                "digest": _digest_set(digest),
                "mediaType": "text/x-python",
                "annotations": {"role": "code", "step": step},
            }
        )
    git = snap.run.get("git") or {}
    if git.get("commit"):
        uri = f"git+file://{quote(str(git.get('root') or ''))}"
        if git.get("branch"):
            uri += f"@refs/heads/{git['branch']}"
        deps.append(
            {
                "uri": uri,
                "digest": {"gitCommit": git["commit"]},
                "annotations": {"role": "code", "dirty": bool(git.get("dirty"))},
            }
        )
    diff = git.get("diff_digest")
    if diff:
        deps.append(
            {
                "name": "git-diff",
                "digest": _digest_set(diff),
                "mediaType": "text/x-diff",
                "annotations": {
                    "role": "code",
                    "note": "uncommitted changes applied to the commit",
                },
            }
        )
    environment = snap.run.get("environment")
    if environment:
        deps.append(
            {
                "name": "environment",
                "digest": _digest_set(environment),
                "mediaType": "application/json",
                "annotations": {"role": "environment"},
            }
        )
    return deps


def intoto_statement(snap: RunSnapshot) -> dict[str, Any]:
    """Return the run's in-toto Statement (see the module docstring for the mapping).

    Raises:
        ExportError: the run did not complete, or produced no artifact (no subject).
    """
    if snap.run["status"] != "completed":
        raise ExportError(
            f"run {snap.run_id} {snap.run['status']}; in-toto provenance attests a completed "
            "build only, so a policy cannot mistake it for one; export it as openlineage or "
            "prov instead"
        )
    subjects = [
        {
            "name": snap.output_name(step["node_id"], name),
            "digest": _digest_set(digest),
            "annotations": {"stepRunId": step["step_run_id"], "status": step["status"]},
        }
        for step, name, digest in snap.produced()
    ]
    if not subjects:
        raise ExportError(
            f"run {snap.run_id} ({snap.run['status']}) produced no artifact, so an in-toto "
            "statement would have no subject; export it as openlineage or prov instead"
        )
    run, record = snap.run, snap.record
    byproducts = [
        {
            "name": f"{step['node_id']}.logs",
            "digest": _digest_set(step["logs"]),
            "mediaType": "text/plain",
        }
        for step in snap.steps
        if step["logs"]
    ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"pipeline": snap.pipeline, "params": run["params"]},
                "internalParameters": {
                    "seed": run["seed"],
                    "cache": bool(record.get("cache", True)),
                    "executor": record.get("executor"),
                    "pipelineFingerprint": run["pipeline_fingerprint"],
                    "pipelineFile": record.get("pipeline_file"),
                },
                "resolvedDependencies": _dependencies(snap),
            },
            "runDetails": {
                "builder": {
                    "id": f"pipetrail://builders/{run['host']}",
                    "version": {"pipetrail": VERSION},
                },
                "metadata": {
                    "invocationId": snap.run_id,
                    "startedOn": run["started_at"],
                    "finishedOn": snap.ended_at,
                },
                **({"byproducts": byproducts} if byproducts else {}),
            },
        },
    }
