"""Reads that decide what is loaded or reused come from verified events, not from rows.

The derived tables (``artifacts``, ``step_runs``...) are plain rows anyone with write
access to the database can edit; the events are hash-chained. An artifact's record
(which serializer reads its bytes, which stored object holds them) and a cache hit's
outputs therefore come from the event that recorded them: the query joins the row to the
event its ``first_seq``/``last_seq`` names, and :func:`check_event` re-hashes that event
and checks that it still links to the chain (the next event's ``prev_hash``, or the
recorded head when it is the newest). The row must then say exactly what the event
projects; any disagreement raises :class:`~pipetrail.errors.TamperedLedgerError` naming
the table, the key and the fix. One indexed query and one BLAKE3 hash per lookup.

This does not re-walk the whole chain (``pipetrail audit verify`` does): an insider who
rewrites every event from the one read to the head, and the head, consistently is not
caught here (docs/adr/0012-what-the-ledger-read-path-trusts.md).

The statements (``ARTIFACT_SQL``, ``CACHE_LOOKUP_SQL``...) and the order of their columns
are in :mod:`pipetrail.ledger.trusted_sql`, the JSON reading in
:mod:`pipetrail.ledger.json_text`: a reader that verifies no event imports neither this
module nor the hashing it uses.
"""

from __future__ import annotations

import contextlib
import json
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from pipetrail.errors import TamperedLedgerError
from pipetrail.hashing import canonical_json
from pipetrail.hashing.canonical import MEMBER_OPTIONS, member_json
from pipetrail.ledger.events import Event, EventKind, event_hash, hashed_here
from pipetrail.ledger.json_text import parse_json, read_json
from pipetrail.ledger.projection_rows import (
    JSON_COLUMNS,
    STEP_ROW_COLUMNS,
    artifact_row,
    finished_step_values,
    step_values_at,
)
from pipetrail.ledger.trusted_sql import (
    CACHE_LOOKUP_COLUMNS,
    EVENT_COLUMNS,
    REBUILD_HINT,
    STEP_COLUMNS,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "CHAIN_HINT",
    "DerivedRowProblem",
    "check_event",
    "link_problem",
    "trusted_artifact",
    "step_run_result",
    "trusted_step_payload",
    "trusted_step_run",
    "trusted_step_values",
]

CHAIN_HINT = (
    "the ledger's hash chain is broken there, so what it records cannot be trusted; run "
    "`pipetrail audit verify` and restore the ledger from a backup"
)


@dataclass(frozen=True)
class DerivedRowProblem:
    """A derived row that disagrees with what the events project.

    Attributes:
        table: the derived table (``artifacts``, ``step_runs``...).
        key: the row's primary key, as text (columns joined by ``", "``).
        problem: ``"differs"``, ``"missing"`` (the events record it, the table has no
            row) or ``"extra"`` (a row no event records).
        columns: for ``"differs"``: ``(column, stored value, value the events give)``.
    """

    table: str
    key: str
    problem: str
    columns: tuple[tuple[str, Any, Any], ...] = ()

    @property
    def message(self) -> str:
        """One line naming the table, the key and what is wrong."""
        where = f"{self.table}[{self.key}]"
        if self.problem == "missing":
            return f"{where}: missing (the events record this row)"
        if self.problem == "extra":
            return f"{where}: no event records this row (an extra row)"
        parts = [
            f"{column} is {_shown(stored)}, the events say {_shown(expected)}"
            for column, stored, expected in self.columns
        ]
        return f"{where}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The problem as JSON-able data."""
        return {
            "table": self.table,
            "key": self.key,
            "problem": self.problem,
            "columns": [
                {"column": c, "stored": stored, "expected": expected}
                for c, stored, expected in self.columns
            ],
            "message": self.message,
        }


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def link_problem(
    event: Event,
    *,
    next_prev: str | None,
    head_seq: int | None,
    head_hash: str | None,
    known: tuple[str, bool] | None = None,
) -> str | None:
    """Say why ``event`` is not an intact link of the chain, or return None.

    It must hash to its stored hash, and the event after it must name that hash as its
    ``prev_hash`` (or, when none follows, the recorded head must be this event).
    ``known``: what :func:`~pipetrail.ledger.events.hashed_here` gave for ``event``,
    when the caller asked (the hash is then not computed again).
    """
    recomputed = event.computed_hash() if known is None else known[0]
    if recomputed != event.hash:
        return f"event {event.seq} was edited (its content does not match its hash)"
    if next_prev is not None:
        if next_prev != event.hash:
            return f"event {event.seq + 1} does not link to event {event.seq}"
    elif head_seq != event.seq or head_hash != event.hash:
        return (
            f"no event follows event {event.seq} but the recorded head is "
            f"{'missing' if head_seq is None else f'event {head_seq}'}"
        )
    return None


