"""Observability: what runs record about their data over time, and how it drifts.

:func:`~pipetrail.observability.drift.drift_runs` compares the table profiles of two runs
step by step and names the step where a drift enters;
:func:`~pipetrail.observability.drift_picture.write_pictures` draws per-column histogram
comparisons as SVG. Sits beside ``lineage`` (reads records through execution and the
ledger); never imports cli.
"""

from __future__ import annotations

from pipetrail.observability.drift import DriftReport as DriftReport
from pipetrail.observability.drift import drift_runs as drift_runs
from pipetrail.observability.drift_config import DriftThresholds as DriftThresholds

__all__ = ["DriftReport", "DriftThresholds", "drift_runs"]
