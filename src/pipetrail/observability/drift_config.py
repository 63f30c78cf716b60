"""Drift thresholds: :class:`DriftThresholds` and ``[drift]`` in ``pipetrail.toml``.

Owns when a column counts as drifting (see :mod:`pipetrail.observability.drift` and
:mod:`pipetrail.observability.drift_stats`) and reading those settings from the project
file. The ``[drift]`` table is read here, apart from ``[pipetrail]``, so that the
project's settings stay independent of this feature. Imports only ``pipetrail.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.config_tables import CONFIG_FILE, project_table
from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DriftGate", "DriftThresholds", "load_drift_gate", "load_thresholds"]


@dataclass(frozen=True)
class DriftThresholds:
    """When a column drifts; ``[drift]`` in ``pipetrail.toml`` sets them.

    Attributes:
        psi: PSI at or above which a column drifts (numeric and categorical). 0.2 by
            default, the usual "significant shift" line.
        null_rate: change of the null rate, in share of rows (0.05 = 5 points), at or
            above which a column drifts, either way.
        ks: KS distance at or above which a numeric column drifts; None: not checked.
        wasserstein_std: Wasserstein distance in units of run A's standard deviation at
            or above which a numeric column drifts; None: not checked.
        significance: how rarely sampling noise alone may make a column drift: PSI and
            KS must also exceed the level two samples of one distribution reach with
            this probability (0.001 by default; see
            :mod:`pipetrail.observability.drift_stats`). On a handful of rows, as in an
            aggregate or a small test split, every change looks like a shift otherwise.
    """

    psi: float = 0.2
    null_rate: float = 0.05
    ks: float | None = None
    wasserstein_std: float | None = None
    significance: float = 0.001


@dataclass(frozen=True)
class DriftGate:
    """Whether ``pipetrail check --baseline RUN`` fails on drift; ``[drift]`` sets it.

    Attributes:
        gate: ``gate = true``: the check fails when a table of its run drifts from the
            baseline's above the thresholds, naming the step and the columns. The drift
            is computed and reported either way.
        baseline_runs: pool the profiles of the baseline and the runs of its pipeline
            before it, this many runs in all (see
            :mod:`pipetrail.observability.drift_pool`); 1 compares with the baseline alone.
    """

    gate: bool = False
    baseline_runs: int = 1


_GATE_KEYS = frozenset(DriftGate.__dataclass_fields__)


def _section(root: Path) -> tuple[Path, dict[str, Any]]:
    """``[drift]`` of the project's file (empty when there is none)."""
    path = root / CONFIG_FILE
    section = project_table(root, "drift")
    if section is None:
        return path, {}
    if not isinstance(section, dict):
        raise ProjectError(f"{path}: [drift] must be a table of thresholds")
    unknown = sorted(set(section) - set(DriftThresholds.__dataclass_fields__) - _GATE_KEYS)
    if unknown:
        known = sorted({*DriftThresholds.__dataclass_fields__, *_GATE_KEYS})
        raise ProjectError(
            f"{path}: unknown key(s) {', '.join(unknown)} in [drift]; known keys are "
            f"{', '.join(known)}"
        )
    return path, section


def load_drift_gate(root: Path) -> DriftGate:
    """Read the gate settings of ``[drift]`` (``gate``, ``baseline_runs``).

    Raises:
        ProjectError: the file cannot be parsed, ``[drift]`` holds an unknown key,
            ``gate`` is not true or false, or ``baseline_runs`` is not a whole number
            from 1 to 1000.
    """
    path, section = _section(root)
    gate = section.get("gate", False)
    if not isinstance(gate, bool):
        raise ProjectError(f"{path}: [drift] gate = {gate!r}; it must be true or false")
    runs = section.get("baseline_runs", 1)
    if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= 1000:
        raise ProjectError(
            f"{path}: [drift] baseline_runs = {runs!r}; it must be a whole number from 1 to "
            "1000 (how many runs, the baseline first, pool into the baseline)"
        )
    return DriftGate(gate=gate, baseline_runs=runs)


def load_thresholds(root: Path) -> DriftThresholds:
    """Read ``[drift]`` from the project's ``pipetrail.toml`` (defaults when absent).

    Raises:
        ProjectError: the file cannot be parsed, or ``[drift]`` holds an unknown key or a
            threshold that is not a non-negative number.
    """
    path, found = _section(root)
    section: dict[str, Any] = {k: v for k, v in found.items() if k not in _GATE_KEYS}
    for key, value in section.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ProjectError(
                f"{path}: [drift] {key} = {value!r}; it must be a non-negative number"
            )
    if not 0 < section.get("significance", 0.001) < 1:
        raise ProjectError(
            f"{path}: [drift] significance = {section['significance']!r}; it must be "
            "between 0 and 1 (exclusive), e.g. 0.001"
        )
    return DriftThresholds(**{k: float(v) for k, v in section.items()})
