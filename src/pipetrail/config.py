"""Project discovery and configuration: ``pipetrail.toml`` plus environment variables.

A project is the nearest folder, from the working directory upwards, that holds a
``pipetrail.toml``. Without one, the working directory is the project and the embedded
defaults apply (``.pipetrail/ledger.db`` and ``.pipetrail/objects``), created on first
write. Read-only commands ask for an existing project (``must_exist=True``): outside one
they stop with a :class:`~pipetrail.errors.ProjectError` and create nothing. Environment
variables override the file: ``PIPETRAIL_METADATA``, ``PIPETRAIL_ARTIFACTS``,
``PIPETRAIL_STORE`` (an ``s3://`` artifact store, settings in ``[store.s3]``),
``PIPETRAIL_SEED``, ``PIPETRAIL_PARITY`` and ``PIPETRAIL_PARITY_REFERENCE``.
Cheap to import: stdlib only.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetrail.errors import ProjectError

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_GC_GRACE",
    "STATE_DIR",
    "ProjectConfig",
    "duration_seconds",
    "find_root",
    "init_project",
    "load_config",
    "redact_url",
]

CONFIG_FILE = "pipetrail.toml"
STATE_DIR = ".pipetrail"

_KNOWN = {
    "metadata", "artifacts", "store", "seed", "executor", "parity", "parity_reference",
    "gc_grace",
}  # fmt: skip
# Garbage collection spares objects stored less than this long ago (docs/gc.md).
DEFAULT_GC_GRACE = 3600.0
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PARITY_MODES = ("off", "warn", "strict")

DEFAULT_TOML = """\
# pipetrail project settings. Environment variables PIPETRAIL_METADATA,
# PIPETRAIL_ARTIFACTS and PIPETRAIL_SEED override these values.
[pipetrail]
# Metadata store (ledger + projections): a SQLAlchemy URL. Relative SQLite paths are
# relative to this file. Team setup: "postgresql://user@host/dbname".
metadata = "sqlite:///.pipetrail/ledger.db"
# Content-addressed artifact store: a folder (relative to this file).
artifacts = ".pipetrail/objects"
# Run seed used when `pipetrail run` gets no --seed; per-step seeds derive from it.
seed = 0
# Where steps execute.
executor = "inline"
# Compare the environment with a reference run's before each run: "off", "warn" (report
# and record the differences) or "strict" (refuse to run). See docs/environment.md.
# parity = "warn"
# parity_reference = "RUN_ID"
# `pipetrail gc` leaves objects stored less than this long ago alone (90, 30m, 1h, 2d).
# gc_grace = "1h"
"""


@dataclass(frozen=True)
class ProjectConfig:
    """Resolved project settings.

    Attributes:
        root: the project folder.
        metadata_url: SQLAlchemy URL of the metadata store.
        artifacts: folder of the content store.
        seed: default run seed.
        executor: executor name.
        has_file: whether a ``pipetrail.toml`` was found.
        parity: environment parity mode before a run: ``off``, ``warn`` or ``strict``.
        parity_reference: the run whose environment parity compares with.
        gc_grace: seconds; garbage collection spares objects stored more recently.
    """

    root: Path
    metadata_url: str
    artifacts: Path
    seed: int
    executor: str
    has_file: bool
    parity: str = "off"
    parity_reference: str | None = None
    # The S3 store (`store = "s3://..."` or PIPETRAIL_STORE) and its [store.s3] table.
    store_url: str | None = None
    store_s3: dict[str, Any] = field(default_factory=dict)
    gc_grace: float = DEFAULT_GC_GRACE

    @property
    def state_dir(self) -> Path:
        """The ``.pipetrail`` folder of the project."""
        return self.root / STATE_DIR


def find_root(start: Path | None = None) -> Path | None:
    """Return the nearest folder at or above ``start`` holding ``pipetrail.toml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None