def check_event(row: dict[str, Any], *, table: str, key: str, seq: int) -> Event:
    """Return the verified event a joined row carries (see the module docstring).

    Raises:
        TamperedLedgerError: the event is missing, edited or no longer linked.
    """
    return _linked_event(_event_values(row), table=table, key=key, seq=seq)[0]


# The values of the event's columns in a row read as a dict, in EVENT_COLUMNS' order.
_event_values = operator.itemgetter(*EVENT_COLUMNS)


def _linked_event(
    fields: Sequence[Any], *, table: str, key: str, seq: int
) -> tuple[Event, tuple[str, bool] | None]:
    """:func:`check_event` of the values of :data:`EVENT_COLUMNS`, in that order.

    Returns the event and what :func:`~pipetrail.ledger.events.hashed_here` gave for it.
    """
    e_seq, ts, actor, kind, run_id, text, prev_hash, digest, next_prev, head_seq, head = fields
    if e_seq is None:
        raise TamperedLedgerError(
            f"{table}[{key}] names event {seq}, which does not exist; {REBUILD_HINT}", seq=seq
        )
    event = Event(int(e_seq), ts, actor, kind, run_id, text, prev_hash, digest)
    known = hashed_here(event)
    problem = link_problem(
        event,
        next_prev=next_prev,
        head_seq=None if head_seq is None else int(head_seq),
        head_hash=head,
        # The hash computed here when this process did not compute it (link_problem
        # would ask hashed_here again first): _hash_of's, without its call.
        known=known
        if known is not None
        else (
            event_hash(
                seq=event.seq,
                ts=ts,
                actor=actor,
                kind=kind,
                run_id=run_id,
                payload_text=text,
                prev_hash=prev_hash,
            ),
            False,
        ),
    )
    if problem is not None:
        raise TamperedLedgerError(f"{table}[{key}] rests on {problem}; {CHAIN_HINT}", seq=seq)
    return event, known


def _hash_of(event: Event) -> str:
    """The chain hash of ``event``'s stored fields, computed (see :func:`event_hash`)."""
    return event_hash(
        seq=event.seq,
        ts=event.ts,
        actor=event.actor,
        kind=event.kind,
        run_id=event.run_id,
        payload_text=event.payload_text,
        prev_hash=event.prev_hash,
    )


def _payload(
    event: Event, table: str, key: str, known: tuple[str, bool] | None
) -> tuple[dict[str, Any], bool]:
    """The event's payload, and whether orjson read it (see :func:`read_json`).

    A payload text this process appended, written by orjson (``known``, what
    :func:`hashed_here` gave for the event), holds no integer beyond 64 bits nor a
    non-finite float: orjson reads it as the standard library does, without the search
    for long runs of digits.
    """
    try:
        if known is not None and known[1]:
            payload, finite = orjson.loads(event.payload_text), True
        else:
            payload, finite = read_json(event.payload_text)
    except ValueError:
        payload, finite = None, False
    if not isinstance(payload, dict):
        raise TamperedLedgerError(
            f"{table}[{key}] rests on event {event.seq}, whose payload is not a JSON object; "
            + CHAIN_HINT,
            seq=event.seq,
        )
    return payload, finite


