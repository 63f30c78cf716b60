"""The Merkle tree's nodes kept in the ledger database (table ``merkle_nodes``).

Every complete subtree of the tree over the events (docs/adr/0020) is one row
``(level, idx, hash)``. :class:`TreeWriter` extends the tree inside the transaction that
appends the events (:meth:`Ledger.append <pipetrail.ledger.ledger.Ledger.append>`): it
remembers the tree's right edge (at most one node per level) after each append, so an
append by the same ledger only inserts the new nodes; after another process appended, it
reads the right edge once (one query).

A tree that is behind its events (a ledger from before the tree existed, or rows that
went missing) is completed by :func:`catch_up` from the events, in batches, under the
write lock: when a ledger is opened after a migration, and whenever an append finds a
node it needs missing. :class:`TreeCheck` recomputes every node from the events
``audit verify`` walks and reports each stored node that differs, is missing or is
extra, as a derived row of table ``merkle_nodes``; ``audit rebuild`` rewrites them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.errors import LedgerError
from pipetrail.ledger.merkle import (
    MemoryNodes,
    NodeKey,
    TreeReader,
    event_leaf,
    new_nodes,
)
from pipetrail.ledger.trusted import DerivedRowProblem

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pipetrail.ledger.driver import Driver
    from pipetrail.ledger.events import Event

__all__ = [
    "TABLE",
    "DriverNodes",
    "TreeCheck",
    "TreeWriter",
    "catch_up",
    "read_tree",
    "tree_size",
]

TABLE = "merkle_nodes"
_UPSERT = (
    "INSERT INTO merkle_nodes (level, idx, hash) VALUES (:level, :idx, :hash) "
    "ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash"
)
_STATE = (
    "SELECT (SELECT seq FROM ledger_head WHERE id = 1) AS head, "
    "(SELECT MAX(idx) FROM merkle_nodes WHERE level = 0) AS last_leaf"
)
_RANGE = (
    "SELECT idx, hash FROM merkle_nodes WHERE level = :level AND idx >= :lo AND idx < :hi "
    "ORDER BY idx"
)
_BEYOND = "SELECT idx FROM merkle_nodes WHERE level = :level AND idx >= :hi ORDER BY idx"
_ABOVE = "SELECT level, idx FROM merkle_nodes WHERE level > :level ORDER BY level, idx"
_LEAVES = "SELECT seq, hash FROM events WHERE seq > :after AND seq <= :upto ORDER BY seq LIMIT :n"
_BATCH = 5000


class DriverNodes:
    """A :class:`~pipetrail.ledger.merkle.NodeStore` over the ledger's connection."""

    def __init__(self, db: Driver) -> None:
        self.db = db

    def get_nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return the stored hashes of ``keys`` (one query)."""
        found: dict[NodeKey, bytes] = {}
        for start in range(0, len(keys), 32):
            chunk = keys[start : start + 32]
            where = " OR ".join(f"(level = :l{i} AND idx = :i{i})" for i in range(len(chunk)))
            params: dict[str, int] = {}
            for i, (level, idx) in enumerate(chunk):
                params[f"l{i}"] = level
                params[f"i{i}"] = idx
            sql = f"SELECT level, idx, hash FROM merkle_nodes WHERE {where}"  # noqa: S608
            for level, idx, digest in self.db.rows(sql, params):
                found[(int(level), int(idx))] = bytes(digest)
        return found

    def put(self, nodes: Mapping[NodeKey, bytes]) -> None:
        """Store ``nodes``, replacing what is stored under the same keys."""
        self.db.executemany(
            _UPSERT, [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in nodes.items()]
        )


def _right_edge(size: int, nodes: Mapping[NodeKey, bytes]) -> dict[NodeKey, bytes]:
    """The complete subtrees a tree of ``size`` leaves ends with, taken from ``nodes``."""
    edge: dict[NodeKey, bytes] = {}
    level, index = 0, size
    while index:
        if index & 1:
            edge[(level, index - 1)] = nodes[(level, index - 1)]
        index >>= 1
        level += 1
    return edge


class TreeWriter:
    """Extends the stored tree with appended events; remembers its right edge."""

    def __init__(self) -> None:
        self._head: tuple[int, str] | None = None  # (size, hash of the last event)
        self._edge: dict[NodeKey, bytes] = {}

    def extend(self, db: Driver, events: Sequence[Event]) -> None:
        """Store the nodes ``events`` (just appended, in one write transaction) complete.

        Raises:
            LedgerError: the events before them are missing, so the tree cannot be built.
        """
        if not events:
            return
        size = events[0].seq - 1
        leaves = [event_leaf(e.hash) for e in events]
        store = DriverNodes(db)
        if self._head == (size, events[0].prev_hash):
            edge = self._edge
        else:
            keys = _edge_keys(size)
            edge = dict(store.get_nodes(keys))
            if len(edge) < len(keys):  # the tree is behind its events: complete it first
                catch_up(db, upto=size)
                edge = dict(store.get_nodes(keys))
        try:
            made = new_nodes(MemoryNodes(edge), size, leaves)
        except LookupError as exc:
            self.forget()
            raise LedgerError(
                f"the ledger's Merkle tree cannot be extended past event {size} ({exc}): "
                "events before it are missing; run `pipetrail audit verify`"
            ) from None
        store.put(made)
        end = size + len(leaves)
        self._edge = _right_edge(end, {**edge, **made})
        self._head = (end, events[-1].hash)

    def forget(self) -> None:
        """Drop the remembered right edge (the next append reads it from the database)."""
        self._head = None
        self._edge = {}


def tree_size(db: Driver) -> tuple[int, int]:
    """(events in the ledger per its head, leaves stored)."""
    row = db.fetch(_STATE)[0]
    head = int(row["head"] or 0)
    stored = 0 if row["last_leaf"] is None else int(row["last_leaf"]) + 1
    return head, stored


def catch_up(db: Driver, *, upto: int | None = None) -> int:
    """Build the nodes of the first ``upto`` events (default: all) that are not stored.

    Starts after the stored leaves, or earlier where a node the next append needs is
    missing, and reads the events in batches. Call it inside a write transaction.

    Returns:
        How many events' leaves were (re)built.
    """
    head, stored = tree_size(db)
    target = head if upto is None else upto
    start = min(stored, target)
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
    if stored >= head:
        return
    with db.write():
        catch_up(db)


def read_tree(db: Driver) -> TreeReader:
    """A reader of roots and proofs over the stored nodes."""
    return TreeReader(DriverNodes(db))


class TreeCheck:
    """Recomputes the tree from the events a chain walk passes, and compares the nodes.

    Holds only the right edge and one batch of leaves; each batch's nodes are compared
    with the stored ones, level by level, with one range query per level.
    """

    def __init__(self, db: Driver) -> None:
        self.db = db
        self.size = 0
        self.nodes = 0
        self._edge = MemoryNodes()
        self._pending: list[bytes] = []
        self.problems: list[DerivedRowProblem] = []
        self._fixes: dict[NodeKey, bytes | None] = {}

    def add(self, chain_hash: str) -> None:
        """Take the next event's chain hash (in sequence order)."""
        self._pending.append(event_leaf(chain_hash))
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        start = self.size
        made = new_nodes(self._edge, start, self._pending)
        self.size += len(self._pending)
        self._pending = []
        self.nodes += len(made)
        by_level: dict[int, dict[int, bytes]] = {}
        for (level, idx), digest in made.items():
            by_level.setdefault(level, {})[idx] = digest
        for level, expected in by_level.items():
            lo, hi = min(expected), max(expected) + 1
            stored = {
                int(i): bytes(h)
                for i, h in self.db.rows(_RANGE, {"level": level, "lo": lo, "hi": hi})
            }
            for idx, digest in expected.items():
                have = stored.get(idx)
                if have != digest:
                    self._problem(level, idx, have, digest)
        self._edge = MemoryNodes(_right_edge(self.size, {**self._edge.nodes, **made}))

    def _problem(self, level: int, idx: int, have: bytes | None, want: bytes | None) -> None:
        key = f"{level}, {idx}"
        if have is None:
            problem = DerivedRowProblem(TABLE, key, "missing")
        elif want is None:
            problem = DerivedRowProblem(TABLE, key, "extra")
        else:
            problem = DerivedRowProblem(TABLE, key, "differs", (("hash", have.hex(), want.hex()),))
        self.problems.append(problem)
        self._fixes[(level, idx)] = want

    def finish(self) -> list[DerivedRowProblem]:
        """Compare the last batch, and report stored nodes beyond the walked events."""
        self._flush()
        level = 0
        while (self.size >> level) or level == 0:
            for (idx,) in self.db.rows(_BEYOND, {"level": level, "hi": self.size >> level}):
                self._problem(level, int(idx), b"", None)
            level += 1
        for lv, ix in self.db.rows(_ABOVE, {"level": level - 1}):
            self._problem(int(lv), int(ix), b"", None)
        return self.problems

    def repair(self, db: Driver) -> None:
        """Make the stored nodes equal the recomputed ones (after :meth:`finish`)."""
        DriverNodes(db).put({k: v for k, v in self._fixes.items() if v is not None})
        db.executemany(
            "DELETE FROM merkle_nodes WHERE level = :level AND idx = :idx",
            [{"level": lv, "idx": ix} for (lv, ix), v in self._fixes.items() if v is None],
        )
