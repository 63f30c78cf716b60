"""Small helpers shaping what the runner records: raw-blob artifacts and JSON-able params."""

from __future__ import annotations

import enum
from pathlib import PurePath
from typing import Any

from pipetrail.store import StoredArtifact

__all__ = ["blob_artifact", "jsonable"]

_TYPE_NAMES = {
    "git-diff": "text/x-diff",
    "logs": "text/plain",
    "code": "text/x-python",
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
