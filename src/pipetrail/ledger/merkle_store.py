"""The Merkle tree's nodes kept in the ledger database (table ``merkle_nodes``).

Every complete subtree of :data:`BLOCK` leaves or more of the tree over the events
(docs/adr/0020) is one row ``(level, idx, hash)``, level :data:`LOW_LEVEL` and up. The
smaller subtrees are not stored: one is hashed, when a proof needs it, from at most
``BLOCK`` chain hashes read from ``events`` in one range query (the leaf data is the chain
hash, so nothing else is needed). So an append writes a row only once in ``BLOCK``
events, and proofs still read O(log n) rows.

:class:`TreeWriter` extends the tree inside the transaction that appends the events
(:meth:`Ledger.append <pipetrail.ledger.ledger.Ledger.append>`): it remembers the tree's
right edge (at most one node per level) after each append, so an append by the same
ledger reads nothing; after another process appended, it reads the right edge once.

A tree that is behind its events (a ledger from before the tree existed, or rows that
went missing) is completed by :func:`catch_up` from the events, in batches, under the
write lock: when a ledger is opened after a migration, and whenever an append finds a
node it needs missing. :class:`TreeCheck` recomputes every node from the events
``audit verify`` walks and reports each stored node that differs, is missing or is
extra, as a derived row of table ``merkle_nodes``; ``audit rebuild`` rewrites them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from pipetrail.errors import LedgerError
from pipetrail.ledger.merkle import (
    NodeKey,
    TreeReader,
    event_leaf,
    new_nodes,
    node_hash,
)
from pipetrail.ledger.trusted import DerivedRowProblem

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pipetrail.ledger.driver import Driver
    from pipetrail.ledger.events import Event

__all__ = [
    "BLOCK",
    "LOW_LEVEL",
    "TABLE",
    "DriverNodes",
    "TreeCheck",
    "TreeWriter",
    "catch_up",
    "read_tree",
    "tree_size",
]

TABLE = "merkle_nodes"
LOW_LEVEL = 4
"""The lowest level stored: smaller subtrees are hashed from the events when needed."""
BLOCK = 1 << LOW_LEVEL
_UPSERT = (
    "INSERT INTO merkle_nodes (level, idx, hash) VALUES (:level, :idx, :hash) "
    "ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash"
)
_STATE = (
    "SELECT (SELECT seq FROM ledger_head WHERE id = 1) AS head, "
    "(SELECT MAX(idx) FROM merkle_nodes WHERE level = 4) AS last_block"
)
_RANGE = (
    "SELECT idx, hash FROM merkle_nodes WHERE level = :level AND idx >= :lo AND idx < :hi "
    "ORDER BY idx"
)
_BEYOND = "SELECT idx FROM merkle_nodes WHERE level = :level AND idx >= :hi ORDER BY idx"
_ABOVE = "SELECT level, idx FROM merkle_nodes WHERE level > :level ORDER BY level, idx"
_BELOW = "SELECT level, idx FROM merkle_nodes WHERE level < :level ORDER BY level, idx"
_HASHES = "SELECT hash FROM events WHERE seq > :lo AND seq <= :hi ORDER BY seq"
_LEAVES = "SELECT seq, hash FROM events WHERE seq > :after AND seq <= :upto ORDER BY seq LIMIT :n"
_BATCH = 5000
_LEAF = hashlib.sha256(b"\x00")  # copied for every leaf hash (see TreeCheck.add_digests)
_NODE = hashlib.sha256(b"\x01")  # and for every node hash


class DriverNodes:
    """A :class:`~pipetrail.ledger.merkle.NodeStore` over the ledger's connection."""

    def __init__(self, db: Driver) -> None:
        self.db = db

    def get_nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return the hashes of ``keys``: stored ones read, small ones hashed from events.

        Many keys close together (the proofs of a bundle's events) are read with range
        queries: one per level for stored nodes that lie densely, one per run of
        adjacent 16-leaf blocks for the small subtrees.
        """
        found: dict[NodeKey, bytes] = {}
        by_level: dict[int, list[int]] = {}
        for level, idx in keys:
            if level >= LOW_LEVEL:
                by_level.setdefault(level, []).append(idx)
        for level, indices in by_level.items():
            found.update(self._stored(level, sorted(set(indices))))
        blocks: dict[int, list[NodeKey]] = {}
        for level, idx in keys:
            if level < LOW_LEVEL:
                blocks.setdefault((idx << level) >> LOW_LEVEL, []).append((level, idx))
        for first_block, last_block in _runs(sorted(blocks)):
            lo = first_block << LOW_LEVEL
            hi = max((idx + 1) << level for level, idx in blocks[last_block])
            rows = self.db.rows(_HASHES, {"lo": lo, "hi": hi})
            leaves = [event_leaf(str(h)) for (h,) in rows]
            for block in range(first_block, last_block + 1):
                for level, idx in blocks.get(block, ()):
                    first = (idx << level) - lo
                    part = leaves[first : first + (1 << level)]
                    if len(part) == 1 << level:
                        found[(level, idx)] = _perfect(part)
        return found

    def _stored(self, level: int, indices: list[int]) -> dict[NodeKey, bytes]:
        found: dict[NodeKey, bytes] = {}
        if len(indices) > 32 and indices[-1] - indices[0] < 4 * len(indices):
            wanted = set(indices)
            rows = self.db.rows(_RANGE, {"level": level, "lo": indices[0], "hi": indices[-1] + 1})
            for idx, digest in rows:
                if int(idx) in wanted:
                    found[(level, int(idx))] = bytes(digest)
            return found
        for start in range(0, len(indices), 32):
            chunk = indices[start : start + 32]
            marks = ", ".join(f":i{i}" for i in range(len(chunk)))
            params = {f"i{i}": idx for i, idx in enumerate(chunk)}
            params["level"] = level
            sql = f"SELECT idx, hash FROM merkle_nodes WHERE level = :level AND idx IN ({marks})"  # noqa: S608
            for idx, digest in self.db.rows(sql, params):
                found[(level, int(idx))] = bytes(digest)
        return found

    def put(self, nodes: Mapping[NodeKey, bytes]) -> None:
        """Store ``nodes`` of level :data:`LOW_LEVEL` and up, replacing what is stored."""
        self.db.executemany(
            _UPSERT,
            [
                {"level": lv, "idx": ix, "hash": h}
                for (lv, ix), h in nodes.items()
                if lv >= LOW_LEVEL
            ],
        )


def _runs(blocks: list[int], most: int = 4096) -> list[tuple[int, int]]:
    """Sorted block numbers grouped into runs of adjacent ones (at most ``most`` each)."""
    runs: list[tuple[int, int]] = []
    for block in blocks:
        if runs and block == runs[-1][1] + 1 and block - runs[-1][0] < most:
            runs[-1] = (runs[-1][0], block)
        else:
            runs.append((block, block))
    return runs


def _perfect(leaves: list[bytes]) -> bytes:
    """The root of a power-of-two count of leaf hashes."""
    level = leaves
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


class TreeWriter:
    """Extends the stored tree with appended events; remembers its right edge.

    The right edge of a tree of ``n`` leaves is its complete subtrees, one per set bit of
    ``n``, largest first; appending leaf ``i`` merges it with one edge node per trailing
    one bit of ``i`` (a binary counter), so an append costs about one hash per event.
    """

    def __init__(self) -> None:
        self._head: tuple[int, str] | None = None  # (size, hash of the last event)
        self._edge: list[bytes] = []

    def extend(self, db: Driver, events: Sequence[Event]) -> None:
        """Store the nodes ``events`` (just appended, in one write transaction) complete.

        Raises:
            LedgerError: the events before them are missing, so the tree cannot be built.
        """
        if not events:
            return
        size = events[0].seq - 1
        store = DriverNodes(db)
        edge = self._edge if self._head == (size, events[0].prev_hash) else None
        self._head = None  # until this append's nodes are made
        if edge is None:
            edge = self._read_edge(db, store, size)
        made: dict[NodeKey, bytes] = {}
        index = size
        # merkle.event_leaf and merkle.node_hash written out (the same bytes hashed): a
        # run's last append extends the tree by a leaf per step, two calls fewer each.
        sha256, fromhex = hashlib.sha256, bytes.fromhex
        for event in events:
            level = 0
            current = sha256(b"\x00" + fromhex(event.hash.removeprefix("blake3:"))).digest()
            i = index
            while i & 1:
                current = sha256(b"\x01" + edge.pop() + current).digest()
                i >>= 1
                level += 1
                if level >= LOW_LEVEL:
                    made[(level, i)] = current
            edge.append(current)
            index += 1
        if made:
            store.put(made)
        self._edge = edge
        self._head = (index, events[-1].hash)

    @staticmethod
    def _read_edge(db: Driver, store: DriverNodes, size: int) -> list[bytes]:
        keys = _edge_keys(size)
        found = store.get_nodes(keys)
        if len(found) < len(keys):  # the tree is behind its events: complete it first
            catch_up(db, upto=size)
            found = store.get_nodes(keys)
        missing = [k for k in keys if k not in found]
        if missing:
            raise LedgerError(
                f"the ledger's Merkle tree cannot be extended past event {size}: node "
                f"{missing[0]} cannot be made, events before it are missing; run "
                "`pipetrail audit verify`"
            )
        return [found[k] for k in reversed(keys)]  # largest subtree first

    def forget(self) -> None:
        """Drop the remembered right edge (the next append reads it from the database)."""
        self._head = None
        self._edge = []


def tree_size(db: Driver) -> tuple[int, int]:
    """(events in the ledger per its head, leaves covered by stored rows)."""
    row = db.fetch(_STATE)[0]
    head = int(row["head"] or 0)
    stored = 0 if row["last_block"] is None else (int(row["last_block"]) + 1) << LOW_LEVEL
    return head, stored


def catch_up(db: Driver, *, upto: int | None = None) -> int:
    """Build the nodes of the first ``upto`` events (default: all) that are not stored.

    Starts after the stored rows, or earlier where a node the next append needs is
    missing, and reads the events in batches. Call it inside a write transaction.

    Returns:
        How many events' leaves were (re)hashed.
    """
    head, stored = tree_size(db)
    target = head if upto is None else upto
    start = min(stored, target)
    start -= start % BLOCK
    store = DriverNodes(db)
    edge = _edge_keys(start)
    present = store.get_nodes(edge) if edge else {}
    missing = [key for key in edge if key not in present]
    if missing:
        start = min(ix << lv for lv, ix in missing)
    built = start
    while built < target:
        rows = db.rows(_LEAVES, {"after": built, "upto": target, "n": _BATCH})
        if not rows:
            break
        store.put(new_nodes(store, built, [event_leaf(h) for _, h in rows]))
        built = int(rows[-1][0])
    return built - start


def _edge_keys(size: int) -> list[NodeKey]:
    keys = []
    level, index = 0, size
    while index:
        if index & 1:
            keys.append((level, index - 1))
        index >>= 1
        level += 1
    return keys


def ensure_tree(db: Driver) -> None:
    """Complete the stored tree if it is behind the events (a ledger made before it)."""
    head, stored = tree_size(db)
    if stored >= head - head % BLOCK:
        return
    with db.write():
        catch_up(db)


def read_tree(db: Driver) -> TreeReader:
    """A reader of roots and proofs over the stored nodes."""
    return TreeReader(DriverNodes(db))


class TreeCheck:
    """Recomputes the tree from the events a chain walk passes, and compares the nodes.

    Holds only the right edge of the whole blocks taken so far (as :class:`TreeWriter`
    does, from level :data:`LOW_LEVEL` up), the leaves of the block not yet complete,
    and the stored-level nodes made since the last comparison; those are compared with
    the stored rows in batches, level by level, with one range query per level.

    Whole blocks are hashed level by level (every leaf, then every pair of leaves, and so
    on up to the block's root), then merged into the edge: the same hashes the
    binary-counter walk of :class:`TreeWriter` makes, in fewer Python steps. The leaves of
    an incomplete last block make no stored node, so they are only counted.
    """

    def __init__(self, db: Driver) -> None:
        self.db = db
        self.size = 0
        self.nodes = 0
        self._edge: list[bytes] = []
        self._pending: list[bytes] = []  # leaf hashes of the block not yet complete
        self._made: dict[NodeKey, bytes] = {}
        self.problems: list[DerivedRowProblem] = []
        self._fixes: dict[NodeKey, bytes | None] = {}

    def add(self, chain_hash: str) -> None:
        """Take the next event's chain hash (in sequence order)."""
        self.add_many([chain_hash])

    def add_many(self, chain_hashes: Sequence[str]) -> None:
        """Take the next events' chain hashes (``blake3:`` and hex, in sequence order)."""
        self.add_digests([bytes.fromhex(h.removeprefix("blake3:")) for h in chain_hashes])

    def add_digests(self, digests: Sequence[bytes]) -> None:
        """Take the next events' chain hashes as raw 32-byte digests (in sequence order).

        Each hash starts from a copy of a hasher that has taken the domain prefix (``0x00``
        for a leaf, ``0x01`` for a node): a copy costs less than making a SHA-256 hasher
        anew, and the prefix is not joined to every input (two million hashes per million
        events). The bytes hashed are exactly those of :func:`leaf_hash` and
        :func:`node_hash`.
        """
        if not digests:
            return
        pending = self._pending
        new_leaf = _LEAF.copy
        for data in digests:
            hasher = new_leaf()
            hasher.update(data)
            pending.append(hasher.digest())
        self.size += len(digests)
        whole = len(pending) - len(pending) % BLOCK
        if not whole:
            return
        nodes = pending[:whole]
        del pending[:whole]
        new_node = _NODE.copy
        for _ in range(LOW_LEVEL):  # each block up to its root, all blocks a level at a time
            below = iter(nodes)
            nodes = []
            for left in below:
                hasher = new_node()
                hasher.update(left + next(below))
                nodes.append(hasher.digest())
        edge, made = self._edge, self._made
        index = (self.size - len(pending)) // BLOCK - len(nodes)
        for current in nodes:
            made[(LOW_LEVEL, index)] = current
            i, level = index, LOW_LEVEL
            while i & 1:
                hasher = new_node()
                hasher.update(edge.pop() + current)
                current = hasher.digest()
                i >>= 1
                level += 1
                made[(level, i)] = current
            edge.append(current)
            index += 1
        if len(made) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        made, self._made = self._made, {}
        self.nodes += len(made)
        by_level: dict[int, dict[int, bytes]] = {}
        for (level, idx), digest in made.items():
            by_level.setdefault(level, {})[idx] = digest
        for level, expected in by_level.items():
            lo, hi = min(expected), max(expected) + 1
            stored: dict[int, Any] = {}
            for i, h in self.db.rows(_RANGE, {"level": level, "lo": lo, "hi": hi}):
                if type(i) is not int:  # a REAL index edited in between two whole ones
                    self._problem(level, i, b"", None)
                    continue
                stored[i] = bytes(h) if isinstance(h, (bytes, memoryview)) else h
            for idx, digest in expected.items():
                have = stored.get(idx)
                if have != digest:
                    self._problem(level, idx, have, digest)

    def _problem(self, level: Any, idx: Any, have: Any, want: bytes | None) -> None:
        # ``level``, ``idx`` and ``have`` are as stored: an edited row may hold text where
        # pipetrail writes integers and bytes, and is named as it reads, never converted.
        key = f"{level}, {idx}"
        if have is None:
            problem = DerivedRowProblem(TABLE, key, "missing")
        elif want is None:
            problem = DerivedRowProblem(TABLE, key, "extra")
        else:
            shown = have.hex() if isinstance(have, bytes) else repr(have)
            problem = DerivedRowProblem(TABLE, key, "differs", (("hash", shown, want.hex()),))
        self.problems.append(problem)
        self._fixes[(level, idx)] = want

    def finish(self) -> list[DerivedRowProblem]:
        """Compare the last batch, and report stored rows no complete subtree explains."""
        self._flush()
        for lv, ix in self.db.rows(_BELOW, {"level": LOW_LEVEL}):
            self._problem(lv, ix, b"", None)
        level = LOW_LEVEL
        while self.size >> level:
            for (idx,) in self.db.rows(_BEYOND, {"level": level, "hi": self.size >> level}):
                self._problem(level, idx, b"", None)
            level += 1
        for lv, ix in self.db.rows(_ABOVE, {"level": level - 1}):
            self._problem(lv, ix, b"", None)
        return self.problems

    def repair(self, db: Driver) -> None:
        """Make the stored nodes equal the recomputed ones (after :meth:`finish`)."""
        DriverNodes(db).put({k: v for k, v in self._fixes.items() if v is not None})
        db.executemany(
            "DELETE FROM merkle_nodes WHERE level = :level AND idx = :idx",
            [{"level": lv, "idx": ix} for (lv, ix), v in self._fixes.items() if v is None],
        )