def _holds(column: str, text: str, value: Any, *, finite: bool) -> bool:
    """Whether a JSON column's stored ``text`` holds ``value``, a member of a payload.

    The projections store a payload's members as their canonical JSON, which orjson
    writes for the values of a payload orjson read (``finite``: no float in it is a
    NaN or an infinity, which orjson would write as ``null``): equal text is then an
    equal value, found without parsing the text. Any other text (another encoding, or a
    value orjson writes otherwise or refuses) is parsed and compared by value.
    """
    if finite:
        try:
            if member_json(value) == text:
                return True
        except (TypeError, orjson.JSONEncodeError):
            pass  # an integer beyond 64 bits, a lone surrogate: compared by value
    return bool(_stored_value(column, text) == value)


def _stored_value(column: str, text: Any) -> Any:
    if column not in JSON_COLUMNS or text is None:
        return text
    try:
        return parse_json(text) if isinstance(text, str) else json.loads(text)
    except (TypeError, ValueError):
        return _UNREADABLE


_UNREADABLE = object()


def _as_stored(column: str, value: Any) -> Any:
    return canonical_json(value) if column in JSON_COLUMNS and value is not None else value


def _disagreement(
    table: str,
    key: str,
    row: dict[str, Any],
    expected: dict[str, Any],
    seq: int,
    *,
    finite: bool = False,
) -> TamperedLedgerError | None:
    # JSON columns are compared by value (the values are what a caller receives): as
    # text when the stored text is the canonical JSON of the event's value (encoding the
    # value is cheaper than parsing the text), else parsed. Plain columns are compared
    # first, without a call per column (the hot path of every cache lookup).
    differing: list[tuple[str, Any, Any]] | None = None
    for column, value in expected.items():
        stored = row[column]
        if column in JSON_COLUMNS and stored is not None:
            if type(stored) is str and _holds(column, stored, value, finite=finite):
                continue
            if type(stored) is not str and _stored_value(column, stored) == value:
                continue
        elif stored == value:
            continue
        if differing is None:
            differing = []
        differing.append((column, stored, _as_stored(column, value)))
    if differing is None:
        return None
    problem = DerivedRowProblem(table, key, "differs", tuple(differing))
    return TamperedLedgerError(
        f"{problem.message} (event {seq}); the row is not trusted: {REBUILD_HINT}", seq=seq
    )


def _wrong_kind(table: str, key: str, event: Event, wanted: str) -> TamperedLedgerError:
    return TamperedLedgerError(
        f"{table}[{key}] names event {event.seq}, which is a {event.kind} event, not the "
        f"{wanted} that records it; the row is not trusted: {REBUILD_HINT}",
        seq=event.seq,
    )


def trusted_artifact(row: dict[str, Any]) -> dict[str, Any]:
    """Return an artifact's record as its ``artifact.recorded`` event gives it.

    ``row`` is a row of :data:`ARTIFACT_SQL`. The record has the keys of the ``artifacts``
    table but ``first_seq``, with ``meta`` parsed.

    Raises:
        TamperedLedgerError: the event is not intact, or the row disagrees with it.
    """
    digest = str(row["digest"])
    event, known = _linked_event(
        _event_values(row), table="artifacts", key=digest, seq=int(row["first_seq"])
    )
    payload, finite = _payload(event, "artifacts", digest, known)
    expected = None
    if event.kind == EventKind.ARTIFACT_RECORDED:
        with contextlib.suppress(KeyError):
            expected = artifact_row(event, payload, decoded=True)
    if expected is None or payload.get("digest") != digest:
        raise _wrong_kind("artifacts", digest, event, "artifact.recorded event")
    found = _disagreement("artifacts", digest, row, expected, event.seq, finite=finite)
    if found is not None:
        raise found
    return {k: v for k, v in expected.items() if k != "first_seq"}


# Where the JSON columns and first_seq sit in a step row's values (STEP_ROW_COLUMNS,
# which is the order of STEP_COLUMNS as well: a contract test holds them equal).
_STEP_JSON_AT = tuple(i for i, c in enumerate(STEP_ROW_COLUMNS) if c in JSON_COLUMNS)
_STEP_FIRST_AT = STEP_ROW_COLUMNS.index("first_seq")


