"""Counting rules: exact fractions, largest remainder, strata and groups."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipetrail.data.allocate import (
    exact_fraction,
    group_assignment,
    largest_remainder,
    parse_fractions,
    stratified_counts,
)
from pipetrail.errors import DefinitionError


def test_fractions_are_read_as_printed_decimals() -> None:
    names, shares = parse_fractions({"train": 0.7, "val": 0.15, "test": 0.15})
    assert names == ["train", "val", "test"]
    assert shares == [Fraction(7, 10), Fraction(3, 20), Fraction(3, 20)]
    assert largest_remainder(100, shares) == [70, 15, 15]


def test_thirds_are_rescaled_to_sum_one() -> None:
    _, shares = parse_fractions({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert sum(shares) == 1
    assert largest_remainder(10, shares) == [4, 3, 3]  # the tie goes to the first listed


@pytest.mark.parametrize(
    ("fractions", "match"),
    [
        ({"train": 0.7, "test": 0.2}, "must sum to 1, but train=0.7, test=0.2 sum to 0.9"),
        ({}, "dict of subset name"),
        ([0.5, 0.5], "dict of subset name"),
        ({"a": -0.1, "b": 1.1}, "between 0 and 1"),
        ({"a": float("nan"), "b": 1.0}, "between 0 and 1"),
        ({"a": True, "b": 0}, "must be a number"),
        ({"a": "0.5", "b": 0.5}, "must be a number"),
        ({"": 1.0}, "non-empty strings"),
    ],
)
def test_bad_fractions_are_refused(fractions: object, match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        parse_fractions(fractions)


def test_exact_fraction_of_numpy_values() -> None:
    assert exact_fraction(np.float64(0.25), "f") == Fraction(1, 4)
    assert exact_fraction(np.int64(1), "f") == 1


@given(
    total=st.integers(0, 10_000),
    weights=st.lists(st.integers(0, 100), min_size=1, max_size=8).filter(any),
)
def test_largest_remainder_sums_and_stays_within_one_row(total: int, weights: list[int]) -> None:
    shares = [Fraction(w, sum(weights)) for w in weights]
    counts = largest_remainder(total, shares)
    assert sum(counts) == total
    for count, share in zip(counts, shares, strict=True):
        assert abs(count - total * share) < 1


@given(
    sizes=st.lists(st.integers(1, 500), min_size=1, max_size=30),
    weights=st.lists(st.integers(0, 10), min_size=1, max_size=5).filter(any),
)
def test_stratified_counts_are_exact_on_both_margins(sizes: list[int], weights: list[int]) -> None:
    shares = [Fraction(w, sum(weights)) for w in weights]
    totals = largest_remainder(sum(sizes), shares)
    order = sorted(range(len(sizes)), key=lambda s: -sizes[s])
    counts = stratified_counts(sizes, order, totals)
    assert [sum(row) for row in counts] == sizes
    assert [sum(col) for col in zip(*counts, strict=True)] == totals
    assert all(c >= 0 for row in counts for c in row)
    # The largest stratum gets its own exact share, within two rows.
    first = order[0]
    for count, share in zip(counts[first], shares, strict=True):
        assert abs(count - sizes[first] * share) < 2


def test_singleton_strata_are_spread_over_the_subsets() -> None:
    totals = largest_remainder(10, [Fraction(1, 2), Fraction(3, 10), Fraction(1, 5)])
    counts = stratified_counts([1] * 10, list(range(10)), totals)
    assert [sum(col) for col in zip(*counts, strict=True)] == [5, 3, 2]


def test_groups_fill_subsets_by_their_middle_row() -> None:
    sizes = np.array([4, 1, 1, 2, 2], dtype=np.int64)
    assert group_assignment(sizes, [6, 2, 2]).tolist() == [0, 0, 0, 1, 2]
    # An empty subset (fraction 0) gets no group.
    assert 1 not in group_assignment(sizes, [5, 0, 5]).tolist()
