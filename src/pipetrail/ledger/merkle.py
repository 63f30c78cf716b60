"""A Merkle tree over the ledger's events: roots, inclusion and consistency proofs.

The tree is the one RFC 9162 (Certificate Transparency 2.0, section 2.1) defines, with
SHA-256 and its domain separation: a leaf hashes ``0x00 || data``, an inner node
``0x01 || left || right``, and a tree of ``n`` leaves splits at the largest power of two
below ``n``. Leaf ``i`` is event ``seq = i + 1``, and its data is the 32 bytes of that
event's chain hash (BLAKE3 over every stored field, docs/adr/0002), so a proof about a
leaf is a proof about the whole event. Why SHA-256 and not BLAKE3 here: the checkpoints
signed over these roots are read by tools outside pipetrail (transparency-log witnesses,
checkpoint verifiers), which speak RFC 9162 with SHA-256.

Proofs are computed from stored nodes, never by re-hashing the ledger: every complete,
aligned subtree (``level``, ``index``: the ``2**level`` leaves from ``index * 2**level``)
is stored once, when its last leaf is appended (:func:`new_nodes`). Any subtree the
RFC's recursion asks for is either one of those or the ragged right edge of a tree,
rebuilt from at most ``log2(n)`` stored nodes, so a root or a proof costs O(log n) node
reads (:class:`TreeReader`).

:func:`verify_inclusion` and :func:`verify_consistency` check proofs with nothing but
hashes (RFC 9162 sections 2.1.3.2 and 2.1.4.2); an auditor needs no database.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "HASH_NAME",
    "InclusionChecker",
    "MemoryNodes",
    "NodeStore",
    "TreeReader",
    "event_leaf",
    "leaf_hash",
    "new_nodes",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_NAME = "sha256"
NodeKey = tuple[int, int]  # (level, index)


def leaf_hash(data: bytes) -> bytes:
    """The hash of a leaf holding ``data``: SHA-256 of ``0x00 || data``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node: SHA-256 of ``0x01 || left || right``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def event_leaf(chain_hash: str) -> bytes:
    """The leaf hash of an event, from its chain hash (``blake3:`` and 64 hex digits)."""
    return leaf_hash(bytes.fromhex(chain_hash.removeprefix("blake3:")))


class NodeStore(Protocol):
    """Where complete subtree hashes are kept, by ``(level, index)``."""

    def get_nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return the stored hashes of ``keys`` (missing keys are left out)."""
        ...


class MemoryNodes:
    """A :class:`NodeStore` in a dict (tests, and offline verification of a bundle)."""

    def __init__(self, nodes: Mapping[NodeKey, bytes] | None = None) -> None:
        self.nodes: dict[NodeKey, bytes] = dict(nodes or {})

    def get_nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return the stored hashes of ``keys``."""
        return {k: self.nodes[k] for k in keys if k in self.nodes}

    def add(self, nodes: Mapping[NodeKey, bytes]) -> None:
        """Store new nodes."""
        self.nodes.update(nodes)


def new_nodes(store: NodeStore, size: int, leaves: Iterable[bytes]) -> dict[NodeKey, bytes]:
    """The nodes that appending ``leaves`` to a tree of ``size`` leaves completes.

    Each leaf is stored at level 0; whenever a leaf closes a pair, their parent is
    stored too, and so on upwards. The left siblings needed are read from ``store``
    (at most one per level, in one call) or taken from the nodes made here.
    """
    leaf_list = list(leaves)
    if not leaf_list:
        return {}
    made: dict[NodeKey, bytes] = {}
    wanted = _left_edges(size)
    known = dict(store.get_nodes(wanted)) if wanted else {}
    for offset, leaf in enumerate(leaf_list):
        index = size + offset
        made[(0, index)] = leaf
        level, current = 0, leaf
        while index & 1:
            left = made.get((level, index - 1)) or known.get((level, index - 1))
            if left is None:
                raise LookupError(f"merkle node ({level}, {index - 1}) is missing")
            current = node_hash(left, current)
            index >>= 1
            level += 1
            made[(level, index)] = current
    return made