def _require_project(here: Path) -> None:
    """Refuse to go on outside a project: no ``pipetrail.toml`` above, no state here.

    A folder counts as a project when it or a parent holds ``pipetrail.toml``, when it
    holds a ``.pipetrail`` folder (runs made without ``pipetrail init``), or when
    ``PIPETRAIL_METADATA`` names the metadata store.
    """
    if (here / STATE_DIR).is_dir() or os.environ.get("PIPETRAIL_METADATA"):
        return
    raise ProjectError(
        f"no pipetrail project here: searched {here} and every folder above it for "
        f"{CONFIG_FILE} (and {here} for {STATE_DIR}); run `pipetrail init` to make one, "
        "or cd into a project"
    )


def _resolve_sqlite(url: str, root: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("/"):
            return prefix + str((root / rest).resolve())
    return url


def load_config(
    start: Path | None = None, *, root: Path | None = None, must_exist: bool = False
) -> ProjectConfig:
    """Find the project and read its settings.

    Args:
        start: the folder to search from (default: the working directory).
        root: the project folder, when known (no search).
        must_exist: refuse a folder that is not a project, instead of taking the
            working directory with the defaults (read-only commands, which must not
            create a ledger or a store where there is none).

    Raises:
        ProjectError: if ``pipetrail.toml`` is malformed, naming the file, key and fix;
            with ``must_exist``, if no project was found.
    """
    found = root.resolve() if root is not None else find_root(start)
    if found is None and must_exist:
        _require_project((start or Path.cwd()).resolve())
    project_root = found or (start or Path.cwd()).resolve()
    data: dict[str, Any] = {}
    store_s3: dict[str, Any] = {}
    path = project_root / CONFIG_FILE
    has_file = path.is_file()
    if has_file:
        try:
            parsed = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ProjectError(f"{path} is not valid TOML: {exc}; fix the file") from None
        section = parsed.get("pipetrail", {})
        if not isinstance(section, dict):
            raise ProjectError(f"{path}: [pipetrail] must be a table")
        unknown = sorted(set(section) - _KNOWN)
        if unknown:
            raise ProjectError(
                f"{path}: unknown key(s) {', '.join(unknown)} in [pipetrail]; known keys are "
                f"{', '.join(sorted(_KNOWN))}"
            )
        data = section
        store_s3 = _store_s3_table(parsed, path)
    metadata = os.environ.get("PIPETRAIL_METADATA") or data.get("metadata")
    artifacts = os.environ.get("PIPETRAIL_ARTIFACTS") or data.get("artifacts")
    seed_value: Any = os.environ.get("PIPETRAIL_SEED") or data.get("seed", 0)
    for key, value in (("metadata", metadata), ("artifacts", artifacts)):
        if value is not None and not isinstance(value, str):
            raise ProjectError(f"{path}: '{key}' must be a string, got {value!r}")
    origin = "PIPETRAIL_SEED" if os.environ.get("PIPETRAIL_SEED") else f"{path}: 'seed'"
    try:
        # int() would truncate 1.5 (and turn true into 1): only whole numbers are seeds.
        if isinstance(seed_value, bool | float):
            raise TypeError(seed_value)
        seed = int(seed_value)
    except (TypeError, ValueError):
        raise ProjectError(
            f"{origin} must be a whole number from 0 to 4294967295, got {seed_value!r}"
        ) from None
    if not 0 <= seed <= 2**32 - 1:
        raise ProjectError(f"{origin} must be between 0 and 4294967295, got {seed}")
    executor = data.get("executor", "inline")
    if executor != "inline":
        raise ProjectError(
            f'{path}: executor {executor!r} is not available in this version; use "inline"'
        )
    parity = os.environ.get("PIPETRAIL_PARITY") or data.get("parity", "off")
    if parity not in _PARITY_MODES:
        raise ProjectError(
            f"{path}: 'parity' (or PIPETRAIL_PARITY) must be one of "
            f"{', '.join(map(repr, _PARITY_MODES))}, got {parity!r}"
        )
    parity_reference = os.environ.get("PIPETRAIL_PARITY_REFERENCE") or data.get("parity_reference")
    if parity_reference is not None and not isinstance(parity_reference, str):
        raise ProjectError(f"{path}: 'parity_reference' must be a run id, got {parity_reference!r}")
    store_url = os.environ.get("PIPETRAIL_STORE") or data.get("store")
    if store_url is not None and (
        not isinstance(store_url, str) or not store_url.startswith("s3://")
    ):
        raise ProjectError(
            f"{path}: 'store' (or PIPETRAIL_STORE) must be an s3://BUCKET[/PREFIX] URL, got "
            f"{store_url!r}; a local folder store is set with 'artifacts'"
        )
    gc_grace = _gc_grace(data.get("gc_grace"), path)
    metadata_url = _resolve_sqlite(metadata or f"sqlite:///{STATE_DIR}/ledger.db", project_root)
    artifacts_dir = Path(artifacts) if artifacts else Path(STATE_DIR) / "objects"
    if not artifacts_dir.is_absolute():
        artifacts_dir = project_root / artifacts_dir
    return ProjectConfig(
        root=project_root,
        metadata_url=metadata_url,
        artifacts=artifacts_dir,
        seed=seed,
        executor=str(executor),
        has_file=has_file,
        parity=str(parity),
        parity_reference=parity_reference or None,
        store_url=store_url or None,
        store_s3=store_s3,
        gc_grace=gc_grace,
    )


def duration_seconds(text: str) -> float | None:
    """Seconds in ``90``, ``30m``, ``1h`` or ``2d``; None when ``text`` is no duration."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:], 0.0) if value else 0.0
    try:
        seconds = float(value[:-1] if unit else value) * (unit or 1.0)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _gc_grace(value: Any, path: Path) -> float:
    if value is None:
        return DEFAULT_GC_GRACE
    seconds = None if isinstance(value, bool) else duration_seconds(str(value))
    if seconds is None:
        raise ProjectError(
            f"{path}: 'gc_grace' must be a duration such as 90, 30m, 1h or 2d, got {value!r}"
        )
    return seconds


def _store_s3_table(parsed: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``[store.s3]`` table (endpoint, region, credentials, read cache size), raw."""
    store = parsed.get("store", {})
    table = store.get("s3", {}) if isinstance(store, dict) else None
    if not isinstance(table, dict):
        raise ProjectError(f"{path}: [store.s3] must be a table")
    return dict(table)


def init_project(folder: Path, *, metadata: str | None = None, store: str | None = None) -> Path:
    """Create ``pipetrail.toml`` and ``.pipetrail/`` in ``folder``; return the config path.

    Args:
        folder: the project folder.
        metadata: the metadata store URL to write (default: the SQLite file).
        store: an ``s3://BUCKET/PREFIX`` artifact store to write (default: the folder).

    Raises:
        ProjectError: if the folder already holds a project, or ``store`` is not s3://.
    """
    path = folder / CONFIG_FILE
    if path.exists():
        raise ProjectError(f"{folder} is already a pipetrail project ({path} exists)")
    if store is not None and not store.startswith("s3://"):
        raise ProjectError(f"--store must be an s3://BUCKET[/PREFIX] URL, got {store!r}")
    text = DEFAULT_TOML
    if metadata is not None:
        text = text.replace(
            'metadata = "sqlite:///.pipetrail/ledger.db"', f"metadata = {_toml_string(metadata)}"
        )
    if store is not None:
        text = text.replace(
            'artifacts = ".pipetrail/objects"\n',
            'artifacts = ".pipetrail/objects"\n'
            "# The team store: objects in S3; endpoint, region and credentials from the\n"
            "# AWS_* variables or a [store.s3] table.\n"
            f"store = {_toml_string(store)}\n",
        )
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    state = folder / STATE_DIR
    state.mkdir(exist_ok=True)
    (state / ".gitignore").write_text("*\n", encoding="utf-8")
    return path


def _toml_string(value: str) -> str:
    """``value`` as a TOML basic string."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def redact_url(url: str) -> str:
    """Return a database URL without its credentials, fit for messages and reports."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
