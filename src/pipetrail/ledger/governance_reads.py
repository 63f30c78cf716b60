"""Reading what governance needs from the ledger: its signed events and a few run facts.

Governance (users, keys, models, promotions, decisions; docs/adr/0019) keeps no table of
its own: its state is a fold over its signed events. Those events are read here, with
their stored chain fields kept whole (a signature and the chain hash cover the payload
*text*, so the fold re-hashes :attr:`StoredAct.event` as stored) and their content parsed
once. The run facts a promotion policy checks (the newest ``pipetrail check`` gate, the
newest reproduction of a run) and the ledger facts a checkpoint states (the head, the
first event's hash, one event by its number) are read here too, so no module outside
the ledger writes SQL or parses an event payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.ledger.chain_check import parse_payload
from pipetrail.ledger.events import Event, EventKind, payload_text

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.ledger.driver import Driver
    from pipetrail.ledger.event_records import GateChecked, ReproductionChecked
    from pipetrail.ledger.events import EventDraft
    from pipetrail.ledger.queries import Reader

__all__ = [
    "GOVERNANCE_KINDS",
    "USER_KINDS",
    "StoredAct",
    "draft_act",
    "event_at",
    "first_event_hash",
    "gate_checks",
    "governance_acts",
    "head_seq",
    "model_governance_acts",
    "newest_gate",
    "newest_reproduction",
    "read_governance_acts",
    "run_governance_acts",
]

USER_KINDS: tuple[str, ...] = tuple(
    str(k)
    for k in (
        EventKind.USER_ADDED,
        EventKind.USER_GRANTED,
        EventKind.USER_REVOKED,
        EventKind.USER_KEY_ROTATED,
    )
)
GOVERNANCE_KINDS: tuple[str, ...] = (
    *USER_KINDS,
    *(
        str(k)
        for k in (
            EventKind.MODEL_REGISTERED,
            EventKind.PROMOTION_REQUESTED,
            EventKind.PROMOTION_APPROVED,
            EventKind.PROMOTION_REJECTED,
            EventKind.ALIAS_MOVED,
            EventKind.DECISION_RECORDED,
            EventKind.ACCESS_GRANTED,
            EventKind.ACCESS_REVOKED,
        )
    ),
)


def _marks(kinds: tuple[str, ...]) -> str:
    return ", ".join(f"'{k}'" for k in kinds)


_COLUMNS = "seq, ts, actor, kind, run_id, payload, prev_hash, hash"
_ACTS = f"SELECT {_COLUMNS} FROM events WHERE kind IN ({_marks(GOVERNANCE_KINDS)}) ORDER BY seq"  # noqa: S608
# What the decisions about one run need to verify, and no more: the users (who may sign
# what, with which key), the models' registrations (a decision may name a model) and the
# decisions recorded on the run; none of the promotion traffic, no other run's decisions.
_RUN_ACTS = (
    f"SELECT {_COLUMNS} FROM events WHERE "  # noqa: S608
    f"kind IN ({_marks((*USER_KINDS, str(EventKind.MODEL_REGISTERED)))}) "
    f"OR (kind = '{EventKind.DECISION_RECORDED}' AND run_id = :run) "
    "ORDER BY seq"
)
# What naming a model version needs to verify: the users and the models' registrations
# (a registration's rules read nothing else); none of the promotion traffic or decisions.
_MODEL_ACTS = (
    f"SELECT {_COLUMNS} FROM events WHERE "  # noqa: S608
    f"kind IN ({_marks((*USER_KINDS, str(EventKind.MODEL_REGISTERED)))}) ORDER BY seq"
)
_HEAD = "SELECT seq FROM ledger_head WHERE id = 1"
_FIRST_HASH = "SELECT hash FROM events WHERE seq = 1"
_EVENT_AT = f"SELECT {_COLUMNS} FROM events WHERE seq = :s"  # noqa: S608
_NEWEST_GATE = (
    "SELECT seq, ts, payload FROM events WHERE kind = 'gate.checked' "
    "AND run_id = :run ORDER BY seq DESC LIMIT 1"
)
_GATES = (
    "SELECT seq, ts, payload FROM events WHERE kind = 'gate.checked' AND run_id = :run ORDER BY seq"
)
_REPRODUCTIONS = (
    "SELECT seq, ts, payload FROM events WHERE kind = 'reproduction.checked' ORDER BY seq DESC"
)


@dataclass(frozen=True)
class StoredAct:
    """One governance event as stored, with its signed content parsed.

    Attributes:
        event: the stored event, every chain field as it is in the database.
        content: its payload, parsed: the signed content with ``by``, ``key_id`` and
            ``signature``; None when the stored text is not a JSON object.
        problem: why ``content`` is None (empty otherwise).
    """

    event: Event
    content: dict[str, Any] | None
    problem: str = ""

    @classmethod
    def of(cls, event: Event) -> StoredAct:
        """Parse a stored event's content, keeping what was wrong with it if anything.

        Parsed as ``json.loads`` parses it (:func:`~pipetrail.ledger.chain_check.parse_payload`:
        orjson when it reads the text back exactly, the standard library otherwise).
        """
        try:
            value = parse_payload(event.payload_text)
        except ValueError as exc:
            return cls(event, None, f"its payload is not JSON ({exc})")
        if not isinstance(value, dict):
            return cls(event, None, "its payload is not a JSON object")
        return cls(event, value)


def draft_act(draft: EventDraft, seq: int, ts: str) -> StoredAct:
    """The act a draft would be once appended as event ``seq`` (chain fields left empty).

    Governance runs its rules on this before it appends the draft.
    """
    text = payload_text(draft.payload)
    return StoredAct(Event(seq, ts, "", str(draft.kind), draft.run_id, text, "", ""), draft.payload)


def governance_acts(db: Driver) -> Iterator[StoredAct]:
    """Yield every governance event of the ledger behind ``db``, in sequence order.

    Streams (2,000 rows at a time) on the driver's connection, inside whatever
    transaction it has open (a write lock or a snapshot).
    """
    cursor = db.connection.cursor()
    try:
        cursor.execute(db.sql(_ACTS))
        while rows := cursor.fetchmany(2000):
            for row in rows:
                yield StoredAct.of(Event(*row))
    finally:
        cursor.close()


def _act(row: dict[str, Any]) -> StoredAct:
    return StoredAct.of(
        Event(
            row["seq"],
            row["ts"],
            row["actor"],
            row["kind"],
            row["run_id"],
            row["payload"],
            row["prev_hash"],
            row["hash"],
        )
    )


def read_governance_acts(reader: Reader) -> list[StoredAct]:
    """Every governance event, in sequence order, through a reader (one snapshot)."""
    return [_act(row) for row in reader.fetch(_ACTS)]


def run_governance_acts(reader: Reader, run_id: str) -> list[StoredAct]:
    """The governance events the decisions about a run need, in sequence order (one query).

    The users' events, the models' registrations and the decisions recorded on
    ``run_id``: enough to verify and list the decisions about the run without reading
    the promotion requests, approvals and other runs' decisions.
    """
    return [_act(row) for row in reader.fetch(_RUN_ACTS, {"run": run_id})]


def model_governance_acts(reader: Reader) -> list[StoredAct]:
    """The users' events and the models' registrations, in sequence order (one query).

    Enough to verify which versions each model has (their digests and source runs)
    without reading the promotion requests, approvals and decisions.
    """
    return [_act(row) for row in reader.fetch(_MODEL_ACTS)]


def head_seq(db: Driver) -> int:
    """The sequence number of the ledger's newest event (0 when it has none)."""
    rows = db.rows(_HEAD)
    return int(rows[0][0]) if rows else 0


