"""The ledger reads an audit bundle needs: a scope's events, every field as stored.

An audit bundle (``pipetrail.verify.bundle``) carries events exactly as stored, so that an
auditor can re-hash them: these reads return :class:`~pipetrail.ledger.events.Event`
records with the payload *text*, never re-encoded, whose ``fields()`` are the JSON form a
bundle stores (the stored column names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.ledger.events import Event

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.ledger.driver import Driver

__all__ = ["events_of_kinds", "events_of_runs"]

_COLUMNS = "seq, ts, actor, kind, run_id, payload, prev_hash, hash"
_CHUNK = 500  # run ids per query: well below every backend's parameter limit


def events_of_runs(db: Driver, run_ids: Iterable[str], upto: int) -> list[Event]:
    """Every event of the given runs up to sequence ``upto``, in sequence order."""
    runs = sorted(set(run_ids))
    found: list[Event] = []
    for start in range(0, len(runs), _CHUNK):
        chunk = runs[start : start + _CHUNK]
        marks = ", ".join(f":r{i}" for i in range(len(chunk)))
        params: dict[str, Any] = {f"r{i}": run for i, run in enumerate(chunk)}
        params["upto"] = upto
        found.extend(
            Event(*row)
            for row in db.rows(
                f"SELECT {_COLUMNS} FROM events WHERE run_id IN ({marks}) "  # noqa: S608
                "AND seq <= :upto",
                params,
            )
        )
    found.sort(key=lambda ev: ev.seq)
    return found


def events_of_kinds(db: Driver, kinds: Iterable[str], upto: int) -> list[Event]:
    """Every event of the given kinds up to sequence ``upto``, in sequence order."""
    wanted = sorted(set(kinds))
    marks = ", ".join(f":k{i}" for i in range(len(wanted)))
    params: dict[str, Any] = {f"k{i}": kind for i, kind in enumerate(wanted)}
    params["upto"] = upto
    return [
        Event(*row)
        for row in db.rows(
            f"SELECT {_COLUMNS} FROM events WHERE kind IN ({marks}) "  # noqa: S608
            "AND seq <= :upto ORDER BY seq",
            params,
        )
    ]
