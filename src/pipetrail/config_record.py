"""The record of the last successful validation of ``pipetrail.toml`` (ADR 0022).

Validating with pydantic (:mod:`pipetrail.config_model`) costs tens of milliseconds of
imports, more than a read-only command may take in all. So the validated, normalized
values are kept in ``.pipetrail/cache/config.json`` with what they were validated from:

- the BLAKE3 digest of the file's bytes (or that there was no file);
- the checked ``PIPETRAIL_*`` variables (``PIPETRAIL_SEED``, ``PIPETRAIL_PARITY``);
  the free-form ones (``PIPETRAIL_METADATA``, ...) are never written down, they may hold
  credentials, and need no validation;
- the project folder, pipetrail's version and the digest of the validating module's
  source (an edit of the schema invalidates every record, released or not);

and a BLAKE3 checksum of all of it. A record whose checksum, format or any of these
differs is ignored and rebuilt, never trusted; one that cannot be read or written is
no more than a miss. Writers write a temporary file and rename it over the record, so
concurrent processes leave one whole record. The record is only written inside an
existing ``.pipetrail`` folder, and created only by commands that write (``init``,
``run``...): a read-only command replaces a stale record but creates no file.

Without a file and without checked variables there is nothing to validate: the
defaults apply and no record is kept. Within one process, results are also memoized.

The reading, sealing and writing of a record (:func:`read_record`, :func:`write_record`,
:func:`source_digest`) are shared with the other validations kept the same way, such as
the promotion policies of :mod:`pipetrail.governance.policy`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blake3 import blake3

from pipetrail.config import DEFAULT_REPRODUCE, STATE_DIR
from pipetrail.core.version import VERSION
from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["RECORD_PATH", "read_record", "source_digest", "validated_settings", "write_record"]

#: Where the record lives, under the project folder.
RECORD_PATH = Path(STATE_DIR) / "cache" / "config.json"
_FORMAT = 1
_DEFAULTS: dict[str, Any] = {
    "store": None,
    "gc_grace": 3600.0,
    "store_s3": {},
    "store_s3_secret": False,
    "metadata": None,
    "artifacts": None,
    "seed": 0,
    "executor": "inline",
    "executor_settings": {},
    "parity": "off",
    "parity_reference": None,
    "reproduce": DEFAULT_REPRODUCE,
}
_MEMO: dict[str, dict[str, Any]] = {}


def _digest(data: bytes) -> str:
    return blake3(data).hexdigest()


def source_digest(*sources: Path) -> str | None:
    """The digest of the validating code's source files; ``None`` (trust no record) if unreadable.

    Keying a record on it makes an edit of the validation invalidate every record, with
    or without a new version number.
    """
    try:
        if len(sources) == 1:
            return _digest(sources[0].read_bytes())
        return _digest(b"".join(_digest(source.read_bytes()).encode() for source in sources))
    except OSError:
        return None


def _schema_digest() -> str | None:
    """The digest of the validating module's source; ``None`` (trust no record) if unreadable."""
    return source_digest(Path(__file__).with_name("config_model.py"))


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def validated_settings(
    root: Path, path: Path, content: bytes | None, checked: Mapping[str, str], *, create: bool
) -> dict[str, Any]:
    """The validated values of ``pipetrail.toml`` and the checked variables.

    Args:
        root: the project folder.
        path: the file (for messages).
        content: the file's bytes, ``None`` without a file.
        checked: the set checked ``PIPETRAIL_*`` variables.
        create: whether a missing record may be created (read-only commands only
            replace an existing one: they create no file).

    Returns:
        The values :func:`pipetrail.config_model.validate_settings` returns, from the
        record when it was made from the same inputs.

    Raises:
        ProjectError: the file or a variable is invalid (from the validation).
    """
    if content is None and not checked:
        return dict(_DEFAULTS)
    schema = _schema_digest()
    key = {
        "format": _FORMAT,
        "pipetrail": VERSION,
        "schema": schema,
        "root": str(root),
        "file": None if content is None else _digest(content),
        "env": dict(sorted(checked.items())),
    }
    memo_key = _canonical(key).decode()
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    record = root / RECORD_PATH
    values = _read(record, key) if schema is not None else None
    if values is None:
        values = _validate(path, content, checked)
        if schema is not None and (create or record.is_file()):
            _write(root, record, key, values)
    _MEMO[memo_key] = values
    return values


