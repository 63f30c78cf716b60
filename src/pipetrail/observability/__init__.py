"""Observability: structured logs, data over time, drift, and who is told.

:func:`~pipetrail.observability.drift.drift_runs` compares the table profiles of two runs
(or of a run and a pooled baseline) step by step and names the step where a drift enters;
:func:`~pipetrail.observability.drift_picture.write_pictures` draws per-column histogram
comparisons as SVG; :func:`~pipetrail.observability.alerts.send_alerts` delivers
``[alerts]`` rules' messages; :func:`~pipetrail.observability.logs.configure_logging`
renders pipetrail's own log lines as structured lines (structlog). Sits beside
``lineage`` (reads records through execution and the ledger); never imports cli.
"""

from __future__ import annotations

import typing as _typing

from pipetrail.core.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from pipetrail.observability.alerts import AlertEvent as AlertEvent
    from pipetrail.observability.alerts import send_alerts as send_alerts
    from pipetrail.observability.drift import DriftReport as DriftReport
    from pipetrail.observability.drift import drift_runs as drift_runs
    from pipetrail.observability.drift_config import DriftThresholds as DriftThresholds
    from pipetrail.observability.logs import configure_logging as configure_logging

__all__ = [
    "AlertEvent",
    "DriftReport",
    "DriftThresholds",
    "configure_logging",
    "drift_runs",
    "send_alerts",
]

# Each name is imported from its module on first use (PEP 562): configuring logs or
# sending alerts does not import drift's pairing of steps.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "AlertEvent": "pipetrail.observability.alerts",
        "DriftReport": "pipetrail.observability.drift",
        "DriftThresholds": "pipetrail.observability.drift_config",
        "configure_logging": "pipetrail.observability.logs",
        "drift_runs": "pipetrail.observability.drift",
        "send_alerts": "pipetrail.observability.alerts",
    },
)
