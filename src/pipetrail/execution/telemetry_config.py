"""The ``[telemetry]`` settings: whether, where and how a run's trace is exported.

Split from :mod:`pipetrail.execution.telemetry`, which builds and sends the spans, so that
a run of a project that exports no traces (the default) reads its settings without
loading the exporter: :func:`telemetry_settings` imports it only to return the settings
of an export. The table and the environment variables are described there.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pipetrail.execution.telemetry import TelemetrySettings

__all__ = ["telemetry_settings"]

_KEYS = ("otlp_endpoint", "timeout", "service_name")


def _traces_url(base: str) -> str:
    base = base.strip()
    return base if base.rstrip("/").endswith("/v1/traces") else base.rstrip("/") + "/v1/traces"


def _file_section(root: Path) -> dict[str, Any]:
    from pipetrail.config_tables import CONFIG_FILE, project_table

    path = root / CONFIG_FILE
    section = project_table(root, "telemetry")
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ProjectError(f"{path}: [telemetry] must be a table (otlp_endpoint = ...)")
    unknown = sorted(set(section) - set(_KEYS))
    if unknown:
        raise ProjectError(
            f"{path}: unknown key(s) {', '.join(unknown)} in [telemetry]; known keys are "
            f"{', '.join(_KEYS)}"
        )
    for key in ("otlp_endpoint", "service_name"):
        if key in section and not (isinstance(section[key], str) and section[key].strip()):
            raise ProjectError(f"{path}: [telemetry] {key} = {section[key]!r}; give a string")
    endpoint = section.get("otlp_endpoint")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ProjectError(
            f"{path}: [telemetry] otlp_endpoint = {endpoint!r}; give an http:// or https:// "
            "URL of an OTLP/HTTP receiver, e.g. http://localhost:4318"
        )
    timeout = section.get("timeout", 5)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ProjectError(
            f"{path}: [telemetry] timeout = {timeout!r}; give a positive number of seconds"
        )
    return section


def telemetry_settings(
    root: Path, environ: Mapping[str, str] | None = None
) -> TelemetrySettings | None:
    """Return the project's trace export settings, or None when traces are not exported.

    Raises:
        ProjectError: ``[telemetry]`` in ``pipetrail.toml`` is malformed.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    section = _file_section(root)
    url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not url:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or section.get("otlp_endpoint")
        if not base:
            return None
        url = _traces_url(base)
    from pipetrail.execution.telemetry import TelemetrySettings

    return TelemetrySettings(
        traces_url=url,
        timeout=float(section.get("timeout", 5)),
        service_name=env.get("OTEL_SERVICE_NAME", "").strip()
        or section.get("service_name", "pipetrail"),
    )
