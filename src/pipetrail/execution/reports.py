"""Reports attached by step code: ``attach_report``.

Owns what a report may be and how it is stored. A report is small and is stored when it
is attached (a file may be gone by the time the step ends):

* a ``dict`` of plain data becomes canonical JSON through the ``json`` serializer (numpy
  scalars are turned into Python numbers, tuples into lists), loaded back as a dict;
* a path (``str`` or ``os.PathLike``) to a ``.png`` or ``.svg`` file is stored as its bytes
  with the ``bytes`` serializer; the artifact's type is the media type taken from the
  extension (``image/png``, ``image/svg+xml``). Other extensions are refused.

Each stored report is an artifact with role ``report``; the step event references it as
``"reports": {name: digest}``. Report names follow the metric name rules
(:func:`~pipetrail.execution.metrics.validate_name`). Must not import the ledger or CLI.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipetrail.errors import DefinitionError
from pipetrail.execution.metrics import StepRecorder, active_recorder, validate_name
from pipetrail.store import StoredArtifact

__all__ = ["MEDIA_TYPES", "attach_report"]

MEDIA_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def attach_report(name: str, value: Mapping[str, Any] | str | os.PathLike[str]) -> None:
    """Attach a small report to the running step's record.

    Args:
        name: the report's name, namespaced with ``/`` like metric names
            (``eval/confusion``); unique within the step.
        value: a dict of plain data (stored as canonical JSON), or the path of a PNG or
            SVG file (stored as its bytes).

    Raises:
        DefinitionError: called outside a running step; an invalid or repeated name; a
            value that is neither plain data nor a PNG/SVG file.
        SerializationError: the dict cannot be stored as JSON.

    Example:
        >>> @step
        ... def evaluate(model: Model) -> float:
        ...     attach_report("eval/summary", {"auc": 0.91, "n": 569})
        ...     attach_report("eval/roc", "roc.png")
        ...     return 0.91
    """
    recorder = active_recorder("attach_report")
    validate_name(name, "report")
    if isinstance(value, Mapping):
        record = _store_json(recorder, name, value)
    elif isinstance(value, str | os.PathLike):
        record = _store_image(recorder, name, Path(value))
    else:
        raise DefinitionError(
            f"report {name!r}: a {type(value).__qualname__} cannot be a report; attach a dict "
            "(stored as JSON) or the path of a .png or .svg file"
        )
    recorder.add_report(name, record)


def _plain(name: str, value: Any, where: str) -> Any:
    """Return ``value`` as exact JSON types, or raise naming where the bad value is."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise DefinitionError(
                    f"report {name!r}: key {key!r} at {where} is a {type(key).__qualname__}; "
                    "report dicts need string keys"
                )
            out[str(key)] = _plain(name, item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_plain(name, item, f"{where}[{i}]") for i, item in enumerate(value)]
    # Subclasses of the JSON types (IntEnum, numpy.float64, numpy.str_...) become the type.
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return _plain(name, value.item(), where)  # numpy scalars and 0-d arrays
    raise DefinitionError(
        f"report {name!r}: the value at {where} is a {type(value).__qualname__}, which has no "
        "JSON form; use dicts with string keys, lists, str, int, float, bool or None (convert "
        "arrays with .tolist())"
    )


def _store_json(recorder: StepRecorder, name: str, value: Mapping[str, Any]) -> StoredArtifact:
    data = _plain(name, value, "the top level")
    record = recorder.registry.by_name("json").dump(data, recorder.store)
    return dataclasses.replace(record, meta={**record.meta, "media_type": "application/json"})


def _store_image(recorder: StepRecorder, name: str, path: Path) -> StoredArtifact:
    media_type = MEDIA_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise DefinitionError(
            f"report {name!r}: {os.fspath(path)!r} "
            + (f"has extension {path.suffix!r}" if path.suffix else "has no file extension")
            + "; "
            "file reports must be PNG or SVG images (.png, .svg); attach other results as a "
            "dict, or return them as step outputs"
        )
    if not path.is_file():
        raise DefinitionError(
            f"report {name!r}: {os.fspath(path)!r} is not an existing file; write the image "
            "before attaching it"
        )
    data = path.read_bytes()
    if media_type == "image/png" and not data.startswith(_PNG_SIGNATURE):
        raise DefinitionError(
            f"report {name!r}: {os.fspath(path)!r} does not start with the PNG signature; "
            "save the figure as PNG (e.g. fig.savefig(path, format='png'))"
        )
    if media_type == "image/svg+xml" and b"<svg" not in data:
        raise DefinitionError(
            f"report {name!r}: {os.fspath(path)!r} holds no <svg> element; save the figure "
            "as SVG (e.g. fig.savefig(path, format='svg'))"
        )
    digest = recorder.store.put_bytes(data)
    return StoredArtifact(
        digest=digest,
        blob=digest,
        serializer="bytes",
        type_name=media_type,
        size=len(data),
        meta={"python_type": "bytes", "media_type": media_type},
    )
