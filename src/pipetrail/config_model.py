"""The schema of ``pipetrail.toml`` and of the ``PIPETRAIL_*`` overrides, as pydantic models.

:func:`validate_settings` parses the file, validates every table pipetrail reads
(``[pipetrail]``, ``[reproduce]``, ``[store]`` and ``[alerts]``; ``[drift]`` and the
promotion policies are validated by the modules that read them) and the environment
variables that need checking (``PIPETRAIL_SEED``, ``PIPETRAIL_PARITY``), and returns
plain, normalized values. The first problem found becomes one line naming the file (or
the variable), the key path, what was expected and the value found.

Importing pydantic and building these models costs tens of milliseconds, so
:mod:`pipetrail.config` imports this module only when the file, those variables or
pipetrail changed since the last successful validation (see ADR 0022); any change to
this module's source also invalidates the recorded result.
"""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = [
    "ALERT_EVENTS",
    "ENV_VALIDATED",
    "RETENTION_CLASSES",
    "RETENTION_CONTENT",
    "validate_alerts",
    "validate_retention",
    "validate_settings",
]

#: The environment overrides whose values are checked (the others are free-form text).
ENV_VALIDATED = ("PIPETRAIL_SEED", "PIPETRAIL_PARITY")

_MAX_SEED = 2**32 - 1
_SEED = f"a whole number from 0 to {_MAX_SEED}"
_PARITY = "one of 'off', 'warn', 'strict'"
_TOLERANCE = "a number or {abs = ..., rel = ...}"
_NON_NEGATIVE = "a finite number >= 0"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Tolerance(_Strict):
    abs: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    rel: float = Field(default=0.0, ge=0, allow_inf_nan=False)


def _number_is_absolute(value: Any) -> Any:
    """A bare number is an absolute tolerance (``1e-9`` means ``{abs = 1e-9}``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"abs": value}
    return value


_ToleranceSpec = Annotated[_Tolerance, BeforeValidator(_number_is_absolute)]


def _duration(value: Any) -> Any:
    """``90``, ``"30m"``, ``"1h"``, ``"2d"`` as seconds; anything else is left to fail."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
        unit = units.get(text[-1:], 0.0) if text else 0.0
        try:
            return float(text[:-1] if unit else text) * (unit or 1.0)
        except ValueError:
            return value
    return value


_Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0, allow_inf_nan=False)]