def _holds_exactly(stored: tuple[Any, ...], values: tuple[Any, ...]) -> bool:
    """Whether a stored step row is exactly what the values of its closing event give.

    Only for a payload orjson read (its members encode as the projection wrote them):
    every plain column equal, every JSON column the canonical text of the event's value,
    ``first_seq`` aside. Each of these equalities is the first test
    :func:`_disagreement` makes of that column, so a row this accepts, it accepts too;
    any other row goes through :func:`_disagreement`, which compares by value and names
    what differs.
    """
    encoded = list(values)
    dumps = orjson.dumps
    try:
        for at in _STEP_JSON_AT:  # member_json's text, without a call per column
            value = encoded[at]
            if value is not None:
                encoded[at] = dumps(value, option=MEMBER_OPTIONS).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        return False  # an integer beyond 64 bits, a lone surrogate: compared by value
    encoded[_STEP_FIRST_AT] = stored[_STEP_FIRST_AT]
    return tuple(encoded) == stored


def trusted_step_run(row: dict[str, Any], stored: tuple[Any, ...] | None = None) -> dict[str, Any]:
    """Return a finished step run as its closing event gives it (for cache lookups).

    ``row`` is a row of :data:`CACHE_LOOKUP_SQL` or :data:`RUN_STEPS_SQL`; the result has
    the columns of the ``step_runs`` table but ``last_seq``, JSON columns parsed, and
    ``output_formats``: how the event says each output is read (no column holds it;
    None in events written before it was recorded; see
    docs/adr/0013-how-an-output-is-read.md). ``stored``: the row's values of
    :data:`STEP_COLUMNS`, in that order, when the caller has them (else read from
    ``row``).

    Raises:
        TamperedLedgerError: the event is not intact, or the row disagrees with it.
    """
    key = str(row["step_run_id"])
    event, known = _linked_event(
        _event_values(row), table="step_runs", key=key, seq=int(row["last_seq"])
    )
    if stored is None:
        stored = tuple(row[c] for c in STEP_COLUMNS)
    values, payload = _verified_step(key, event, known, stored, lambda: row)
    return step_run_result(values, payload, row["first_seq"])


# Where a row of CACHE_LOOKUP_SQL (read as a tuple) has the step run's id and last_seq.
_STEP_COUNT = len(STEP_COLUMNS)
_ID_AT = STEP_COLUMNS.index("step_run_id")
_LAST_AT = STEP_COLUMNS.index("last_seq")


