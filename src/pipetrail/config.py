"""Project discovery and configuration: ``pipetrail.toml`` plus environment variables.

A project is the nearest folder, from the working directory upwards, that holds a
``pipetrail.toml``. Without one, the working directory is the project and the embedded
defaults apply (``.pipetrail/ledger.db`` and ``.pipetrail/objects``), created on first
write. Read-only commands ask for an existing project (``must_exist=True``): outside one
they stop with a :class:`~pipetrail.errors.ProjectError` and create nothing. Environment
variables override the file: ``PIPETRAIL_METADATA``, ``PIPETRAIL_ARTIFACTS``,
``PIPETRAIL_SEED``, ``PIPETRAIL_PARITY`` and ``PIPETRAIL_PARITY_REFERENCE``.
Cheap to import: stdlib only; pydantic validates the file only when it changed
(:mod:`pipetrail.config_record`, ADR 0022).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetrail.errors import ProjectError

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_GC_GRACE",
    "DEFAULT_REPRODUCE",
    "ENV_CHECKED",
    "STATE_DIR",
    "ProjectConfig",
    "find_root",
    "init_project",
    "load_config",
    "redact_url",
]

CONFIG_FILE = "pipetrail.toml"
STATE_DIR = ".pipetrail"

# Garbage collection spares objects stored less than this long ago (docs/gc.md).
DEFAULT_GC_GRACE = 3600.0
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

#: The environment overrides whose values are validated (the others are free-form text).
ENV_CHECKED = ("PIPETRAIL_SEED", "PIPETRAIL_PARITY")

#: ``[reproduce]`` when the file has none: identical artifacts, exact metrics.
DEFAULT_REPRODUCE: dict[str, Any] = {
    "require_identical_artifacts": True,
    "tolerance": {"abs": 0.0, "rel": 0.0},
    "tolerances": {},
}

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
# Where steps execute: "inline", "processes" (local worker processes) or "dask" (a
# local Dask cluster, or "dask=tcp://HOST:PORT"); [executor] workers = N sets the pool size.
executor = "inline"
# Compare the environment with a reference run's before each run: "off", "warn" (report
# and record the differences) or "strict" (refuse to run). See docs/environment.md.
# parity = "warn"
# parity_reference = "RUN_ID"
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
        reproduce: the validated ``[reproduce]`` table: ``require_identical_artifacts``,
            ``tolerance`` and ``tolerances`` (``{"abs": float, "rel": float}`` each); see
            :meth:`pipetrail.verify.settings.ReproduceSettings.from_config`.
        store_url: the S3 store (``store = "s3://..."`` or ``PIPETRAIL_STORE``), if any.
        store_s3: its ``[store.s3]`` settings (endpoint, region, credentials, cache_size).
        gc_grace: seconds; garbage collection spares objects stored more recently.
        executor_settings: the ``[executor]`` table (``workers``, ``address``,
            ``resources``) as set.
    """

    root: Path
    metadata_url: str
    artifacts: Path
    seed: int
    executor: str
    has_file: bool
    parity: str = "off"
    parity_reference: str | None = None
    reproduce: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_REPRODUCE), hash=False)
    store_url: str | None = None
    store_s3: dict[str, Any] = field(default_factory=dict, hash=False)
    gc_grace: float = DEFAULT_GC_GRACE
    executor_settings: dict[str, Any] = field(default_factory=dict, hash=False)

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
    start: Path | None = None,
    *,
    root: Path | None = None,
    must_exist: bool = False,
    writes: bool | None = None,
) -> ProjectConfig:
    """Find the project and read its settings.

    The file and the checked environment variables are validated by
    :mod:`pipetrail.config_model` (pydantic) only when they, or pipetrail, changed since
    the last successful validation; otherwise the recorded result is used (see
    :mod:`pipetrail.config_record`).

    Args:
        start: the folder to search from (default: the working directory).
        root: the project folder, when known (no search).
        must_exist: refuse a folder that is not a project, instead of taking the
            working directory with the defaults (read-only commands, which must not
            create a ledger or a store where there is none).
        writes: whether the caller changes the project, so may create the validation
            record when there is none (see :mod:`pipetrail.config_record`); default:
            ``not must_exist``. Commands that refuse a folder outside a project but
            record events (governance acts, deletions) pass ``True``.

    Raises:
        ProjectError: if ``pipetrail.toml`` or a ``PIPETRAIL_*`` variable is malformed,
            naming the file or variable, the key and what was expected; with
            ``must_exist``, if no project was found.
    """
    found = root.resolve() if root is not None else find_root(start)
    if found is None and must_exist:
        _require_project((start or Path.cwd()).resolve())
    project_root = found or (start or Path.cwd()).resolve()
    path = project_root / CONFIG_FILE
    has_file = path.is_file()
    try:
        content = path.read_bytes() if has_file else None
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror or exc}") from None
    checked = {name: value for name in ENV_CHECKED if (value := os.environ.get(name))}
    from pipetrail.config_record import validated_settings

    create = not must_exist if writes is None else writes
    values = validated_settings(project_root, path, content, checked, create=create)
    metadata = os.environ.get("PIPETRAIL_METADATA") or values["metadata"]
    artifacts = os.environ.get("PIPETRAIL_ARTIFACTS") or values["artifacts"]
    reference = os.environ.get("PIPETRAIL_PARITY_REFERENCE") or values["parity_reference"]
    store_url = os.environ.get("PIPETRAIL_STORE") or values["store"]
    if store_url is not None and not store_url.startswith("s3://"):
        raise ProjectError(
            f"PIPETRAIL_STORE must be an s3://BUCKET[/PREFIX] URL, got {store_url!r}; a local "
            "folder store is set with 'artifacts'"
        )
    store_s3 = dict(values["store_s3"])
    if values["store_s3_secret"]:  # never kept in the validation record: read when needed
        store_s3["secret_access_key"] = _s3_secret(path)
    artifacts_dir = Path(artifacts) if artifacts else Path(STATE_DIR) / "objects"
    if not artifacts_dir.is_absolute():
        artifacts_dir = project_root / artifacts_dir
    return ProjectConfig(
        root=project_root,
        metadata_url=_resolve_sqlite(metadata or f"sqlite:///{STATE_DIR}/ledger.db", project_root),
        artifacts=artifacts_dir,
        seed=values["seed"],
        executor=values["executor"],
        has_file=has_file,
        parity=values["parity"],
        parity_reference=reference or None,
        reproduce=values["reproduce"],
        store_url=store_url or None,
        store_s3=store_s3,
        gc_grace=values["gc_grace"],
        executor_settings=dict(values["executor_settings"]),
    )


def _s3_secret(path: Path) -> str:
    """``[store.s3] secret_access_key`` of the (already validated) file."""
    from pipetrail.config_tables import project_table

    return str(project_table(path.parent, "store")["s3"]["secret_access_key"])


def duration_seconds(text: str) -> float | None:
    """Seconds in ``90``, ``30m``, ``1h`` or ``2d``; None when ``text`` is no duration."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:], 0.0) if value else 0.0
    try:
        seconds = float(value[:-1] if unit else value) * (unit or 1.0)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


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
    load_config(root=folder)  # records the validation: later commands start without it
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
