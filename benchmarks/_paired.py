"""Verdicts on noisy differences: the median of per-round figures and its interval.

A per-step cost measured as the difference of two whole-process timings is small next to
the jitter of either process (start-up, imports, the fixed cost of a run). One such
difference proves nothing; the median of many, taken in rounds that pair each long run
with a short one made next to it, does, when its spread allows. This module gives the
median with a distribution-free confidence interval (from order statistics: no
assumption on the shape of the noise) and the verdict that interval supports: ``PASS``
when the whole interval meets the target, ``FAIL`` when none of it does, and no verdict
(``inconclusive``) otherwise, or when there are too few figures for an interval of
:data:`CONFIDENCE` (four or fewer). Standard library only.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from _common import Result, target_text

if TYPE_CHECKING:
    from collections.abc import Sequence

CONFIDENCE = 0.9  # the least coverage an interval is given with


@dataclass(frozen=True)
class Interval:
    """The median of some figures and an interval that holds the true median.

    Attributes:
        median: the sample median.
        low: the lower end (an order statistic of the figures).
        high: the upper end.
        coverage: the probability that such an interval holds the true median (at least
            :data:`CONFIDENCE` when there are enough figures, else what the extremes give).
    """

    median: float
    low: float
    high: float
    coverage: float


def _below(k: int, n: int) -> float:
    """P(X < k) for X ~ Binomial(n, 1/2)."""
    return float(sum(math.comb(n, i) for i in range(k))) / 2.0**n


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The median of ``values`` and the narrowest order-statistic interval of enough coverage.

    The interval [x(k), x(n+1-k)] of the sorted figures holds the median of the
    distribution they come from with probability 1 - 2 P(X < k), X ~ Binomial(n, 1/2),
    whatever that distribution. The largest k with at least ``confidence`` is taken; with
    too few figures for it, the interval is [min, max] and its coverage says how much
    less it is.

    Raises:
        ValueError: no figures, or a NaN among them.
    """
    if not values:
        raise ValueError("no figures to take a median of")
    if any(math.isnan(v) for v in values):
        raise ValueError("a figure is NaN")
    ordered = sorted(values)
    n = len(ordered)
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _below(k + 1, n) >= confidence:
        k += 1
    return Interval(
        median=statistics.median(ordered),
        low=ordered[k - 1],
        high=ordered[n - k],
        coverage=1 - 2 * _below(k, n),
    )


def interval_verdict(
    interval: Interval, *, at_most: float | None = None, at_least: float | None = None
) -> bool | None:
    """True when the whole interval meets the target, False when none of it does, else None.

    None too when the interval's coverage is below :data:`CONFIDENCE` (too few rounds to
    decide anything: four or fewer).
    """
    if interval.coverage < CONFIDENCE:
        return None
    if at_most is not None:
        if interval.high <= at_most:
            return True
        return False if interval.low > at_most else None
    if at_least is not None:
        if interval.low >= at_least:
            return True
        return False if interval.high < at_least else None
    return None


def describe(interval: Interval, unit: str) -> str:
    """``90% interval 0.31 to 0.62 ms`` (the coverage rounded down to a whole percent)."""
    return (
        f"{math.floor(interval.coverage * 100)}% interval {interval.low:.3g} to "
        f"{interval.high:.3g} {unit}"
    )


def summarize_rounds(
    name: str,
    measured: str,
    values: Sequence[float],
    unit: str,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
) -> Result:
    """A row of per-round figures: median, min and max over the rounds, verdict on the interval.

    The measured text gets the interval appended. A row with a target whose interval
    straddles it has no verdict: its result reads ``inconclusive``.
    """
    interval = median_interval(values)
    return Result(
        name=name,
        measured=f"{measured} ({describe(interval, unit)})",
        median=interval.median,
        min=min(values),
        max=max(values),
        unit=unit,
        target=target_text(unit, at_most=at_most, at_least=at_least),
        passed=interval_verdict(interval, at_most=at_most, at_least=at_least),
        n=len(values),
    )
