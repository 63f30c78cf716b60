"""Params files: YAML, TOML and JSON files of run parameters, layered under overrides.

``pipetrail run pipeline.py -c base.yaml -c fast.toml -p model.C=0.3`` reads each file
(:func:`load_params_file`), merges them in order, later files winning key by key, puts
the overrides on top, and validates the result against the pipeline's parameters
(:func:`resolve_run_params`, in :mod:`pipetrail.execution.run_params` so that a run
without files does not load this module). Every problem is reported before the run starts, with the
file (and line, for a syntax error), the key and the reason; nothing is recorded then.
A run that used files records each one's name and digest in its ``run.started`` event
(``params_files``) and stores its bytes as an artifact with role ``params-file``
(:func:`params_file_records`).

File format by suffix: ``.yaml``/``.yml`` (PyYAML's safe loader, imported on first use),
``.toml`` (``tomllib``) and ``.json``. The top level must be a table of parameters; a
table value sets the fields of a nested model, as dotted ``-p`` keys do.

Limits, each refused with a :class:`~pipetrail.errors.ParamsFileError` naming the file
(and line when known): a file holds at most :data:`MAX_FILE_BYTES`; values nest at
most :data:`~pipetrail.core.param_limits.MAX_DEPTH` levels; a text value holds at most
:data:`~pipetrail.core.param_limits.MAX_TEXT_BYTES`; YAML aliases are bounded too (see
:mod:`pipetrail.execution.params_yaml`).

Imports ``core``, ``hashing``, ``store`` and the standard library; never ``lineage`` or
``cli``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.core.param_limits import MAX_DEPTH, check_params_limits, text_depth
from pipetrail.core.params import expand_dotted, flatten_params, merge_params
from pipetrail.errors import ParamError, ParamsFileError
from pipetrail.execution.run_params import OVERRIDE_ORIGIN, resolve_run_params
from pipetrail.hashing import digest_bytes
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.store import ContentStore

__all__ = [
    "FORMATS",
    "MAX_FILE_BYTES",
    "ParamsFile",
    "load_params",
    "load_params_file",
    "params_file_records",
    "resolve_run_params",
    "resolve_with_files",
]

#: Suffix -> format name.
FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}
_MEDIA_TYPES = {"yaml": "application/yaml", "toml": "application/toml", "json": "application/json"}
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
#: The largest params file read (bytes).
MAX_FILE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class ParamsFile:
    """One params file as read.

    Attributes:
        path: the file, as given.
        format: ``yaml``, ``toml`` or ``json``.
        data: the parameters it holds (nested tables as dicts).
        content: its bytes, recorded as the ``params-file`` artifact.
        digest: the digest of ``content``.
    """

    path: Path
    format: str
    data: dict[str, Any]
    content: bytes
    digest: str

    @property
    def name(self) -> str:
        """The path as text, for messages and the run record."""
        return self.path.as_posix()


def load_params_file(path: str | Path) -> ParamsFile:
    """Read and parse one params file.

    Raises:
        ParamsFileError: the file is missing or unreadable, has an unknown suffix, is
            malformed (naming the line and column when the parser tells), or its top level
            is not a table with text keys.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ParamsFileError(
            f"params file {path}: unknown format {path.suffix or '(no suffix)'!r}; use "
            ".yaml, .yml, .toml or .json",
            path=str(path),
        )
    try:
        with path.open("rb") as handle:
            # One byte past the limit tells a file that is too large, without reading it.
            content = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ParamsFileError(f"params file {path} does not exist", path=str(path)) from None
    except OSError as exc:
        raise ParamsFileError(
            f"params file {path} cannot be read: {exc.strerror or exc}", path=str(path)
        ) from None
    if len(content) > MAX_FILE_BYTES:
        raise ParamsFileError(
            f"params file {path} is larger than the limit of {MAX_FILE_BYTES // 1024 // 1024} "
            "MiB for a params file; keep large data in a file the pipeline reads (a source) "
            "and pass its path as a parameter",
            path=str(path),
        )
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsFileError(
            f"params file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8",
            path=str(path),
        ) from None
    try:
        data = _parse(path, fmt, text)
    except RecursionError:
        # The JSON and TOML parsers recurse once per level; past Python's limit they give up.
        raise _too_deep(path, text) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsFileError(
            f"params file {path}: the top level must be a table of parameters "
            f"(name: value), not a {type(data).__name__}",
            path=str(path),
        )
    try:
        check_params_limits(data, origin=f"params file {path}")
    except ParamError as exc:
        line = _deep_line(text) if "nested deeper" in str(exc) else None
        where = f"params file {path}, line {line}" if line is not None else f"params file {path}"
        raise ParamsFileError(
            str(exc).replace(f"params file {path}", where, 1), path=str(path), line=line
        ) from None
    _check_keys(path, data, "")
    return ParamsFile(path, fmt, data, content, digest_bytes(content))


def _deep_line(text: str) -> int | None:
    """The line where brackets in ``text`` first nest deeper than the limit, if they do."""
    offset = text_depth(text, limit=MAX_DEPTH - 1 if text.lstrip()[:1] != "{" else MAX_DEPTH)
    return None if offset is None else text.count("\n", 0, offset) + 1


