"""A run's cache lookups, answered ahead from the step runs of the run a lookup hit.

A cached re-run looks up one cache key per step (:meth:`Reader.cache_lookup`, one
query each), and the step runs these keys find are, almost always, those of one earlier
run, in the order they ran. So when a lookup hits a step run of run R,
:class:`RunCacheRows` reads in one statement (:data:`RUN_CACHE_SQL`) the step runs of R
that closed after it and that the lookup would answer for their own keys at that moment,
keyed by cache key; a later lookup of one of these keys takes its row from there, and any
other key is looked up as before (which may read ahead from the run it hits).

What is trusted does not change: a row read ahead is verified against its closing event
and the chain (:func:`~pipetrail.ledger.trusted.trusted_step_run`) when it is used, as a
row the lookup reads is, and a row or event that disagrees raises the same
:class:`~pipetrail.errors.TamperedLedgerError`. What may change between the read and the
use:

* R is marked deleted (``run.deleted``): a step run of a deleted run is not reused, so a
  use asks whether R is deleted now (one indexed lookup in ``run_deletions``, the table
  the lookup reads) unless that was asked less than ``recheck_after`` seconds ago; if
  it is, R's rows are dropped and the key is looked up as before. The runner passes the
  longest an event waits to be appended (:data:`pipetrail.execution.flushing.MAX_DELAY_S`):
  a hit is recorded that long after its lookup at the earliest, and a deletion landing
  in between never stopped it, so the window stays of the same size. That a reused
  output is still in the store is the caller's check, made at every use (garbage
  collection, which would remove a deleted run's outputs, is kept out by the run's store
  lease meanwhile).
* another run finishes a newer step run with the same key: the row read ahead is still
  used. It completed with this key, its event is verified, and its outputs are checked
  in the store: the hit is the one a lookup made at the moment of the read would have
  given, and two runs racing on one key are not ordered anyway (either one could have
  been the newer).
* the row or its event is edited after the read: the row used is the one read, verified
  against the chain as it was read, like a lookup made at that moment.

Reading ahead is bounded: a run reads at most ``budget`` rows ahead in all (after that,
every key is looked up alone), so lookups that hit many different runs cost at most
that many rows more than they did.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from pipetrail.ledger.trusted import step_run_result, trusted_step_payload, trusted_step_values
from pipetrail.ledger.trusted_sql import (
    CACHE_LOOKUP_SQL,
    RUN_CACHE_REST,
    STEP_COLUMNS,
    STEP_WITH_EVENT_VALUES,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.ledger.queries import Reader, Row

__all__ = ["CacheHit", "RunCacheRows", "trusted_lookup_row"]

# What a hit reuses: the executed step run whose outputs it reuses, its outputs (name ->
# digest; None if its event has none) and how each is read (its event's
# ``output_formats``; None in events written before it was recorded).
CacheHit = tuple[str, dict[str, str] | None, dict[str, Any] | None]

_T = TypeVar("_T")
_RUN_AT = STEP_COLUMNS.index("run_id")
_FIRST_AT = STEP_COLUMNS.index("first_seq")
_KEY_AT = STEP_COLUMNS.index("cache_key")
_OUTPUTS_AT = STEP_COLUMNS.index("outputs")
_LAST_AT = STEP_COLUMNS.index("last_seq")
_DELETED_SQL = "SELECT COUNT(*) FROM run_deletions WHERE run_id = :r"


def trusted_lookup_row(found: tuple[Any, ...]) -> Row:
    """The step run a row of :data:`CACHE_LOOKUP_SQL` names, as its closing event gives it.

    Raises:
        TamperedLedgerError: the row disagrees with its event, or the event with the chain.
    """
    values, payload = trusted_step_values(found)
    return step_run_result(values, payload, found[_FIRST_AT])


def _trusted_hit(found: tuple[Any, ...]) -> CacheHit:
    """What a row of :data:`CACHE_LOOKUP_SQL` gives a hit (see :meth:`RunCacheRows.hit`).

    Verified as :func:`trusted_lookup_row` verifies it, from its event's payload alone
    (:func:`~pipetrail.ledger.trusted.trusted_step_payload`).

    Raises:
        TamperedLedgerError: the row disagrees with its event, or the event with the chain.
    """
    payload = trusted_step_payload(found)
    return (
        payload.get("reused_step_run_id") or payload["step_run_id"],
        payload.get("outputs"),
        payload.get("output_formats"),
    )


class RunCacheRows:
    """The cache lookups of one run (see the module docstring).

    Args:
        run_id: the run looking up: its own step runs are never read ahead (it is
            still writing them).
        budget: how many rows the run may read ahead in all.
        recheck_after: how long (seconds) the answer that a run is not deleted holds.
        clock: the clock that measures it.
    """

    def __init__(
        self,
        run_id: str,
        budget: int,
        *,
        recheck_after: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run_id = run_id
        self._budget = budget
        self._recheck_after = recheck_after
        self._clock = clock
        self._rows: dict[str, tuple[Any, ...]] = {}
        # The rows read ahead whose outputs new_outputs has not listed yet.
        self.unlisted: list[tuple[Any, ...]] = []
        # run id -> when it was last found not deleted (clock time)
        self._kept: dict[str, float] = {}

    def lookup(self, reader: Reader, cache_key: str) -> Row | None:
        """Return what :meth:`Reader.cache_lookup` returns for ``cache_key``.

        Raises:
            TamperedLedgerError: the row disagrees with its event, or the event with the
                chain.
        """
        return self._found(reader, cache_key, trusted_lookup_row)

    def hit(self, reader: Reader, cache_key: str) -> CacheHit | None:
        """What a hit on ``cache_key`` reuses: :meth:`lookup`'s answer, in short.

        The step run :meth:`lookup` finds, checked as it checks it: the step run whose
        outputs it reuses (its ``reused_step_run_id``, or its own id when it executed),
        its ``outputs`` and its ``output_formats``.

        Raises:
            TamperedLedgerError: the row disagrees with its event, or the event with the
                chain.
        """
        return self._found(reader, cache_key, _trusted_hit)

    def _found(
        self, reader: Reader, cache_key: str, trusted: Callable[[tuple[Any, ...]], _T]
    ) -> _T | None:
        """``trusted`` of the row of :data:`CACHE_LOOKUP_SQL` for ``cache_key``, if any."""
        ahead = self._rows.get(cache_key)
        if ahead is not None:
            if self._not_deleted(reader, ahead[_RUN_AT]):
                return trusted(ahead)
            self._forget(ahead[_RUN_AT])
        rows = reader.fetch_tuples(CACHE_LOOKUP_SQL, {"k": cache_key})
        if not rows:
            return None
        found = rows[0]
        answer = trusted(found)
        if found[_RUN_AT] != self._run_id and self._budget > 0:
            self._read_ahead(reader, found[_RUN_AT], found[_LAST_AT])
        return answer

    def _not_deleted(self, reader: Reader, run_id: str) -> bool:
        now = self._clock()
        checked = self._kept.get(run_id)
        if checked is not None and now - checked < self._recheck_after:
            return True
        if reader.fetch_tuples(_DELETED_SQL, {"r": run_id})[0][0]:
            return False
        self._kept[run_id] = now
        return True

    def _read_ahead(self, reader: Reader, run_id: str, after: int) -> None:
        # The read itself found the run not deleted.
        self._kept[run_id] = self._clock()
        rows = reader.whole_rows(
            STEP_WITH_EVENT_VALUES, RUN_CACHE_REST, {"r": run_id, "after": after, "n": self._budget}
        )
        self._budget -= len(rows)
        for row in rows:
            self._rows[row[_KEY_AT]] = row
        self.unlisted.extend(rows)

    def _forget(self, run_id: str) -> None:
        self._kept.pop(run_id, None)
        self._rows = {k: row for k, row in self._rows.items() if row[_RUN_AT] != run_id}

    def new_outputs(self) -> list[str]:
        """The digests the rows read ahead since the last call name as outputs.

        Taken from the rows as stored, unverified: for a bulk lookup in the store that
        spares the caller one lookup per output later, never as what a hit reuses (that
        comes from the verified event when the row is used).
        """
        digests: list[str] = []
        for row in self.unlisted:
            text = row[_OUTPUTS_AT]
            try:
                outputs = orjson.loads(text) if isinstance(text, str | bytes) else None
            except orjson.JSONDecodeError:
                continue
            if isinstance(outputs, dict):
                digests.extend(d for d in outputs.values() if isinstance(d, str))
        self.unlisted = []
        return digests
