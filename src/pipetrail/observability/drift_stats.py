"""Distances between two column profiles: PSI, Kolmogorov-Smirnov, Wasserstein, null rates.

Owns the arithmetic of drift; works on the profiles the ``parquet`` serializer stores
(:mod:`pipetrail.store.serializers.table_profile`), never on the tables themselves, so
comparing two runs reads a few kilobytes per table.

**Numeric columns.** Each profile holds an equal-width histogram over its own min..max.
Both are re-binned onto shared edges (``BINS`` equal bins from the lower of the two
minimums to the higher of the two maximums), assuming values are spread evenly inside
each original bin; a constant column (one zero-width bin) is a point mass. This is the
approximation: a shift smaller than one original bin width is seen only in part, and
PSI, KS and Wasserstein are computed from the re-binned counts, not from the rows.

* PSI = sum over bins of ``(b - a) * ln(b / a)`` over the bin shares ``a``, ``b``, with
  half a row added to every bin of each side (``PSEUDO_COUNT``), so that an empty bin
  counts as rare instead of impossible (no infinite PSI) and a handful of rows cannot
  give an extreme one; on thousands of rows the half rows change nothing visible.
  Conventionally < 0.1 is stable, 0.1-0.2 a moderate shift, > 0.2 a significant one.
* KS = the largest gap between the two cumulative shares at the shared edges.
* Wasserstein-1 = the area between the two cumulative distributions (sum of gaps times
  bin width), also given divided by run A's standard deviation (``wasserstein_std``) so
  that it reads in units of A's spread.

**Categorical columns.** A profile lists its most frequent values and counts the rest as
``other``. Buckets are the values listed by both runs, plus the values listed by one run
when the other run's list is complete (its ``other`` is 0, so the value's count there is
known to be 0); everything else falls into ``other`` on each side. PSI is then computed
over those buckets exactly as above.

**Sampling noise.** Two samples of one distribution do not give PSI 0: ``n`` times PSI
(``n = nA * nB / (nA + nB)``) follows about a chi-square law with ``buckets - 1`` degrees
of freedom, so PSI alone is about ``(buckets - 1) / n``: 0.27 for 20 bins and 142 rows
a side, more than the usual 0.2 line. :func:`psi_noise` gives the PSI that such noise
exceeds only with probability ``significance`` (the chi-square quantile by the
Wilson-Hilferty approximation), :func:`ks_noise` the same for KS (the two-sample
Kolmogorov-Smirnov critical value). A column drifts only above both its threshold and
its noise level, so small tables (aggregates, a test split) do not cry wolf.

**Null rate**: nulls / rows, compared in points (0.05 = 5 points). Pure; imports nothing
from pipetrail.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist
from typing import Any

__all__ = [
    "BINS",
    "PSEUDO_COUNT",
    "categorical_distances",
    "json_key",
    "ks_noise",
    "null_rate",
    "numeric_distances",
    "psi",
    "psi_noise",
    "rebin",
    "shared_histograms",
]

BINS = 20
PSEUDO_COUNT = 0.5


def psi(a: list[float], b: list[float]) -> float:
    """Population stability index of counts ``b`` against counts ``a`` (same buckets)."""
    total_a, total_b = sum(a), sum(b)
    if total_a <= 0 or total_b <= 0:
        return 0.0
    extra = PSEUDO_COUNT * len(a)
    found = 0.0
    for count_a, count_b in zip(a, b, strict=True):
        share_a = (count_a + PSEUDO_COUNT) / (total_a + extra)
        share_b = (count_b + PSEUDO_COUNT) / (total_b + extra)
        found += (share_b - share_a) * math.log(share_b / share_a)
    return found


def _effective(n_a: float, n_b: float) -> float:
    return n_a * n_b / (n_a + n_b) if n_a > 0 and n_b > 0 else 0.0


def psi_noise(a: list[float], b: list[float], significance: float) -> float:
    """The PSI two samples of one distribution exceed with probability ``significance``.

    Counts ``a`` and ``b`` over the same buckets; buckets empty on both sides do not
    count. Infinite when either side is empty.
    """
    n = _effective(sum(a), sum(b))
    freedom = sum(1 for x, y in zip(a, b, strict=True) if x or y) - 1
    if n <= 0:
        return math.inf
    if freedom <= 0:
        return 0.0
    z = _upper_quantile(significance)
    term = 2 / (9 * freedom)
    quantile = freedom * max(0.0, 1 - term + z * math.sqrt(term)) ** 3
    return quantile / n


@functools.lru_cache(maxsize=64)
def _upper_quantile(significance: float) -> float:
    """The standard normal quantile exceeded with probability ``significance``."""
    return NormalDist().inv_cdf(1 - significance)


def ks_noise(n_a: float, n_b: float, significance: float) -> float:
    """The KS distance two samples of one distribution exceed with that probability."""
    n = _effective(n_a, n_b)
    if n <= 0:
        return math.inf
    return math.sqrt(-math.log(significance / 2) / 2) / math.sqrt(n)


def rebin(histogram: dict[str, Any], edges: list[float]) -> list[float]:
    """Spread a histogram's counts over ``edges`` (uniform inside each original bin)."""
    old_edges = [float(e) for e in histogram["edges"]]
    counts = histogram["counts"]
    found = [0.0] * (len(edges) - 1)
    top = len(found) - 1
    low, high = edges[0], edges[-1]
    width = (high - low) / (len(edges) - 1) if high > low else 0.0
    for i, count in enumerate(counts):
        if not count:
            continue
        start, end = old_edges[i], old_edges[i + 1]
        if end <= start or width == 0.0:  # a point mass
            index = 0 if width == 0.0 else int((start - low) / width)
            found[index if index < top else top] += count
            continue
        # the buckets start and end fall in, each clamped to [0, top]
        first = int((start - low) / width)
        first = 0 if first < 0 else (first if first < top else top)
        last = int((end - low) / width)
        last = 0 if last < 0 else (last if last < top else top)
        span = end - start
        for j in range(first, last + 1):
            # the overlap of [start, end] with bucket j, as min/max would give it
            right = edges[j + 1]
            left = edges[j]
            overlap = (end if end < right else right) - (start if start > left else left)
            if overlap > 0:
                found[j] += count * overlap / span
    return found