def _left_edges(size: int) -> list[NodeKey]:
    """The complete subtrees a tree of ``size`` leaves ends with (its binary digits)."""
    keys = []
    level, index = 0, size
    while index:
        if index & 1:
            keys.append((level, index - 1))
        index >>= 1
        level += 1
    return keys


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class TreeReader:
    """Roots and proofs of the tree (of any size up to the stored one) from stored nodes.

    Args:
        store: the stored complete subtrees.
    """

    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self._cache: dict[NodeKey, bytes] = {}
        self._ranges: dict[tuple[int, int], bytes] = {}  # ragged subtrees already hashed

    def _fetch(self, keys: list[NodeKey]) -> None:
        missing = [k for k in keys if k not in self._cache]
        if missing:
            self._cache.update(self.store.get_nodes(missing))

    def _node(self, key: NodeKey) -> bytes:
        found = self._cache.get(key)
        if found is None:
            self._fetch([key])
            found = self._cache.get(key)
        if found is None:
            raise LookupError(f"merkle node {key} is not stored")
        return found

    def subtree(self, lo: int, hi: int) -> bytes:
        """The hash of the leaves ``lo`` to ``hi - 1`` (a range the RFC's recursion uses)."""
        n = hi - lo
        if n <= 0:
            raise ValueError("an empty range has no hash")
        if n & (n - 1) == 0 and lo % n == 0:
            return self._node((n.bit_length() - 1, lo // n))
        found = self._ranges.get((lo, hi))
        if found is None:
            k = _split(n)
            found = node_hash(self.subtree(lo, lo + k), self.subtree(lo + k, hi))
            self._ranges[(lo, hi)] = found
        return found

    def _keys(self, lo: int, hi: int, out: set[NodeKey]) -> None:
        """Add the stored subtrees :meth:`subtree` ``(lo, hi)`` reads to ``out``."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            out.add((n.bit_length() - 1, lo // n))
            return
        k = _split(n)
        self._keys(lo, lo + k, out)
        self._keys(lo + k, hi, out)

    def root(self, size: int) -> bytes:
        """The root hash of the tree of the first ``size`` leaves (SHA-256 of b'' if 0)."""
        if size == 0:
            return hashlib.sha256(b"").digest()
        return self.subtree(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path proving leaf ``index`` is in the tree of ``size`` leaves.

        Raises:
            ValueError: ``index`` is not a leaf of that tree.
        """
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self.subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.subtree(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def inclusion_proofs(self, indices: Iterable[int], size: int) -> dict[int, list[bytes]]:
        """The audit paths of many leaves of one tree, by leaf index.

        Reads every node they need in one call to the store (a handful of range
        queries for leaves that lie together), then builds the paths in one descent of
        the tree: a subtree shared by several paths is visited, and hashed, once.

        Raises:
            ValueError: an index is not a leaf of that tree.
        """
        leaves = sorted(set(indices))
        for index in leaves[:1] + leaves[-1:]:
            if not 0 <= index < size:
                raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
        out: dict[int, list[bytes]] = {}
        if not leaves:
            return out
        wanted: set[NodeKey] = set()
        self._descend(0, size, leaves, 0, len(leaves), None, wanted, out)
        self._fetch(sorted(wanted))
        self._descend(0, size, leaves, 0, len(leaves), [], wanted, out)
        return out

    def _descend(
        self,
        lo: int,
        hi: int,
        leaves: list[int],
        start: int,
        end: int,
        path: list[bytes] | None,
        wanted: set[NodeKey],
        out: dict[int, list[bytes]],
    ) -> None:
        """Visit the subtree ``[lo, hi)`` holding ``leaves[start:end]``.

        With ``path`` None, only collect the stored nodes the siblings read into
        ``wanted``; otherwise extend ``path`` (root first) with each sibling's hash and
        put each leaf's audit path (leaf first) in ``out``.
        """
        if hi - lo == 1:
            if path is not None:
                out[leaves[start]] = path[::-1]
            return
        mid = lo + _split(hi - lo)
        cut = bisect.bisect_left(leaves, mid, start, end)
        for a, b, s, e, sib in ((lo, mid, start, cut, (mid, hi)), (mid, hi, cut, end, (lo, mid))):
            if e <= s:
                continue
            if path is None:
                self._keys(*sib, wanted)
                self._descend(a, b, leaves, s, e, None, wanted, out)
            else:
                self._descend(a, b, leaves, s, e, [*path, self.subtree(*sib)], wanted, out)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """The proof that the tree of ``old`` leaves is a prefix of the tree of ``new``.

        Raises:
            ValueError: unless ``0 < old <= new``.
        """
        return [self.subtree(lo, hi) for lo, hi in _consistency_ranges(old, new)]

    def consistency_proofs(self, olds: Iterable[int], new: int) -> dict[int, list[bytes]]:
        """The consistency proofs of many older trees to the tree of ``new`` leaves.

        Reads every stored node they need (and the root of ``new``) in one call to the
        store, then builds each proof as :meth:`consistency_proof` does; subtrees shared
        by several proofs are hashed once.

        Raises:
            ValueError: unless ``0 < old <= new`` for each.
        """
        wanted: set[NodeKey] = set()
        ranges = {old: _consistency_ranges(old, new) for old in set(olds)}
        if new:
            self._keys(0, new, wanted)
        for parts in ranges.values():
            for lo, hi in parts:
                self._keys(lo, hi, wanted)
        self._fetch(sorted(wanted))
        return {old: [self.subtree(lo, hi) for lo, hi in parts] for old, parts in ranges.items()}


def _consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make the consistency proof from ``old`` to ``new``.

    RFC 9162, section 2.1.4.1, in proof order.

    Raises:
        ValueError: unless ``0 < old <= new``.
    """
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from a tree of {old} to one of {new} leaves")
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, new, old, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``path`` proves that ``leaf`` is leaf ``index`` of the tree with ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        fn, sn, r = _climb(fn, sn, r, p)
    return sn == 0 and r == root


def _climb(fn: int, sn: int, r: bytes, p: bytes) -> tuple[int, int, bytes]:
    """One level of an inclusion proof (RFC 9162, 2.1.3.2): fold node ``p`` into ``r``.

    ``fn`` and ``sn`` are the leaf's index and the last index at this level; returns the
    same three for the level above.
    """
    if fn & 1 or fn == sn:
        r = node_hash(p, r)
        while not fn & 1 and fn:
            fn >>= 1
            sn >>= 1
    else:
        r = node_hash(r, p)
    return fn >> 1, sn >> 1, r


class InclusionChecker:
    """Checks many inclusion proofs in one tree, sharing the work of proofs that meet.

    The audit paths of neighbouring leaves end alike: from the node where two leaves'
    paths meet up to the root they hash the same nodes. Once a proof verified, each
    state it passed through (the position in the tree and the hash computed there) is
    remembered with the rest of its path; a later proof reaching the same state with an
    identical rest of path is proven without hashing that rest again. A proof whose rest
    differs in any node is still hashed to the end, so every path is checked exactly as
    :func:`verify_inclusion` checks it.

    Paths are hex text, as an audit bundle stores them; a node that is not 32 bytes of
    hex raises ``ValueError``.

    Args:
        size: the tree's size in leaves.
        root: its root hash.
    """

    def __init__(self, size: int, root: bytes) -> None:
        self.size = size
        self.root = root
        self._proven: dict[tuple[int, int, bytes], tuple[Sequence[str], int]] = {}

    def check(self, leaf: bytes, index: int, path: Sequence[str]) -> bool:
        """Whether ``path`` proves that ``leaf`` is leaf ``index`` of the tree.

        Raises:
            ValueError: a node of ``path`` is not hex.
        """
        if not 0 <= index < self.size:
            return False
        fn, sn, r = index, self.size - 1, leaf
        trail: list[tuple[tuple[int, int, bytes], int]] = []
        ok = False
        for i, text in enumerate(path):
            state = (fn, sn, r)
            seen = self._proven.get(state)
            if seen is not None and seen[0][seen[1] :] == path[i:]:
                ok = True
                break
            trail.append((state, i))
            if sn == 0:
                return False
            p = bytes.fromhex(text)
            if len(p) != 32:
                raise ValueError(f"a node of {len(p)} bytes")
            fn, sn, r = _climb(fn, sn, r, p)
        else:
            ok = sn == 0 and r == self.root
        if ok:
            for state, i in trail:
                self._proven[state] = (path, i)
        return ok


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows that tree ``old_root`` is a prefix of tree ``new_root``.

    ``old`` and ``new`` are the two trees' sizes in leaves.
    """
    if not 0 < old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    items = list(proof)
    if old & (old - 1) == 0:
        items.insert(0, old_root)
    if not items:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = items[0]
    for c in items[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