def trusted_step_values(found: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The finished step run a row of :data:`CACHE_LOOKUP_SQL` (a tuple) names, verified.

    Checked as :func:`trusted_step_run` checks a row, without making a dict of it: the
    values of :data:`STEP_ROW_COLUMNS` its closing event gives (JSON columns parsed,
    ``first_seq`` and ``last_seq`` the event's own seq), and the event's payload (where
    ``output_formats`` is); :func:`step_run_result` makes of them what
    :func:`trusted_step_run` returns.

    Raises:
        TamperedLedgerError: the event is not intact, or the row disagrees with it.
    """
    key = str(found[_ID_AT])
    event, known = _linked_event(
        found[_STEP_COUNT:], table="step_runs", key=key, seq=int(found[_LAST_AT])
    )
    return _verified_step(
        key,
        event,
        known,
        found[:_STEP_COUNT],
        lambda: dict(zip(CACHE_LOOKUP_COLUMNS, found, strict=True)),
    )


# The statuses a row CACHE_LOOKUP_SQL reads may have, by the kind of its closing event.
_LOOKUP_STATUS: dict[str, str] = {
    EventKind.STEP_COMPLETED: "completed",
    EventKind.STEP_CACHED: "cached",
}
_STEP_FIRST_SEQ_AT = STEP_COLUMNS.index("first_seq")


def trusted_step_payload(found: tuple[Any, ...]) -> dict[str, Any]:
    """The closing event's payload of a row of :data:`CACHE_LOOKUP_SQL` (a tuple), verified.

    Verified as :func:`trusted_step_values` verifies the row, for a cache hit, which
    reuses what the payload says (its ``outputs``, how each is read) and nothing else of
    the row. A payload orjson writes back byte for byte (:func:`_exact_payload`) is
    compared with the row in one step: the row's values, JSON columns as the text
    orjson writes for the payload's members, ``first_seq`` the row's own, must equal the
    stored row as a whole (the comparison :func:`_holds_exactly` makes, without the
    values made for the result of :func:`trusted_step_values`). Anything else (another
    kind of event, a payload orjson does not write back, a row that differs in any way)
    is left to the checks of :func:`trusted_step_values`, which raise or accept as
    before.

    Raises:
        TamperedLedgerError: the event is not intact, or the row disagrees with it.
    """
    key = str(found[_ID_AT])
    event, known = _linked_event(
        found[_STEP_COUNT:], table="step_runs", key=key, seq=int(found[_LAST_AT])
    )
    status = _LOOKUP_STATUS.get(event.kind)
    if status is not None:
        payload = _exact_payload(event.payload_text, known)
        if payload is not None and payload.get("step_run_id") == key:
            try:
                expected = step_values_at(
                    status, event.seq, payload, _member_text, found[_STEP_FIRST_SEQ_AT]
                )
            except (KeyError, TypeError, orjson.JSONEncodeError):
                expected = None  # the checks below say what is wrong
            if expected is not None and expected == found[:_STEP_COUNT]:
                return payload
    return _verified_step(
        key,
        event,
        known,
        found[:_STEP_COUNT],
        lambda: dict(zip(CACHE_LOOKUP_COLUMNS, found, strict=True)),
    )[1]


def _member_text(value: Any) -> str:
    """:func:`~pipetrail.hashing.canonical.member_json` of a member that is not None."""
    return orjson.dumps(value, option=MEMBER_OPTIONS).decode("utf-8")


def _exact_payload(text: str, known: tuple[str, bool] | None) -> dict[str, Any] | None:
    """The payload orjson reads from ``text``, when it reads what ``json.loads`` reads.

    So when this process's orjson wrote the text (``known``, as for :func:`_payload`),
    or when orjson writes the value it read back as ``text``, byte for byte: a number it
    would have read otherwise than the standard library (an integer beyond 64 bits,
    which it reads as a float and writes with a decimal point or an exponent) is then
    not in it, nor a float it does not read exactly, and it read every member once (no
    key repeated). None otherwise (also for text that is not a JSON object), for the
    checks of :func:`_payload` to decide.
    """
    try:
        if known is not None and known[1]:
            value = orjson.loads(text)
        else:
            data = text.encode("utf-8")
            value = orjson.loads(data)
            if orjson.dumps(value) != data:
                return None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, UnicodeEncodeError):
        return None
    return value if type(value) is dict else None


def step_run_result(
    values: tuple[Any, ...], payload: dict[str, Any], first_seq: Any
) -> dict[str, Any]:
    """What :func:`trusted_step_run` returns, from :func:`trusted_step_values`' answer.

    ``first_seq``: the row's own (the ``step.started`` event of a step that ran set it).
    """
    result = dict(zip(STEP_ROW_COLUMNS, values, strict=True))
    del result["last_seq"]  # the row's own, made here for this result alone
    result["first_seq"] = first_seq
    result["output_formats"] = payload.get("output_formats")
    return result


def _verified_step(
    key: str,
    event: Event,
    known: tuple[str, bool] | None,
    stored: tuple[Any, ...],
    row: Callable[[], dict[str, Any]],
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The values and payload of step run ``key``'s verified closing event ``event``.

    ``stored``: the row's values of :data:`STEP_COLUMNS`; ``row``: the row as a dict,
    made only to name what disagrees.

    Raises:
        TamperedLedgerError: the event is not the step's closing event, or the row
            disagrees with it.
    """
    payload, finite = _payload(event, "step_runs", key, known)
    try:  # a try, not contextlib.suppress: this runs for every cache lookup
        values = finished_step_values(event, payload)
    except KeyError:
        values = None
    if values is None or payload.get("step_run_id") != key:
        raise _wrong_kind("step_runs", key, event, "step.completed or step.cached event")
    if not (finite and _holds_exactly(stored, values)):
        expected = dict(zip(STEP_ROW_COLUMNS, values, strict=True))
        del expected["first_seq"]
        found = _disagreement("step_runs", key, row(), expected, event.seq, finite=finite)
        if found is not None:
            raise found
    return values, payload