def _validate(path: Path, content: bytes | None, checked: Mapping[str, str]) -> dict[str, Any]:
    from pipetrail.config_model import validate_settings

    text = None
    if content is not None:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProjectError(f"{path} is not valid TOML: {exc}; fix the file") from None
    return validate_settings(path, text, checked)


def _read(record: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recorded values when the record is whole and made from ``key``; else ``None``."""
    values = read_record(record, key, _well_formed)
    return values if isinstance(values, dict) else None


def read_record(record: Path, key: Mapping[str, Any], well_formed: Callable[[Any], bool]) -> Any:
    """The values of ``record`` when it is whole, sealed, made from ``key`` and well formed.

    Args:
        record: the record's file.
        key: what the values must have been validated from (compared whole).
        well_formed: whether values have the shape the validation gives; a last line of
            defence against a record edited with its checksum recomputed.

    Returns:
        The recorded values, or ``None`` when the record is missing, unreadable, not
        sealed by its checksum, made from another key or not well formed: then the
        caller validates again.
    """
    try:
        data = json.loads(record.read_bytes())
        checksum = data.pop("checksum")
        if checksum != _digest(_canonical(data)) or data.get("key") != key:
            return None
        values = data["values"]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return values if well_formed(values) else None


def _well_formed(values: Any) -> bool:
    """Whether recorded values have the shape validation gives (a last line of defence)."""
    if not isinstance(values, dict) or set(values) != set(_DEFAULTS):
        return False
    text_or_none = all(
        values[name] is None or isinstance(values[name], str)
        for name in ("metadata", "artifacts", "parity_reference", "store")
    )
    grace = values["gc_grace"]
    s3 = values["store_s3"]
    store_ok = (
        isinstance(grace, float)
        and grace >= 0
        and isinstance(s3, dict)
        and "secret_access_key" not in s3
        and isinstance(values["store_s3_secret"], bool)
        and (values["store"] is None or values["store"].startswith("s3://"))
    )
    seed = values["seed"]
    reproduce = values["reproduce"]
    return (
        text_or_none
        and store_ok
        and isinstance(seed, int)
        and not isinstance(seed, bool)
        and 0 <= seed <= 2**32 - 1
        and _is_executor(values["executor"], values["executor_settings"])
        and values["parity"] in ("off", "warn", "strict")
        and isinstance(reproduce, dict)
        and isinstance(reproduce.get("require_identical_artifacts"), bool)
        and _is_tolerance(reproduce.get("tolerance"))
        and isinstance(reproduce.get("tolerances"), dict)
        and all(_is_tolerance(tol) for tol in reproduce["tolerances"].values())
    )


def _is_executor(name: Any, settings: Any) -> bool:
    if not isinstance(name, str) or not isinstance(settings, dict):
        return False
    kind, sep, address = name.partition("=")
    workers = settings.get("workers")
    return (
        kind in ("inline", "processes", "dask")
        and (not sep or (kind == "dask" and bool(address)))
        and set(settings) <= {"workers", "address", "resources"}
        and (workers is None or (type(workers) is int and workers >= 1))
        and isinstance(settings.get("address", ""), str)
        and isinstance(settings.get("resources", {}), dict)
    )


def _is_tolerance(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"abs", "rel"}
        and all(type(part) is float and 0 <= part < float("inf") for part in value.values())
    )


def _write(root: Path, record: Path, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    write_record(root, record, key, values)


def write_record(root: Path, record: Path, key: Mapping[str, Any], values: Any) -> None:
    """Replace ``record`` whole, sealed by its checksum; skip outside a project.

    A temporary file is written and renamed over the record, so concurrent writers leave
    one whole record. Nothing is written unless ``root`` holds a ``.pipetrail`` folder, and
    a failed write is silent: the next process validates again.

    Args:
        root: the project folder.
        record: the record's file (under ``root/.pipetrail``).
        key: what the values were validated from.
        values: the validated values (JSON-able).
    """
    if not (root / STATE_DIR).is_dir():
        return
    import tempfile  # only here: its imports cost more than the rest of a read

    data = {"key": key, "values": values}
    body = {**data, "checksum": _digest(_canonical(data))}
    tmp: str | None = None
    try:
        record.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{record.stem}-", suffix=".tmp", dir=record.parent)
        with os.fdopen(fd, "wb") as out:
            out.write(_canonical(body))
        os.replace(tmp, record)
        tmp = None
    except OSError:
        pass  # a read-only project: validate again next time
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