def _s3_url(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith("s3://"):
        raise ValueError("not an s3:// URL")
    return value


def _executor(value: Any) -> Any:
    if isinstance(value, str):
        name, sep, address = value.partition("=")
        if name.strip() not in ("inline", "processes", "dask") or (
            sep and (name.strip() != "dask" or not address.strip())
        ):
            raise ValueError("not an executor")
    return value


class _PipetrailTable(_Strict):
    metadata: str | None = None
    artifacts: str | None = None
    store: Annotated[str | None, BeforeValidator(_s3_url)] = None
    seed: int = Field(default=0, ge=0, le=_MAX_SEED)
    executor: Annotated[str, BeforeValidator(_executor)] = "inline"
    parity: Literal["off", "warn", "strict"] = "off"
    parity_reference: str | None = None
    gc_grace: _Duration = 3600.0


class _S3Table(_Strict):
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    cache_size: int | str | None = None


class _StoreTable(_Strict):
    s3: _S3Table = _S3Table()


class _ExecutorTable(_Strict):
    workers: int | None = Field(default=None, ge=1)
    address: str | None = None
    # The pool's or each local Dask worker's capacity: cpu, memory, gpu (checked by
    # execution.executors.capacity, which names the key it refuses).
    resources: dict[str, int | float | str] | None = None


class _ReproduceTable(_Strict):
    require_identical_artifacts: bool = True
    tolerance: _ToleranceSpec = _Tolerance()
    tolerances: dict[str, _ToleranceSpec] = Field(default_factory=dict)


#: The events ``[alerts]`` rules can name (see pipetrail.observability.alerts).
ALERT_EVENTS = (
    "run.failed",
    "drift.detected",
    "gate.failed",
    "promotion.requested",
    "resource.deviation",
)
_AlertEvent = Literal[
    "run.failed", "drift.detected", "gate.failed", "promotion.requested", "resource.deviation"
]


class _AlertRule(_Strict):
    name: str = Field(min_length=1, max_length=100)
    on: list[_AlertEvent] = Field(min_length=1)
    webhook: str | None = Field(default=None, pattern=r"^https?://")
    webhook_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    command: list[str] | None = Field(default=None, min_length=1)
    format: Literal["json", "slack"] = "json"
    pipelines: list[str] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> _AlertRule:
        targets = [t for t in ("webhook", "webhook_env", "command") if getattr(self, t)]
        if len(targets) != 1:
            found = ", ".join(targets) or "none"
            raise ValueError(
                f"rule {self.name!r} must have exactly one of webhook, webhook_env or command "
                f"(found: {found})"
            )
        if self.command is not None and self.format != "json":
            raise ValueError(f"rule {self.name!r}: format applies to webhooks only")
        return self


class _AlertsTable(_Strict):
    rules: list[_AlertRule] = Field(default_factory=list)
    retries: int = Field(default=3, ge=0, le=10)
    backoff: float = Field(default=0.5, ge=0, le=60, allow_inf_nan=False)
    timeout: float = Field(default=5.0, gt=0, le=300, allow_inf_nan=False)
    deviation_factor: float = Field(default=3.0, gt=1, allow_inf_nan=False)
    deviation_runs: int = Field(default=10, ge=1, le=1000)
    deviation_min_seconds: float = Field(default=1.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _unique_names(self) -> _AlertsTable:
        names = [rule.name for rule in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                "rule names must be unique; "
                + ", ".join(repr(n) for n in twice)
                + " name more than one rule"
            )
        return self


class _ConfigFile(BaseModel):
    # Tables pipetrail does not read are left to whoever reads them.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    pipetrail: _PipetrailTable = _PipetrailTable()
    reproduce: _ReproduceTable = _ReproduceTable()
    store: _StoreTable = _StoreTable()
    executor: _ExecutorTable = _ExecutorTable()
    alerts: _AlertsTable = _AlertsTable()


class _Environment(BaseModel):
    # Environment values are text: "7" is the seed 7 (lax mode), "1.5" is refused.
    model_config = ConfigDict(extra="forbid", frozen=True)

    PIPETRAIL_SEED: int | None = Field(default=None, ge=0, le=_MAX_SEED)
    PIPETRAIL_PARITY: Literal["off", "warn", "strict"] | None = None


# What each key holds, for the messages; "*" stands for any metric name.
_EXPECTED: dict[tuple[str, ...], str] = {
    ("pipetrail",): "a table ([pipetrail])",
    ("pipetrail", "metadata"): 'a SQLAlchemy URL in quotes (e.g. "sqlite:///.pipetrail/ledger.db")',
    ("pipetrail", "artifacts"): "a folder path in quotes",
    ("pipetrail", "seed"): _SEED,
    ("pipetrail", "executor"): (
        '"inline", "processes", "dask" or "dask=tcp://HOST:PORT" (the dask scheduler)'
    ),
    ("executor",): "a table ([executor])",
    ("executor", "workers"): "a whole number of worker processes >= 1",
    ("executor", "address"): 'a Dask scheduler address in quotes ("tcp://HOST:PORT")',
    ("executor", "resources"): 'a table such as {cpu = 4, memory = "16GiB", gpu = 1}',
    ("pipetrail", "parity"): _PARITY,
    ("pipetrail", "parity_reference"): "a run id in quotes",
    ("pipetrail", "store"): 'an S3 store URL in quotes ("s3://BUCKET/PREFIX")',
    ("pipetrail", "gc_grace"): 'a duration such as 90, "30m", "1h" or "2d"',
    ("store",): "a table ([store])",
    ("store", "s3"): "a table ([store.s3])",
    ("store", "s3", "endpoint"): 'a URL in quotes (e.g. "http://127.0.0.1:8333")',
    ("store", "s3", "region"): "a region name in quotes",
    ("store", "s3", "access_key_id"): "text in quotes",
    ("store", "s3", "secret_access_key"): "text in quotes",
    ("store", "s3", "cache_size"): 'a size such as "2GiB" or a number of bytes',
    ("reproduce",): "a table ([reproduce])",
    ("reproduce", "require_identical_artifacts"): "true or false",
    ("reproduce", "tolerance"): _TOLERANCE,
    ("reproduce", "tolerance", "abs"): _NON_NEGATIVE,
    ("reproduce", "tolerance", "rel"): _NON_NEGATIVE,
    ("reproduce", "tolerances"): "a table of NAME = tolerance",
    ("reproduce", "tolerances", "*"): _TOLERANCE,
    ("reproduce", "tolerances", "*", "abs"): _NON_NEGATIVE,
    ("reproduce", "tolerances", "*", "rel"): _NON_NEGATIVE,
    ("PIPETRAIL_SEED",): _SEED,
    ("PIPETRAIL_PARITY",): _PARITY,
    ("alerts",): "a table ([alerts])",
    ("alerts", "rules"): "a list of rules ([[alerts.rules]] tables)",
    ("alerts", "rules", "*"): "a table ([[alerts.rules]])",
    ("alerts", "rules", "*", "name"): "a name in quotes (1 to 100 characters)",
    ("alerts", "rules", "*", "on"): "a non-empty list of events, each one of "
    + ", ".join(f"'{e}'" for e in ALERT_EVENTS),
    ("alerts", "rules", "*", "on", "*"): "one of " + ", ".join(f"'{e}'" for e in ALERT_EVENTS),
    ("alerts", "rules", "*", "webhook"): "an http:// or https:// URL in quotes",
    ("alerts", "rules", "*", "webhook_env"): "the name of an environment variable holding the URL",
    ("alerts", "rules", "*", "command"): 'a non-empty list of arguments (["notify", "--urgent"])',
    ("alerts", "rules", "*", "command", "*"): "an argument in quotes",
    ("alerts", "rules", "*", "format"): '"json" or "slack"',
    ("alerts", "rules", "*", "pipelines"): "a list of pipeline names",
    ("alerts", "rules", "*", "pipelines", "*"): "a pipeline name in quotes",
    ("alerts", "retries"): "a whole number from 0 to 10",
    ("alerts", "backoff"): "seconds from 0 to 60",
    ("alerts", "timeout"): "seconds, more than 0 and at most 300",
    ("alerts", "deviation_factor"): "a number above 1 (3 = three times the usual)",
    ("alerts", "deviation_runs"): "a whole number of runs from 1 to 1000",
    ("alerts", "deviation_min_seconds"): _NON_NEGATIVE,
}

_KNOWN_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("pipetrail",): tuple(_PipetrailTable.model_fields),
    ("reproduce",): tuple(_ReproduceTable.model_fields),
    ("store",): tuple(_StoreTable.model_fields),
    ("store", "s3"): tuple(_S3Table.model_fields),
    ("reproduce", "tolerance"): tuple(_Tolerance.model_fields),
    ("reproduce", "tolerances", "*"): tuple(_Tolerance.model_fields),
    ("alerts",): tuple(_AlertsTable.model_fields),
    ("alerts", "rules", "*"): tuple(_AlertRule.model_fields),
}


def _pattern(loc: tuple[str, ...]) -> tuple[str, ...]:
    """The location with the metric name of ``[reproduce.tolerances]`` made ``*``."""
    if loc[:2] in (("reproduce", "tolerances"), ("alerts", "rules")) and len(loc) > 2:
        loc = (*loc[:2], "*", *loc[3:])
    if loc[:4] == ("alerts", "rules", "*", "on") and len(loc) > 4:
        return (*loc[:4], "*")
    if loc[:4] in (("alerts", "rules", "*", "command"), ("alerts", "rules", "*", "pipelines")):
        return loc[:4] + (("*",) if len(loc) > 4 else ())
    return loc


def _key_path(loc: tuple[str, ...]) -> str:
    """A TOML dotted key: ``reproduce.tolerances."evaluate.auc".abs``.

    List items are numbered from 1 as written: ``alerts.rules[2].format``.
    """
    parts: list[str] = []
    for part in loc:
        if part.isdigit() and parts:
            parts[-1] += f"[{int(part) + 1}]"
        else:
            parts.append(part if part.replace("_", "").isalnum() else f'"{part}"')
    return ".".join(parts)


def _describe(error: Mapping[str, Any], where: str, *, env: bool) -> str:
    """One line for one pydantic error: where, which key, what was expected, what was found."""
    loc = tuple(str(part) for part in error["loc"])
    found = error["input"]
    if error["type"] == "extra_forbidden":
        known = _KNOWN_KEYS.get(_pattern(loc[:-1]), ())
        return (
            f"{where}: unknown key '{_key_path(loc)}'; the known keys of "
            f"[{_key_path(loc[:-1])}] are {', '.join(known)}"
        )
    if error["type"] == "value_error" and loc[:1] == ("alerts",):  # a rule across keys
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{where}: [{_key_path(loc)}] {message}"
    expected = _EXPECTED.get(_pattern(loc)) or str(error["msg"]).lower()
    if env:
        return f"{loc[0]} must be {expected}, got {found!r}"
    return f"{where}: '{_key_path(loc)}' must be {expected}, got {found!r}"


def _refuse(exc: ValidationError, where: str, *, env: bool) -> ProjectError:
    return ProjectError(
        _describe(exc.errors()[0], where, env=env) + ("" if env else "; fix the file")
    )


def validate_settings(path: Path, text: str | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """Validate ``pipetrail.toml`` (``text``, ``None`` when absent) and the overrides.

    Args:
        path: the file, for messages.
        text: its content, or ``None`` when the project has no file.
        environ: the checked ``PIPETRAIL_*`` variables that are set (non-empty).

    Returns:
        Plain values: ``metadata``, ``artifacts`` and ``parity_reference`` as written in
        the file (``None`` when not), ``seed`` and ``parity`` with the environment laid
        over the file, ``executor``, ``executor_settings`` (the ``[executor]`` table's
        ``workers`` and ``address`` that are set), ``reproduce`` (``require_identical_artifacts``,
        ``tolerance`` and ``tolerances`` of ``{"abs": float, "rel": float}``), ``store``
        (an ``s3://`` URL or ``None``), ``gc_grace`` (seconds), ``store_s3`` (the
        ``[store.s3]`` settings but the secret) and ``store_s3_secret`` (whether the
        file holds one: it is read from the file when the store is opened, never kept).

    Raises:
        ProjectError: the file is not TOML or a value is wrong; one line naming the file
            or variable, the key, what was expected and what was found.
    """
    data: dict[str, Any] = {}
    if text is not None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProjectError(f"{path} is not valid TOML: {exc}; fix the file") from None
    try:
        config = _ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise _refuse(exc, str(path), env=False) from None
    try:
        overrides = _Environment.model_validate(dict(environ))
    except ValidationError as exc:
        raise _refuse(exc, str(path), env=True) from None
    table = config.pipetrail
    reproduce = config.reproduce
    s3 = config.store.s3
    return {
        "store": table.store,
        "gc_grace": table.gc_grace,
        # The secret is never recorded: only whether the file holds one.
        "store_s3": {
            key: value
            for key, value in s3.model_dump().items()
            if value is not None and key != "secret_access_key"
        },
        "store_s3_secret": s3.secret_access_key is not None,
        "metadata": table.metadata,
        "artifacts": table.artifacts,
        "seed": table.seed if overrides.PIPETRAIL_SEED is None else overrides.PIPETRAIL_SEED,
        "executor": table.executor,
        "executor_settings": config.executor.model_dump(exclude_none=True),
        "parity": overrides.PIPETRAIL_PARITY or table.parity,
        "parity_reference": table.parity_reference,
        "reproduce": {
            "require_identical_artifacts": reproduce.require_identical_artifacts,
            "tolerance": reproduce.tolerance.model_dump(),
            "tolerances": {
                name: tol.model_dump() for name, tol in sorted(reproduce.tolerances.items())
            },
        },
    }


def validate_alerts(path: Path, table: Any) -> dict[str, Any]:
    """Validate an ``[alerts]`` table; return its plain, normalized values.

    Args:
        path: the file it came from, for messages.
        table: the parsed table (``tomllib``), or None when the file has none.

    Returns:
        ``rules`` (each with ``name``, ``on``, ``webhook``, ``webhook_env``, ``command``,
        ``format`` and ``pipelines``), ``retries``, ``backoff``, ``timeout`` and the
        ``deviation_*`` settings.

    Raises:
        ProjectError: a value is wrong; one line naming the file, the key, what was
            expected and what was found.
    """
    try:
        alerts = _AlertsTable.model_validate(table or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        error = {**first, "loc": ("alerts", *first["loc"])}
        raise ProjectError(_describe(error, str(path), env=False) + "; fix the file") from None
    return alerts.model_dump()


#: The classes of run a ``[retention]`` rule may name, besides ``LABEL_outputs`` (LABEL:
#: a label other than ``public``) and ``LABEL_sources`` (LABEL: a sensitive label, the
#: only ones a source's observation records).
RETENTION_CLASSES = ("exploration_runs", "failed_runs")
#: What a ``[retention]`` rule may remove from runs that stay (their record is kept):
#: their step outputs, or the stored copies of the sources they read.
RETENTION_CONTENT = ("step_outputs", "sources")
_OUTPUT_LABELS = ("internal", "confidential", "pii", "phi")
_SOURCE_LABELS = ("confidential", "pii", "phi")


def _retention_keys() -> list[str]:
    return [
        *RETENTION_CLASSES,
        *RETENTION_CONTENT,
        *(f"{label}_sources" for label in _SOURCE_LABELS),
        *(f"{label}_outputs" for label in _OUTPUT_LABELS),
    ]


def validate_retention(path: Path, table: Any) -> dict[str, float]:
    """Validate a ``[retention]`` table: each key a class of run, each value a duration.

    Args:
        path: the file it came from, for messages.
        table: the parsed table (``tomllib``), or None when the file has none.

    Returns:
        Rule name -> seconds a run of that class is kept (``"30d"`` -> 2592000.0).

    Raises:
        ProjectError: the table is not a table, a key names no class of run, or a value
            is not a positive duration; one line naming the file, the key, what was
            expected and what was found.
    """
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ProjectError(
            f"{path}: 'retention' must be a table ([retention]), got {table!r}; fix the file"
        )
    rules: dict[str, float] = {}
    known = _retention_keys()
    for key, value in table.items():
        if key not in known:
            raise ProjectError(
                f"{path}: unknown key 'retention.{key}'; a retention rule names a class of "
                f"run or of content: {', '.join(known)}; fix the file"
            )
        seconds = _duration(value)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, float)
            or not 0 < seconds < float("inf")
        ):
            raise ProjectError(
                f"{path}: 'retention.{key}' must be a duration longer than zero such as "
                f'"30d", "12h" or "90m", got {value!r}; fix the file'
            )
        rules[key] = seconds
    return rules
