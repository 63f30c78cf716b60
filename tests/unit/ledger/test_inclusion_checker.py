"""Checking many inclusion proofs at once agrees with checking each one alone."""

from __future__ import annotations

import random

import pytest

from pipetrail.ledger.merkle import InclusionChecker, TreeReader, verify_inclusion
from tests.unit.ledger.test_merkle import build, leaves_of, mth


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13, 64, 100])
def test_every_proof_of_a_tree_checks_and_agrees_with_verify_inclusion(size: int) -> None:
    leaves = leaves_of(size)
    root = mth(leaves)
    paths = TreeReader(build(leaves)).inclusion_proofs(range(size), size)
    checker = InclusionChecker(size, root)
    for i in range(size):
        hexes = [node.hex() for node in paths[i]]
        assert checker.check(leaves[i], i, hexes)
        assert verify_inclusion(leaves[i], i, size, paths[i], root)
    assert not checker.check(leaves[0], size, [])  # out of range
    if size > 1:  # leaf 0 at another index, or with no path, is not proven
        assert not checker.check(leaves[0], 1, [node.hex() for node in paths[1]])
        assert not checker.check(leaves[0], 0, [])


def test_a_proof_changed_after_it_meets_a_proven_one_still_fails() -> None:
    """The rest of a path is reused only when it is identical, node for node."""
    size = 100
    leaves = leaves_of(size)
    root = mth(leaves)
    paths = TreeReader(build(leaves)).inclusion_proofs(range(size), size)
    rng = random.Random(5)
    checker = InclusionChecker(size, root)
    for i in range(size):
        hexes = [node.hex() for node in paths[i]]
        if i % 3 == 1 and len(hexes) > 1:
            at = rng.randrange(1, len(hexes))  # past the first node: where paths meet
            hexes[at] = "00" * 32
            assert not checker.check(leaves[i], i, hexes), (i, at)
            assert not verify_inclusion(leaves[i], i, size, [bytes.fromhex(h) for h in hexes], root)
        else:
            assert checker.check(leaves[i], i, hexes)
    other = leaves_of(size + 1)[size]
    assert not checker.check(other, 5, [n.hex() for n in paths[5]])  # not a leaf of it
    with pytest.raises(ValueError, match=r"hex|bytes"):
        InclusionChecker(size, root).check(leaves[0], 0, ["zz"])
