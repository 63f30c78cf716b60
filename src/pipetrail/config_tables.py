"""One reader of the optional tables of ``pipetrail.toml``, shared by every feature.

Features that a project may leave unconfigured (quotas, alerts, telemetry, retention,
drift, encryption, audit, promotion) each own one top-level table of the project file.
They ask this module for it instead of each reading and parsing the file again: the
file's bytes are read on every call (a small read, never stale, whatever the file
system's timestamp granularity), and a table whose name cannot be spelled in the
bytes is absent without parsing anything (see :func:`may_name`). The parsed document
is kept per file for as long as its bytes stay the same, so the features that do find
their table share one parse; whether a table is there is always decided by the parse.
"""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from pathlib import Path

CONFIG_FILE = "pipetrail.toml"

_LOCK = threading.Lock()
_PARSED: dict[str, tuple[bytes, dict[str, Any]]] = {}  # file -> (its bytes, their parse)


def may_name(data: bytes, name: str) -> bool:
    r"""Whether the TOML text ``data`` may hold a key ``name``; False means it surely does not.

    A key is spelled by its own characters (bare, ``"quoted"`` or ``'literal'``) or, in
    a quoted key, by escapes: ``"\u0071uotas"`` is the key ``quotas``. So a text that
    holds neither the name's bytes nor an escape that could stand for one of its
    characters cannot hold the key; any other text is parsed to decide.

    Args:
        data: the file's bytes.
        name: the key (a table's name).
    """
    if name.encode() in data:
        return True
    if name.isascii() and name.replace("_", "a").replace("-", "a").isalnum():
        # a bare key's characters can only be spelled by \u (4 hex digits) or \U (8) escapes
        return b"\\u" in data or b"\\U" in data
    return b"\\" in data


def project_table(root: Path, name: str) -> Any:
    """The top-level table ``name`` of ``root/pipetrail.toml``, or None when absent.

    The value is the caller's own copy: changing it changes nothing for later calls.

    Args:
        root: the project folder.
        name: the table's name (``quotas``, ``alerts``, ...).

    Raises:
        ProjectError: the file cannot be read, or it is not valid TOML (names the file).
    """
    path = root / CONFIG_FILE
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror or exc}") from None
    return table_in(path, data, name)


def table_in(path: Path, data: bytes, name: str) -> Any:
    """The top-level table ``name`` of ``data``, the bytes read from ``path``; None when absent.

    For a caller that keeps the bytes it read (to key a record on them, say), so that
    what it parses is what it read. The value is the caller's own copy.

    Raises:
        ProjectError: ``data`` is not valid TOML (names the file).
    """
    if not may_name(data, name):  # the usual case: no parse, no tomllib import
        return None
    table = _document(path, data).get(name)
    return None if table is None else copy.deepcopy(table)


def _document(path: Path, data: bytes) -> dict[str, Any]:
    key = str(path)
    with _LOCK:
        kept = _PARSED.get(key)
    if kept is not None and kept[0] == data:
        return kept[1]
    import tomllib

    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProjectError(f"{path} is not valid TOML: {exc}; fix the file") from None
    with _LOCK:
        _PARSED[key] = (data, document)
    return document