def _too_deep(path: Path, text: str) -> ParamsFileError:
    line = _deep_line(text)
    where = f", line {line}" if line is not None else ""
    return ParamsFileError(
        f"params file {path}{where}: values are nested deeper than the limit of {MAX_DEPTH} "
        "levels; flatten them, or keep such data in a file the pipeline reads",
        path=str(path),
        line=line,
    )


def _parse(path: Path, fmt: str, text: str) -> Any:
    if fmt == "yaml":
        from pipetrail.execution.params_yaml import load_yaml

        return load_yaml(path, text)
    if fmt == "toml":
        import tomllib  # a run without a TOML params file does not import it

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            found = _TOML_POSITION.search(message)
            line = int(found.group(1)) if found else None
            reason = _TOML_POSITION.sub("", message).strip()
            where = f", line {found.group(1)}, column {found.group(2)}" if found else ""
            raise ParamsFileError(
                f"params file {path}{where}: malformed TOML: {reason}",
                path=str(path),
                line=line,
            ) from None
    try:
        return json.loads(text, object_pairs_hook=_unique_json_object)
    except _DuplicateKeyError as exc:
        raise ParamsFileError(
            f"params file {path}: malformed JSON: key {exc.key!r} appears twice in one "
            "object; keep one of them",
            path=str(path),
        ) from None
    except json.JSONDecodeError as exc:
        raise ParamsFileError(
            f"params file {path}, line {exc.lineno}, column {exc.colno}: malformed JSON: {exc.msg}",
            path=str(path),
            line=exc.lineno,
        ) from None


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of repeated keys silently; a params file must not hide a value.
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKeyError(key)
        found[key] = value
    return found


def _check_keys(path: Path, data: Mapping[Any, Any], prefix: str) -> None:
    for key, value in data.items():
        if not isinstance(key, str) or not key:
            raise ParamsFileError(
                f"params file {path}: key {prefix}{key!r} must be non-empty text, not "
                f"{type(key).__name__}; quote it",
                path=str(path),
            )
        if isinstance(value, dict):
            _check_keys(path, value, f"{prefix}{key}.")


def load_params(
    paths: Iterable[str | Path], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge params files (later files win) and ``overrides`` on top, without validating.

    Dotted keys in ``overrides`` set nested fields. The result is what a run with these
    files and overrides validates against the pipeline's parameters.

    Example:
        >>> params = load_params(["base.yaml", "fast.toml"], {"model.C": 0.3})

    Raises:
        ParamsFileError: a file cannot be read or parsed.
        ParamError: a dotted override conflicts with a value.
    """
    merged, _ = _layer([load_params_file(p) for p in paths], overrides or {})
    return merged


def _layer(
    files: Sequence[ParamsFile], overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge files then overrides; also return the origin of every leaf (dotted key)."""
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for layer, origin in [
        *((f.data, f"params file {f.name}") for f in files),
        (expand_dotted(overrides), OVERRIDE_ORIGIN),
    ]:
        try:
            layer = expand_dotted(layer)
        except ParamError as exc:
            raise ParamError(f"{origin}: {exc}", problems=exc.problems) from None
        merged = merge_params(merged, layer)
        for key in flatten_params(layer):
            origins[key] = origin
    return merged, origins


def _origin(key: str, origins: Mapping[str, str]) -> str | None:
    if key in origins:
        return origins[key]
    parents = [k for k in origins if key.startswith(k + ".")]
    if parents:
        return origins[max(parents, key=len)]
    children = sorted(k for k in origins if k.startswith(key + "."))
    return origins[children[0]] if children else None


def resolve_with_files(
    definition: PipelineDefinition,
    params: Mapping[str, Any],
    files: Sequence[ParamsFile],
) -> dict[str, Any]:
    """:func:`resolve_run_params` of a run with ``files``, ``params`` already checked.

    Raises:
        ParamError: as :func:`resolve_run_params`, each bad key named with its origin.
    """
    merged, origins = _layer(files, params)
    try:
        return definition.resolve_params(merged)
    except ParamError as exc:
        if not exc.problems:
            raise
        lines = []
        for key, reason in exc.problems:
            origin = _origin(key, origins)
            where = origin if origin is not None else "not set by any params file or override"
            lines.append(f"{where}: key {key!r} {reason}")
        raise ParamError(
            f"pipeline {definition.name!r}: invalid params: " + "; ".join(lines),
            problems=exc.problems,
        ) from None


def params_file_records(
    files: Sequence[ParamsFile], store: ContentStore, *, root: Path | None = None
) -> tuple[list[dict[str, Any]], list[tuple[StoredArtifact, str]]]:
    """Store each file's bytes; return the ``params_files`` payload and the artifacts.

    Each payload entry is ``{"name", "digest", "format"}``; ``name`` is relative to
    ``root`` (the project) when the file is inside it. The artifacts carry role
    ``params-file``.
    """
    payload: list[dict[str, Any]] = []
    artifacts: list[tuple[StoredArtifact, str]] = []
    for item in files:
        digest = store.put_bytes(item.content)
        name = item.name
        if root is not None:
            try:
                name = item.path.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                name = item.path.resolve().as_posix()
        payload.append({"name": name, "digest": digest, "format": item.format})
        record = StoredArtifact(
            digest=digest,
            blob=digest,
            serializer="bytes",
            type_name=_MEDIA_TYPES[item.format],
            size=len(item.content),
            meta={"name": name, "format": item.format},
        )
        artifacts.append((record, "params-file"))
    return payload, artifacts