def first_event_hash(db: Driver) -> str | None:
    """The chain hash of the ledger's first event, or None when it has none."""
    rows = db.rows(_FIRST_HASH)
    return str(rows[0][0]) if rows else None


def event_at(db: Driver, seq: int) -> Event | None:
    """Event ``seq`` as stored, or None when there is none."""
    rows = db.rows(_EVENT_AT, {"s": seq})
    return Event(*rows[0]) if rows else None


def _gate(row: dict[str, Any]) -> GateChecked:
    # The typed records load only here: governance commands that fold their own events
    # (most of them) do not pay for importing them.
    from pipetrail.ledger.event_records import GateChecked, parse_payload

    record = parse_payload(
        str(EventKind.GATE_CHECKED), row["payload"], seq=int(row["seq"]), ts=str(row["ts"])
    )
    if not isinstance(record, GateChecked):  # pragma: no cover - the kind decides the type
        raise TypeError(f"event {row['seq']} is not a gate.checked event")
    return record


def newest_gate(reader: Reader, run_id: str) -> GateChecked | None:
    """The newest ``gate.checked`` event on run ``run_id`` (``pipetrail check``), if any."""
    rows = reader.fetch(_NEWEST_GATE, {"run": run_id})
    return _gate(rows[0]) if rows else None


def gate_checks(reader: Reader, run_id: str) -> list[GateChecked]:
    """Every ``gate.checked`` event on run ``run_id``, oldest first."""
    return [_gate(row) for row in reader.fetch(_GATES, {"run": run_id})]


def newest_reproduction(reader: Reader, original_run_id: str) -> ReproductionChecked | None:
    """The newest ``reproduction.checked`` event that re-executed ``original_run_id``."""
    from pipetrail.ledger.event_records import ReproductionChecked, parse_payload

    for row in reader.fetch(_REPRODUCTIONS):
        record = parse_payload(
            str(EventKind.REPRODUCTION_CHECKED),
            row["payload"],
            seq=int(row["seq"]),
            ts=str(row["ts"]),
        )
        if isinstance(record, ReproductionChecked) and record.original_run_id == original_run_id:
            return record
    return None
