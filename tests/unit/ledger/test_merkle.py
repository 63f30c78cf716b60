"""The ledger's Merkle tree against a direct transcription of RFC 9162's definitions."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetrail.ledger.merkle import (
    MemoryNodes,
    TreeReader,
    event_leaf,
    leaf_hash,
    new_nodes,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from pipetrail.ledger.merkle_store import _RANGE, LOW_LEVEL, TreeCheck


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) as RFC 9162 section 2.1.1 defines it, over leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def leaves_of(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(8, "big")) for i in range(n)]


def build(leaves: list[bytes], batches: list[int] | None = None) -> MemoryNodes:
    """Append ``leaves`` in batches of the given sizes (all at once by default)."""
    store = MemoryNodes()
    size = 0
    for count in batches or [len(leaves)]:
        chunk = leaves[size : size + count]
        store.add(new_nodes(store, size, chunk))
        size += len(chunk)
    if size < len(leaves):
        store.add(new_nodes(store, size, leaves[size:]))
    return store


def test_known_vector_of_rfc_leaf_and_node_hashes() -> None:
    empty = hashlib.sha256(b"").hexdigest()
    assert TreeReader(MemoryNodes()).root(0).hex() == empty
    assert leaf_hash(b"").hex() == hashlib.sha256(b"\x00").hexdigest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert event_leaf("blake3:" + "ab" * 32) == leaf_hash(bytes.fromhex("ab" * 32))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=140),
    batches=st.lists(st.integers(min_value=1, max_value=17), max_size=12),
)
def test_roots_and_proofs_match_the_definitions(n: int, batches: list[int]) -> None:
    leaves = leaves_of(n)
    tree = TreeReader(build(leaves, batches))
    for size in {1, n // 2 or 1, n - 1 or 1, n}:
        root = tree.root(size)
        assert root == mth(leaves[:size])
        for index in {0, size // 3, size - 1}:
            path = tree.inclusion_proof(index, size)
            assert verify_inclusion(leaves[index], index, size, path, root)
            grown = mth([*leaves[:size], leaf_hash(b"more")])
            assert not verify_inclusion(leaves[index], index, size + 1, path, grown)
            assert not verify_inclusion(leaves[index], index, size, [*path, bytes(32)], root)
            if size > 1:
                other = (index + 1) % size
                assert not verify_inclusion(leaves[other], index, size, path, root)
                bad = [bytes(32), *path[1:]]
                assert not verify_inclusion(leaves[index], index, size, bad, root)
        for old in {1, size // 2 or 1, size}:
            proof = tree.consistency_proof(old, size)
            old_root = mth(leaves[:old])
            assert verify_consistency(old, size, old_root, root, proof)
            if old < size:
                forked = mth([*leaves[: old - 1], leaf_hash(b"forged")])
                assert not verify_consistency(old, size, forked, root, proof)
                assert not verify_consistency(old, size, old_root, bytes(32), proof)
                if proof:
                    assert not verify_consistency(old, size, old_root, root, proof[:-1])


def test_proofs_need_only_logarithmically_many_stored_nodes() -> None:
    n = 1000
    store = build(leaves_of(n))
    reads: list[int] = []

    class Counting:
        def get_nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
            reads.append(len(keys))
            return dict(store.get_nodes(keys))

    tree = TreeReader(Counting())
    tree.inclusion_proof(517, n)
    tree.consistency_proof(300, n)
    assert sum(reads) <= 40


def test_a_missing_node_is_an_error_not_a_wrong_root() -> None:
    store = build(leaves_of(8))
    del store.nodes[(3, 0)]
    with pytest.raises(LookupError, match=r"\(3, 0\)"):
        TreeReader(store).root(8)
    with pytest.raises(ValueError, match="not in a tree"):
        TreeReader(store).inclusion_proof(8, 8)
    with pytest.raises(ValueError, match="no consistency proof"):
        TreeReader(store).consistency_proof(0, 8)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=1, max_value=140), olds=st.lists(st.integers(min_value=1)))
def test_many_consistency_proofs_at_once_read_once_and_equal_one_by_one(
    n: int, olds: list[int]
) -> None:
    leaves = leaves_of(n)
    store = build(leaves)
    sizes = [1 + old % n for old in olds] + [n]
    calls: list[int] = []

    class Counting:
        def get_nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
            calls.append(len(keys))
            return dict(store.get_nodes(keys))

    tree = TreeReader(Counting())
    proofs = tree.consistency_proofs(sizes, n)
    root = tree.root(n)
    assert len(calls) == 1  # every node, the root's too, in one read
    assert root == mth(leaves)
    for old in sizes:
        assert proofs[old] == TreeReader(store).consistency_proof(old, n)
        assert verify_consistency(old, n, mth(leaves[:old]), root, proofs[old])
    with pytest.raises(ValueError, match="no consistency proof"):
        tree.consistency_proofs([n + 1], n)


class _StoredNodes:
    """The part of a driver :class:`TreeCheck` reads: stored nodes from level 4 up."""

    def __init__(self, nodes: dict[tuple[int, int], bytes]) -> None:
        self.nodes = nodes

    def rows(self, sql: str, params: dict[str, int]) -> list[tuple[int, bytes]]:
        if sql != _RANGE:
            return []  # nothing stored below level 4 or beyond the events
        level, lo, hi = params["level"], params["lo"], params["hi"]
        return [(i, h) for (lv, i), h in sorted(self.nodes.items()) if lv == level and lo <= i < hi]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=300),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20),
)
def test_the_tree_check_makes_the_nodes_the_definitions_make(n: int, cuts: list[int]) -> None:
    # TreeCheck hashes from copies of hashers primed with the domain prefix: every node it
    # recomputes, in any batches and however many times, is the one leaf_hash and
    # node_hash make, and a stored node that differs by one bit is named.
    data = [i.to_bytes(32, "big") for i in range(n)]
    stored = {
        key: digest
        for key, digest in new_nodes(MemoryNodes(), 0, [leaf_hash(d) for d in data]).items()
        if key[0] >= LOW_LEVEL
    }
    for _ in range(2):
        tree = TreeCheck(_StoredNodes(stored))  # type: ignore[arg-type]
        at = 0
        for step in [*cuts, n]:
            tree.add_digests(data[at : at + step])
            at += step
        assert tree.finish() == []
        assert tree.size == n
        assert tree.nodes == len(stored)
    if stored:
        key = max(stored)
        edited = {**stored, key: bytes([stored[key][0] ^ 1]) + stored[key][1:]}
        tree = TreeCheck(_StoredNodes(edited))  # type: ignore[arg-type]
        tree.add_digests(data)
        assert [(p.key, p.problem) for p in tree.finish()] == [(f"{key[0]}, {key[1]}", "differs")]


class _PutNodes:
    """What TreeWriter.extend needs of its store: what it puts, kept."""

    def __init__(self, db: dict[tuple[int, int], bytes]) -> None:
        self.db = db

    def put(self, made: dict[tuple[int, int], bytes]) -> None:
        self.db.update(made)

    def get_nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return {key: self.db[key] for key in keys if key in self.db}


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=200),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=10),
)
def test_the_tree_writer_stores_the_nodes_the_definitions_make(n: int, cuts: list[int]) -> None:
    # The writer hashes leaves and nodes itself: the stored nodes (levels LOW_LEVEL and
    # up) are those event_leaf and node_hash make, whatever the batches of its appends.
    import pipetrail.ledger.merkle_store as merkle_store
    from pipetrail.ledger.events import Event

    hashes = ["blake3:" + hashlib.sha256(i.to_bytes(8, "big")).hexdigest() for i in range(n)]
    events = [
        Event(i + 1, "t", "a", "k", None, "{}", hashes[i - 1] if i else "g", h)
        for i, h in enumerate(hashes)
    ]
    stored: dict[tuple[int, int], bytes] = {}
    writer = merkle_store.TreeWriter()
    real = merkle_store.DriverNodes
    merkle_store.DriverNodes = _PutNodes  # type: ignore[misc,assignment]
    try:
        at = 0
        for step in [*cuts, n]:
            if at < n:
                writer.extend(stored, events[at : at + step])  # type: ignore[arg-type]
            at += step
    finally:
        merkle_store.DriverNodes = real  # type: ignore[misc]
    want = {
        key: digest
        for key, digest in new_nodes(MemoryNodes(), 0, [event_leaf(h) for h in hashes]).items()
        if key[0] >= LOW_LEVEL
    }
    assert stored == want
