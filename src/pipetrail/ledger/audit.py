"""Auditing the whole ledger: the hash chain, and the derived tables against the events.

:func:`verify` walks every event in sequence order, re-hashing each and checking its
link to the one before (docs/adr/0002-ledger-format.md), then the recorded head. While
walking it replays the events into a private in-memory SQLite copy of the derived tables
with the very code that writes them (:func:`~pipetrail.ledger.projections.apply_event`),
and compares that copy with the stored tables row by row: a row that differs, is missing
or is extra is a :class:`~pipetrail.ledger.trusted.DerivedRowProblem` naming its table
and key. The replay runs on SQLite whatever the backend: the projection SQL is portable,
and SQLite in memory is the cheapest place to run it.

:func:`verify` builds the rows of the largest tables in Python rather than replaying
them (:mod:`pipetrail.ledger.audit_model`, docs/adr/0029-derived-tables-built-in-python.md);
when one of those tables is not exactly what the events give, or the model cannot follow
an event, it checks again with the whole replay, which names the rows and the events.

:func:`rebuild` does the same under the write lock and rewrites exactly the rows that
disagree, in the same transaction; it refuses when the chain itself is broken.

Both read in one snapshot, so events appended meanwhile do not look like tampering.
The schema module (SQLAlchemy) is imported only to create the in-memory copy.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pipetrail.errors import TamperedLedgerError
from pipetrail.ledger.audit_artifacts import ARTIFACT
from pipetrail.ledger.audit_model import Unmodelled
from pipetrail.ledger.audit_replica import MMAP_BYTES, Replica
from pipetrail.ledger.chain_check import check_chain, parse_plain_payload
from pipetrail.ledger.events import GENESIS_HASH, Event
from pipetrail.ledger.merkle_store import TreeCheck
from pipetrail.ledger.sqlite_rows import sqlite_batches

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pipetrail.ledger.driver import Driver
    from pipetrail.ledger.trusted import DerivedRowProblem

__all__ = [
    "LedgerVerifyReport",
    "Meanwhile",
    "RebuildReport",
    "Sent",
    "Share",
    "iter_events",
    "rebuild",
    "verify",
]

_NOT_AN_OBJECT = "its payload is not a JSON object"
_EVENTS_AFTER = (
    "SELECT seq, ts, actor, kind, run_id, payload, prev_hash, hash FROM events "
    "WHERE seq > :after ORDER BY seq LIMIT :limit"
)


@dataclass(frozen=True)
class LedgerVerifyReport:
    """Outcome of :meth:`Ledger.verify <pipetrail.ledger.ledger.Ledger.verify>`.

    Attributes:
        checked: how many events were re-hashed.
        first_bad_seq: the first sequence number that fails, or None when the chain holds.
        reason: what failed there.
        derived_checked: whether the derived tables were compared with the events (not
            when the chain is broken, nor when not asked for).
        derived_rows: how many derived rows the events project.
        derived: every derived row that disagrees with the events.
    """

    checked: int
    first_bad_seq: int | None = None
    reason: str = ""
    derived_checked: bool = False
    derived_rows: int = 0
    derived: tuple[DerivedRowProblem, ...] = field(default=())

    @property
    def chain_ok(self) -> bool:
        """Whether the hash chain and the head verified."""
        return self.first_bad_seq is None

    @property
    def ok(self) -> bool:
        """Whether the chain verified and no derived row disagrees with the events."""
        return self.first_bad_seq is None and not self.derived


@dataclass(frozen=True)
class RebuildReport:
    """Outcome of :meth:`Ledger.rebuild_projections`.

    Attributes:
        events: how many events were replayed.
        rows: how many derived rows the events project.
        changed: the rows that were rewritten, added or removed (what they were before).
    """

    events: int
    rows: int
    changed: tuple[DerivedRowProblem, ...]


def iter_events(db: Driver, *, from_seq: int = 1, batch: int = 5000) -> Iterator[Event]:
    """Yield events in sequence order, reading in batches."""
    after = from_seq - 1
    while True:
        rows = db.fetch(_EVENTS_AFTER, {"after": after, "limit": batch})
        if not rows:
            return
        for row in rows:
            yield Event(
                row["seq"],
                row["ts"],
                row["actor"],
                row["kind"],
                row["run_id"],
                row["payload"],
                row["prev_hash"],
                row["hash"],
            )
        after = rows[-1]["seq"]


@dataclass
class _Walk:
    """The chain walk's state: where it is and what failed.

    ``skip``: kinds whose payloads are neither parsed nor replayed here (the replay
    in a second process does both, see :mod:`pipetrail.ledger.audit_parallel`).
    """

    skip: frozenset[str] = frozenset()
    # Takes a verified artifact event when its stored row matches it (the event is then
    # neither parsed nor replayed, see pipetrail.ledger.audit_artifacts).
    match: Callable[[tuple[Any, ...]], bool] | None = None
    expected_seq: int = 1
    prev: str = GENESIS_HASH
    checked: int = 0
    failure: tuple[int, str] | None = None  # the chain breaks there: the walk stops
    end: tuple[int, str] | None = None  # the head, or projections past the last event
    unprojectable: tuple[int, str] | None = None  # the first event the replay rejects
    plain: bool = True  # whether orjson wrote every payload of the last batch
    digests: list[bytes] = field(default_factory=list)  # the last batch's raw chain hashes

    def rows(self, rows: list[tuple[Any, ...]]) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """Check a batch of stored rows in order; return the payloads to replay, with their rows.

        Stops at the first row that fails (and records why): the rest of the chain
        cannot be trusted past it. The rows of a kind in :attr:`skip`, and the artifact
        events :attr:`match` takes, are verified but not returned (nothing replays them
        here). Sets :attr:`plain`, and :attr:`digests` to the raw chain hashes of the rows
        that verify.
        """
        digests, failure = check_chain(rows, self.expected_seq, self.prev)
        verified = len(digests)
        good: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        skip, match = self.skip, self.match
        plain = True
        for row in rows[:verified]:
            kind = row[3]
            if kind in skip or (kind == ARTIFACT and match is not None and match(row)):
                continue
            try:
                payload, written = parse_plain_payload(row[5])
            except ValueError:
                payload, written = None, False
            plain = plain and written
            if type(payload) is not dict:
                failure = (row[0], _NOT_AN_OBJECT)
                verified = row[0] - self.expected_seq  # the rows before it verify
                break
            good.append((row, payload))
        if verified:
            self.expected_seq += verified
            self.prev = rows[verified - 1][7]
        self.failure, self.plain = failure, plain
        self.digests = digests[:verified]
        self.checked += verified
        return good

    @property
    def head(self) -> tuple[int, str]:
        """The last event walked (its sequence number and hash)."""
        return self.expected_seq - 1, self.prev


def _max_projection_seq(db: Driver, *, artifacts: bool = True) -> int:
    """The highest event any derived row names (``artifacts``: its rows' too)."""
    beyond = "(SELECT MAX(first_seq) FROM artifacts)" if artifacts else "NULL"
    row = db.fetch(
        "SELECT (SELECT MAX(last_seq) FROM runs) AS a, (SELECT MAX(last_seq) FROM step_runs) AS b, "  # noqa: S608 - constants
        f"{beyond} AS c, (SELECT MAX(seq) FROM sources) AS d, "
        "(SELECT MAX(seq) FROM run_tags) AS e, (SELECT MAX(seq) FROM run_notes) AS f, "
        "(SELECT MAX(seq) FROM run_deletions) AS g"
    )[0]
    return max(int(v) for v in row.values() if v is not None) if any(row.values()) else 0


def _end_of_chain(
    db: Driver, walk: _Walk, replica: Replica | None = None
) -> tuple[int, str] | None:
    """Check the recorded head, and projections pointing past the last event.

    When every stored ``artifacts`` row matched an artifact event the walk verified, in
    order and with none left over (``replica``'s match, see
    :meth:`~pipetrail.ledger.audit_artifacts.ArtifactMatch.complete`, which the
    comparison asks in any case and which gives the same answer again), each row's
    ``first_seq`` is such an event's: no row of that table names an event past the
    last, and it is not read again for its highest (a scan of its 450,000 rows on a
    million events). The highest of the other tables decides, as it would have.
    """
    last_seq = walk.expected_seq - 1
    head = db.fetch("SELECT seq, hash FROM ledger_head WHERE id = 1")
    if head and (head[0]["seq"] != last_seq or head[0]["hash"] != walk.prev):
        head_seq = int(head[0]["seq"])
        return (
            min(head_seq, last_seq) + 1 if head_seq != last_seq else last_seq,
            f"the recorded head is event {head_seq} but the chain ends at {last_seq} "
            "(events were deleted from the end, or the head was edited)",
        )
    if not head and last_seq > 0:
        return (1, "the ledger head row is missing")
    matched = replica is not None and replica.match is not None and replica.match.complete()
    beyond = _max_projection_seq(db, artifacts=not matched)
    if beyond > last_seq:
        return (
            last_seq + 1,
            f"projections reference event {beyond} but the chain ends at {last_seq} "
            "(events were deleted from the end)",
        )
    return None


_EVENT_COLUMNS = "seq, ts, actor, kind, run_id, payload, prev_hash, hash"
_EVENTS_IN_ORDER = "FROM events ORDER BY seq"
_ALL_EVENTS = f"SELECT {_EVENT_COLUMNS} {_EVENTS_IN_ORDER}"
_FETCH = 20_000  # rows per fetch: one cursor, streamed (a named cursor on PostgreSQL)
# Rows checked, then projected, at a time: few parsed payloads alive at once keeps the
# garbage collector's passes short (20,000 large payloads at once made the walk slower).
_STEP = 500
# On SQLite a fetch is no round trip: fetching fewer rows at a time keeps the memory the
# rows take (about half a megabyte for 500) in the CPU's caches and reused by the
# allocator, where 20,000 rows (over 20 MB) are written to fresh memory each time
# (fetching and re-hashing 400,000 events measured 5 to 7% less CPU with 1,000 than with
# 20,000, and fetching 500 at a time about 3% less again); one step's rows are not copied.
_SQLITE_FETCH = _STEP


@contextlib.contextmanager
def mapped(db: Driver) -> Iterator[None]:
    """Read a SQLite ledger through a memory map meanwhile; the connection's setting after.

    The audit reads every page of the events: a map spares copying each page out of the
    OS's cache with a system call (:data:`~pipetrail.ledger.audit_replica.MMAP_BYTES`).
    PostgreSQL is left as it is.
    """
    if db.dialect != "sqlite":
        yield
        return
    found = db.rows("PRAGMA mmap_size")  # no row at all is taken as 0, the default
    before = int(found[0][0]) if found else 0
    db.rows(f"PRAGMA mmap_size={MMAP_BYTES}")
    try:
        yield
    finally:
        db.rows(f"PRAGMA mmap_size={before}")


@contextlib.contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector while the walk runs.

    The walk makes millions of short-lived objects (rows, payloads, events) that form no
    reference cycles, so reference counting frees them all; the collector's passes over
    them only cost time (a fifth of the walk, measured on 100,000 events).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _walk(
    db: Driver,
    replica: Replica | None,
    tree: TreeCheck | None = None,
    skip: frozenset[str] = frozenset(),
) -> _Walk:
    match = replica.match_artifacts(db) if replica is not None else None
    # The kinds as plain strings: finding a row's kind among enum members costs more (a
    # third more per lookup, half a million lookups on a million events).
    kinds = frozenset(map(str, skip))
    with _without_cycle_collection():
        return _walk_events(db, replica, tree, _Walk(kinds, match))


def _walk_events(db: Driver, replica: Replica | None, tree: TreeCheck | None, walk: _Walk) -> _Walk:
    for fetched in _event_batches(db):
        for at in range(0, len(fetched), _STEP):
            good = walk.rows(fetched if len(fetched) <= _STEP else fetched[at : at + _STEP])
            if tree is not None:
                tree.add_digests(walk.digests)
            if replica is not None and walk.unprojectable is None:
                walk.unprojectable = replica.replay(good, plain=walk.plain)
            if walk.failure is not None:
                return walk
    walk.end = _end_of_chain(db, walk, replica)
    return walk


def _event_batches(db: Driver) -> Iterator[list[tuple[Any, ...]]]:
    """Every stored event row in sequence order, in batches (see :data:`_ALL_EVENTS`).

    On SQLite each row is handed over whole (:func:`~pipetrail.ledger.sqlite_rows.sqlite_batches`:
    the same tuples, read for less).
    """
    if db.dialect != "sqlite":
        return db.batches(_ALL_EVENTS, size=_FETCH)
    return sqlite_batches(db.connection, _EVENT_COLUMNS, _EVENTS_IN_ORDER, size=_SQLITE_FETCH)


_T = TypeVar("_T")


class Sent(Protocol):
    """Where the second process's items arrive, for a :class:`Share`'s ``finish``."""

    def arrived(self) -> list[Any]:
        """The items sent since the last call (does not wait)."""

    def enough(self) -> None:
        """No more items are wanted: the second process may stop making them."""


@dataclass(frozen=True)
class Share(Generic[_T]):
    """Work of a :class:`Meanwhile` check the second process may take on, once it is done.

    The check's work is a list of items that can be done in any order by either process
    (signatures to check, say). The first process works through it from the front once
    its own part of the audit is done; the second, once its replay is done, from the
    back, and sends each batch it finishes: they meet wherever their loads make them
    meet, so neither waits for the other, on a quiet machine or a loaded one.

    The second process imports ``function`` (``"module:name"``) and calls it with a driver
    reading the ledger's file in a snapshot of its own, opened when it starts and whose
    head is the one the first process read, and with ``args``; it iterates over what that
    returns, sending each item (plain data, what :mod:`marshal` writes) as soon as it is
    made, until the first process ends it. The first process calls ``finish`` with its
    own driver and where the items arrive (:class:`Sent`), in place of the whole check:
    ``finish`` must give exactly what the check gives, doing itself whatever the items
    leave out, and say when it wants no more (so that the second process stops working
    for nothing while the first finishes). When the second process does not
    run (a small ledger, PostgreSQL, a failure, another head), the whole check runs in
    the first process, as without a share.

    Attributes:
        function: where the second process finds its part (``"module:name"``); it is
            given the driver, then ``args``, and returns an iterable.
        args: what it is given, of the types :mod:`marshal` writes.
        finish: the check, given the driver and where the second process's items arrive.
    """

    function: str
    args: tuple[Any, ...]
    finish: Callable[[Driver, Sent], _T]


class Meanwhile(Generic[_T]):
    """A check of the caller's, run by :func:`verify` once the chain has verified.

    :func:`verify` calls ``check`` with the driver inside its own read snapshot (the
    events it reads are the ones the walk verified), once the whole chain and the head
    verified, and while the second process (if any) still works: so a check of the
    caller's costs no time beside a large ledger's audit. It is called at most once,
    however many times :func:`verify` walks; :attr:`result` stays None when the chain
    is broken. ``share``: work of the check the second process may take on (see
    :class:`Share`); :attr:`shared` tells whether it was offered to one.
    """

    def __init__(self, check: Callable[[Driver], _T], *, share: Share[_T] | None = None) -> None:
        self._check = check
        self.share = share
        self.called = False
        self.shared = False
        self.result: _T | None = None

    def run(self, db: Driver, sent: Sent | None = None) -> None:
        """Call the check (the first time only).

        ``sent``: where the second process's items arrive, when it runs the share's
        function; the share's ``finish`` is then called instead of the check.
        """
        if not self.called:
            self.called = True
            if sent is not None and self.share is not None:
                self.shared = True
                self.result = self.share.finish(db, sent)
            else:
                self.result = self._check(db)


def verify(
    db: Driver, *, derived: bool = True, meanwhile: Meanwhile[Any] | None = None
) -> LedgerVerifyReport:
    """Verify the chain and (``derived``) the derived tables, in one read snapshot.

    On a large SQLite ledger some tables are replayed in a second process meanwhile
    (:mod:`pipetrail.ledger.audit_parallel`); when that cannot be, all runs here. The
    largest tables are first checked against rows built in Python; when that finds any
    difference, everything is replayed and compared again, to name the rows.
    ``meanwhile``: a check of the caller's, run once the chain verified (see
    :class:`Meanwhile`).

    The cyclic garbage collector is paused from the walk until the report is made, not
    only during the walk (see :func:`_without_cycle_collection`): resumed after the walk,
    its first pass would go over every modelled row the walk made (a quarter of a second
    on a million events), and the comparison and the caller's check would pay hundreds
    of passes more, over rows that are all freed by reference counting once compared.
    """
    with _without_cycle_collection():
        return _verify(db, derived=derived, meanwhile=meanwhile)


def _verify(db: Driver, *, derived: bool, meanwhile: Meanwhile[Any] | None) -> LedgerVerifyReport:
    if derived:
        try:
            report = _verify_beside(db, meanwhile=meanwhile)
            if report is None:
                report = _verify_alone(db, model=True, meanwhile=meanwhile)
            return report
        except Unmodelled:
            pass  # a modelled table differs, or the model gave up: the replay names why
        report = _verify_beside(db, model=False, meanwhile=meanwhile)
        if report is not None:
            return report
    return _verify_alone(db, derived=derived, meanwhile=meanwhile)


def _verify_alone(
    db: Driver,
    *,
    derived: bool = True,
    model: bool = False,
    meanwhile: Meanwhile[Any] | None = None,
) -> LedgerVerifyReport:
    """:func:`verify` in this process (``model``: see :class:`Replica`).

    Raises:
        Unmodelled: with ``model``, when the modelled tables cannot be declared intact.
    """
    replica = Replica(db, model=model) if derived else None
    try:
        with mapped(db), db.snapshot():
            tree = TreeCheck(db) if derived else None
            walk = _walk(db, replica, tree)
            failure = walk.failure or walk.end
            if failure is None and meanwhile is not None:
                meanwhile.run(db)
            if failure is None and replica is not None and replica.model is not None:
                _model_holds(replica)  # before naming an event the replay rejects
            failure = failure or walk.unprojectable
            if failure is not None:
                return LedgerVerifyReport(walk.checked, *failure)
            if replica is None or tree is None:
                return LedgerVerifyReport(walk.checked)
            rows, problems = replica.compare(db, walk.head)
            problems += tree.finish()  # the Merkle tree's nodes (merkle_nodes)
    finally:
        if replica is not None:
            replica.close()
    return LedgerVerifyReport(
        walk.checked, derived_checked=True, derived_rows=rows, derived=tuple(problems)
    )


def _verify_beside(
    db: Driver, *, model: bool = True, meanwhile: Meanwhile[Any] | None = None
) -> LedgerVerifyReport | None:
    """:func:`verify` with part of the replay in a second process; None if it cannot be.

    Raises:
        Unmodelled: with ``model`` (see :class:`Replica`), when the modelled tables
            cannot be declared intact.
    """
    from pipetrail.ledger import audit_parallel

    replica = None
    try:
        with mapped(db), db.snapshot():
            share = None
            if meanwhile is not None and meanwhile.share is not None and not meanwhile.called:
                share = (meanwhile.share.function, meanwhile.share.args)
            beside = audit_parallel.start(db, model=model, share=share)
            if beside is None:
                return None
            with beside:
                replica = Replica(db, model=model)
                tree = TreeCheck(db)
                walk = _walk(db, replica, tree, audit_parallel.BESIDE_KINDS)
                own: _Own | None = None
                if walk.failure is None and walk.end is None:
                    # Both while the second process works; the check last, as it may
                    # share its work with that process once its replay is done.
                    own = _compare_own(db, replica, tree, walk, model=model)
                    if meanwhile is not None:
                        meanwhile.run(db, beside if share is not None else None)
                part = beside.result()
                if part is None or part.tables != audit_parallel.BESIDE_TABLES:
                    return None  # the other process failed, or saw another ledger
                failure = _first(walk.failure, part.failure)
                if failure is not None:
                    checked = min(walk.checked, failure[0] - 1)
                    return LedgerVerifyReport(checked, *failure)
                if walk.end is None and model:
                    _model_holds(replica)
                failure = walk.end or _first(walk.unprojectable, part.unprojectable)
                if failure is not None:
                    return LedgerVerifyReport(walk.checked, *failure)
                assert own is not None  # noqa: S101 - the chain and the replay held
                if own.unmodelled is not None:
                    raise own.unmodelled
                problems = _in_table_order(replica, [*own.problems, *part.problems])
                problems += own.nodes  # the Merkle tree's nodes (merkle_nodes)
                rows = own.rows
    finally:
        if replica is not None:
            replica.close()
    return LedgerVerifyReport(
        walk.checked,
        derived_checked=True,
        derived_rows=rows + part.rows,
        derived=tuple(problems),
    )


@dataclass
class _Own:
    """What the first process's own comparison found (see :func:`_compare_own`)."""

    rows: int = 0
    problems: list[DerivedRowProblem] = field(default_factory=list)
    nodes: list[DerivedRowProblem] = field(default_factory=list)
    unmodelled: Unmodelled | None = None


def _compare_own(
    db: Driver, replica: Replica, tree: TreeCheck, walk: _Walk, *, model: bool
) -> _Own:
    """Compare the tables the first process replayed, and the Merkle tree's nodes.

    Run while the second process still works, before its answer is known: what is found
    is used only once that answer shows the chain and the replay held, exactly where the
    comparison used to run after it (an :class:`Unmodelled` raised here is kept and
    raised then). Nothing is compared when the walk's replay rejected an event.
    """
    try:
        if model:
            _model_holds(replica)
        if walk.unprojectable is not None:
            return _Own()
        from pipetrail.ledger import audit_parallel

        tables = [t for t in replica.tables if t not in audit_parallel.BESIDE_TABLES]
        rows, problems = replica.compare(db, walk.head, tables)
        if model:  # the part of the second process's check it leaves to this one
            replica.check_types(db, audit_parallel.BESIDE_TABLES)
    except Unmodelled as exc:
        return _Own(unmodelled=exc)
    if replica.model is not None:
        replica.model.release()  # freed now, not once the second process answered
    return _Own(rows, problems, tree.finish())


def _model_holds(replica: Replica) -> None:
    """Raise :class:`Unmodelled` when the replica's model gave up on an event."""
    if replica.model is not None and replica.model.broken is not None:
        raise Unmodelled(replica.model.broken)


def _first(*found: tuple[int, str] | None) -> tuple[int, str] | None:
    """The failure at the lowest sequence number, or None."""
    return min((f for f in found if f is not None), default=None, key=lambda f: f[0])


def _in_table_order(replica: Replica, problems: list[DerivedRowProblem]) -> list[DerivedRowProblem]:
    order = {table: at for at, table in enumerate(replica.tables)}
    return sorted(problems, key=lambda p: order[p.table])


def rebuild(db: Driver) -> RebuildReport:
    """Rewrite the derived rows that disagree with the events, under the write lock.

    Raises:
        TamperedLedgerError: the chain is broken; nothing was changed.
    """
    replica = Replica(db)
    try:
        with mapped(db), db.write():
            tree = TreeCheck(db)
            walk = _walk(db, replica, tree)
            failure = walk.failure or walk.end or walk.unprojectable
            if failure is not None:
                seq, reason = failure
                raise TamperedLedgerError(
                    f"the ledger's hash chain is broken at sequence {seq}: {reason}; the "
                    "derived tables were not rebuilt, since the events they would come from "
                    "were altered. Run `pipetrail audit verify` and restore the ledger from a "
                    "backup",
                    seq=seq,
                )
            rows, problems = replica.compare(db, walk.head)
            replica.repair(db)
            problems += tree.finish()  # the Merkle tree's nodes (merkle_nodes)
            tree.repair(db)
    finally:
        replica.close()
    return RebuildReport(walk.checked, rows, tuple(problems))
