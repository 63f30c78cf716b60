"""Observability: structured logs, and what runs record about their data over time.

:func:`~pipetrail.observability.drift.drift_runs` compares the table profiles of two runs
step by step and names the step where a drift enters;
:func:`~pipetrail.observability.drift_picture.write_pictures` draws per-column histogram
comparisons as SVG; :func:`~pipetrail.observability.logs.configure_logging` renders
pipetrail's own log lines as structured lines (structlog). Sits beside ``lineage``
(reads records through execution and the ledger); never imports cli. Names are imported
from their modules on first use, so configuring logs does not load the drift code.
"""

from __future__ import annotations

import typing as _typing

from pipetrail.core.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from pipetrail.observability.drift import DriftReport as DriftReport
    from pipetrail.observability.drift import drift_runs as drift_runs
    from pipetrail.observability.drift_config import DriftThresholds as DriftThresholds
    from pipetrail.observability.logs import configure_logging as configure_logging

__all__ = ["DriftReport", "DriftThresholds", "configure_logging", "drift_runs"]

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "DriftReport": "pipetrail.observability.drift",
        "drift_runs": "pipetrail.observability.drift",
        "DriftThresholds": "pipetrail.observability.drift_config",
        "configure_logging": "pipetrail.observability.logs",
    },
)
