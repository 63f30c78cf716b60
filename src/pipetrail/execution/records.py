"""Small helpers shaping what the runner records.

Raw-blob artifacts, JSON-able params, and how metric series and reports are listed among a
step run's outputs (see :func:`with_recorded`).
"""

from __future__ import annotations

import enum
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from pipetrail.execution.metric_format import METRIC_OUTPUT_PREFIX, REPORT_OUTPUT_PREFIX
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.execution.metrics import StoredSeries

__all__ = [
    "METRIC_OUTPUT_PREFIX",
    "REPORT_OUTPUT_PREFIX",
    "blob_artifact",
    "is_recorded_output",
    "jsonable",
    "recorded_artifacts",
    "split_recorded",
    "with_recorded",
]

_TYPE_NAMES = {
    "git-diff": "text/x-diff",
    "logs": "text/plain",
    "code": "text/x-python",
    "reproduction-report": "application/json",
    "gate-report": "application/json",
}


def blob_artifact(
    digest: str, size: int, serializer: str, role: str, meta: dict[str, Any]
) -> StoredArtifact:
    """Describe a blob stored as is (logs, diffs, source code, source files)."""
    return StoredArtifact(
        digest=digest,
        blob=digest,
        serializer=serializer,
        type_name=_TYPE_NAMES.get(role, "application/octet-stream"),
        size=size,
        meta=meta,
    )


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON types for the run record (paths and enums as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json"))
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    return repr(value)


def recorded_artifacts(
    metrics: Mapping[str, StoredSeries], reports: Mapping[str, StoredArtifact]
) -> list[tuple[StoredArtifact, str]]:
    """Return ``(artifact, role)`` for every metric series, their timestamps and report.

    The series of one step run share one timestamps object: it is listed once.
    """
    found: list[tuple[StoredArtifact, str]] = []
    timestamps: dict[str, StoredArtifact] = {}
    for stored in metrics.values():
        found.append((stored.series, "metric"))
        timestamps.setdefault(stored.timestamps.digest, stored.timestamps)
    found.extend((record, "metric-timestamps") for record in timestamps.values())
    found.extend((record, "report") for record in reports.values())
    return found


def with_recorded(
    outputs: Mapping[str, str],
    metrics: Mapping[str, StoredSeries],
    reports: Mapping[str, StoredArtifact],
) -> dict[str, str]:
    """Return a step run's outputs plus its metric series and reports, under prefixes.

    Listing them among the outputs (``metric:train/loss``, ``report:eval/roc``) gives them
    lineage edges (``step_run_io``, direction ``out``) and lets a cache hit find and check
    them like any output, with no projection of its own.
    """
    merged = dict(outputs)
    merged.update({METRIC_OUTPUT_PREFIX + n: s.series.digest for n, s in metrics.items()})
    merged.update({REPORT_OUTPUT_PREFIX + n: r.digest for n, r in reports.items()})
    return merged


def split_recorded(outputs: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Return ``(metric name -> series digest, report name -> digest)`` from outputs."""
    metrics: dict[str, str] = {}
    reports: dict[str, str] = {}
    for key, digest in outputs.items():
        if key.startswith(METRIC_OUTPUT_PREFIX):
            metrics[key.removeprefix(METRIC_OUTPUT_PREFIX)] = digest
        elif key.startswith(REPORT_OUTPUT_PREFIX):
            reports[key.removeprefix(REPORT_OUTPUT_PREFIX)] = digest
    return metrics, reports


def is_recorded_output(name: str) -> bool:
    """Return whether an output name is a metric series or report, not a returned value."""
    return name.startswith((METRIC_OUTPUT_PREFIX, REPORT_OUTPUT_PREFIX))
