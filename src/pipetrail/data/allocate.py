"""How many rows each subset gets: fractions, largest remainders, strata and groups.

Owns the counting rules of :func:`pipetrail.data.split` and :func:`pipetrail.data.sample`,
all in exact integer arithmetic. Must not import pandas, polars, pyarrow, the ledger or
the execution layer; numpy is imported by the functions that need it.

**Fractions** are read as the decimal they print as (``0.7`` is exactly 7/10, not the
nearest binary float), must be finite and non-negative and sum to 1 within ``1e-6``; they
are then rescaled to sum exactly 1, so ``1/3, 1/3, 1/3`` is accepted.

**Largest remainder.** ``n`` rows and fractions ``f_k``: subset ``k`` gets
``floor(n * f_k)``; the rows left over go one each to the subsets with the largest
remainders ``n * f_k - floor(n * f_k)``, ties to the subset listed first. The counts sum
to ``n`` and each is within one row of its exact share.

**Strata.** The subset totals are the largest-remainder counts of all rows. Strata are
then taken from the largest to the smallest (equal sizes in seeded order); each stratum
gets the largest-remainder counts of its size over the rows *still to be given* to each
subset. A large stratum thus gets its exact share within two rows, small strata absorb
the rounding, and the totals are exact (the last stratum takes what is left). A class
of one row goes to the subset that is furthest below its share at that point.

**Groups.** Groups are taken in seeded order and laid end to end; a group goes to the
subset whose share of the rows (cumulated in the order of the fractions) holds the
group's middle row. Every subset is then within about one group of its share.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from pipetrail.errors import DefinitionError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "FRACTION_TOLERANCE",
    "exact_fraction",
    "group_assignment",
    "largest_remainder",
    "parse_fractions",
    "stratified_counts",
]

FRACTION_TOLERANCE = Fraction(1, 10**6)


def exact_fraction(value: Any, what: str) -> Fraction:
    """Return ``value`` (a real number in ``[0, 1]``) as the exact decimal it prints as.

    Raises:
        DefinitionError: not a finite real number between 0 and 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DefinitionError(
            f"{what} must be a number between 0 and 1, got {value!r} ({type(value).__name__})"
        )
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise DefinitionError(f"{what} must be between 0 and 1, got {value!r}")
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    return Fraction(repr(number))


def parse_fractions(fractions: Any) -> tuple[list[str], list[Fraction]]:
    """Return subset names and exact fractions summing to 1.

    Args:
        fractions: subset name -> fraction of the rows.

    Raises:
        DefinitionError: not a non-empty mapping of string names to fractions in
            ``[0, 1]`` that sum to 1 (within ``1e-6``).
    """
    if not hasattr(fractions, "items") or not fractions:
        raise DefinitionError(
            f"split needs a dict of subset name -> fraction, such as "
            f"{{'train': 0.8, 'test': 0.2}}, got {fractions!r}"
        )
    names: list[str] = []
    values: list[Fraction] = []
    for name, value in fractions.items():
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"subset names must be non-empty strings, got {name!r}")
        names.append(name)
        values.append(exact_fraction(value, f"the fraction of subset {name!r}"))
    total = sum(values, Fraction(0))
    if abs(total - 1) > FRACTION_TOLERANCE:
        shown = ", ".join(f"{n}={fractions[n]!r}" for n in names)
        raise DefinitionError(
            f"split fractions must sum to 1, but {shown} sum to {float(total):.10g}; "
            "adjust them (for example {'train': 0.7, 'val': 0.15, 'test': 0.15})"
        )
    return names, [value / total for value in values]


def largest_remainder(total: int, fractions: Sequence[Fraction]) -> list[int]:
    """Return ``total`` apportioned by ``fractions`` (see the module docstring).

    ``fractions`` must sum to 1.
    """
    quotas = [total * f for f in fractions]
    counts = [math.floor(q) for q in quotas]
    left = total - sum(counts)
    order = sorted(range(len(quotas)), key=lambda k: (-(quotas[k] - counts[k]), k))
    for k in order[:left]:
        counts[k] += 1
    return counts


def _share_of_remaining(size: int, remaining: list[int], rows_left: int) -> list[int]:
    """Largest-remainder counts of ``size`` rows over ``remaining`` (integers only)."""
    counts = []
    remainders = []
    for k, want in enumerate(remaining):
        whole, rest = divmod(size * want, rows_left)
        counts.append(whole)
        remainders.append((-rest, k))
    left = size - sum(counts)
    for _, k in sorted(remainders)[:left]:
        counts[k] += 1
    return counts


def stratified_counts(
    sizes: Sequence[int], order: Sequence[int], totals: Sequence[int]
) -> list[list[int]]:
    """Return ``counts[s][k]``: rows of stratum ``s`` that go to subset ``k``.

    Args:
        sizes: the rows of each stratum.
        order: the strata in the order they are served (largest first, see the module
            docstring).
        totals: the rows each subset gets in all (summing to ``sum(sizes)``).
    """
    remaining = list(totals)
    rows_left = sum(sizes)
    counts: list[list[int]] = [[] for _ in sizes]
    for s in order:
        share = (
            _share_of_remaining(sizes[s], remaining, rows_left)
            if rows_left
            else [0] * len(remaining)
        )
        counts[s] = share
        remaining = [r - c for r, c in zip(remaining, share, strict=True)]
        rows_left -= sizes[s]
    return counts


def group_assignment(group_sizes: Any, totals: Sequence[int]) -> Any:
    """Return the subset index of each group, groups given in their seeded order.

    Args:
        group_sizes: ``int64`` numpy array, the rows of each group in seeded order.
        totals: the target rows per subset (largest-remainder counts of all rows).
    """
    import numpy as np

    before = np.cumsum(group_sizes) - group_sizes
    middles_twice = 2 * before + group_sizes  # twice the middle row, to stay in integers
    bounds_twice = 2 * np.cumsum(np.asarray(totals, dtype=np.int64))
    chosen = np.searchsorted(bounds_twice, middles_twice, side="right")
    return np.minimum(chosen, len(totals) - 1)