def shared_histograms(
    a: dict[str, Any], b: dict[str, Any]
) -> tuple[list[float], list[float], list[float]]:
    """Return ``(edges, counts of A, counts of B)`` re-binned onto shared edges."""
    low = min(float(a["edges"][0]), float(b["edges"][0]))
    high = max(float(a["edges"][-1]), float(b["edges"][-1]))
    if high <= low:
        edges = [low, high]
    else:
        step = (high - low) / BINS
        edges = [low + step * i for i in range(BINS)] + [high]
    return edges, rebin(a, edges), rebin(b, edges)


def numeric_distances(
    a: dict[str, Any], b: dict[str, Any], significance: float = 0.001
) -> dict[str, float] | None:
    """PSI, KS, Wasserstein (and over A's std) of two numeric column profiles.

    Also ``psi_noise`` and ``ks_noise``: the levels sampling noise alone reaches with
    probability ``significance`` (module docstring).

    Returns:
        None when either column has no finite values (no histogram).
    """
    if not a.get("histogram") or not b.get("histogram"):
        return None
    edges, counts_a, counts_b = shared_histograms(a["histogram"], b["histogram"])
    total_a, total_b = sum(counts_a), sum(counts_b)
    ks = 0.0
    area = 0.0
    cum_a = cum_b = 0.0
    for i in range(len(counts_a)):
        cum_a += counts_a[i] / total_a
        cum_b += counts_b[i] / total_b
        ks = max(ks, abs(cum_a - cum_b))
        area += abs(cum_a - cum_b) * (edges[i + 1] - edges[i])
    std = a.get("std") or 0.0
    return {
        "psi": psi(counts_a, counts_b),
        "psi_noise": psi_noise(counts_a, counts_b, significance),
        "ks": ks,
        "ks_noise": ks_noise(total_a, total_b, significance),
        "wasserstein": area,
        "wasserstein_std": area / std if std > 0 else (0.0 if area == 0 else math.inf),
    }


def _buckets(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], list[float], list[float]]:
    """Category labels and counts of A and B over shared buckets (module docstring)."""
    top_a = {json_key(v): int(c) for v, c in a.get("top") or []}
    top_b = {json_key(v): int(c) for v, c in b.get("top") or []}
    complete_a, complete_b = a.get("other", 0) == 0, b.get("other", 0) == 0
    labels = sorted(
        (set(top_a) & set(top_b))
        | (set(top_b) if complete_a else set())
        | (set(top_a) if complete_b else set())
    )
    counts_a = [float(top_a.get(label, 0)) for label in labels]
    counts_b = [float(top_b.get(label, 0)) for label in labels]
    valid_a = sum(top_a.values()) + int(a.get("other", 0))
    valid_b = sum(top_b.values()) + int(b.get("other", 0))
    return (
        [*labels, "(other)"],
        [*counts_a, valid_a - sum(counts_a)],
        [*counts_b, valid_b - sum(counts_b)],
    )


def json_key(value: Any) -> str:
    """A category's label: strings as they are, booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def categorical_distances(
    a: dict[str, Any], b: dict[str, Any], significance: float = 0.001
) -> dict[str, Any]:
    """PSI of two categorical column profiles over shared buckets, its noise level, buckets."""
    labels, counts_a, counts_b = _buckets(a, b)
    return {
        "psi": psi(counts_a, counts_b),
        "psi_noise": psi_noise(counts_a, counts_b, significance),
        "buckets": labels,
        "a": counts_a,
        "b": counts_b,
    }


def null_rate(column: dict[str, Any], rows: int) -> float:
    """The share of null values in a column (0 for an empty table).

    A pooled column (:mod:`pipetrail.observability.drift_pool`) counts over the rows of
    the tables it came from (``pooled_rows``), not ``rows``.
    """
    rows = int(column.get("pooled_rows", rows))
    return column.get("nulls", 0) / rows if rows else 0.0
