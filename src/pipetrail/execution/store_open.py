"""Open a project's content store from its settings: the local folder, or an S3 bucket.

``store = "s3://BUCKET/PREFIX"`` in ``pipetrail.toml`` (or ``PIPETRAIL_STORE``) selects an
:class:`~pipetrail.store.s3.S3Store`; its ``[store.s3]`` table may set ``endpoint``,
``region``, ``access_key_id``, ``secret_access_key`` and ``cache_size`` (the local read
cache's limit, ``"2GiB"`` or a number of bytes). Settings not given come from the usual
``AWS_*`` variables. The read cache lives in ``.pipetrail/cache/s3/``. Nothing here is
written to the ledger: :func:`store_location` is what records and reports name, and it
never holds a secret.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from pipetrail.config import ProjectConfig
    from pipetrail.store import ContentStore

__all__ = ["open_store", "parse_size", "s3_settings", "store_location"]

_S3_KEYS = {"endpoint", "region", "access_key_id", "secret_access_key", "cache_size"}
_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
_UNITS.update({"KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4})


def parse_size(value: Any, *, origin: str) -> int:
    """``"2GiB"``, ``"500MB"`` or a whole number of bytes, as bytes.

    Raises:
        ProjectError: not a size (the message names ``origin``).
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", str(value))
    if isinstance(value, str) and match and (match.group(2) or "") in _UNITS:
        return int(float(match.group(1)) * _UNITS[match.group(2) or ""])
    raise ProjectError(
        f'{origin} must be a size such as "2GiB" or a number of bytes, got {value!r}'
    )


def s3_settings(config: ProjectConfig) -> dict[str, Any]:
    """The S3Store keyword arguments from ``[store.s3]`` (checked; unset ones omitted).

    Raises:
        ProjectError: an unknown key or a value of the wrong type.
    """
    table = dict(config.store_s3)
    where = f"{config.root / 'pipetrail.toml'}: [store.s3]"
    unknown = sorted(set(table) - _S3_KEYS)
    if unknown:
        raise ProjectError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys are "
            f"{', '.join(sorted(_S3_KEYS))}"
        )
    settings: dict[str, Any] = {}
    for key in ("endpoint", "region", "access_key_id", "secret_access_key"):
        value = table.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ProjectError(f"{where}: '{key}' must be a string")
        settings[key] = value
    if "cache_size" in table:
        settings["cache_bytes"] = parse_size(table["cache_size"], origin=f"{where} 'cache_size'")
    return settings


def store_location(config: ProjectConfig) -> str:
    """Where the content store is, fit for messages and reports (no credentials)."""
    return config.store_url or str(config.artifacts)


def open_store(config: ProjectConfig, *, create: bool = True) -> ContentStore:
    """Open the configured content store.

    Args:
        config: the project's settings.
        create: create a missing local store folder (False for read-only checks).

    Raises:
        ProjectError: bad ``[store.s3]`` settings.
        StoreError: the S3 URL is malformed.
    """
    if config.store_url is None:
        from pipetrail.store import LocalStore

        return LocalStore(config.artifacts, create=create)
    from pipetrail.store.s3 import S3Store

    settings = s3_settings(config)
    return S3Store(config.store_url, cache_dir=config.state_dir / "cache" / "s3", **settings)
