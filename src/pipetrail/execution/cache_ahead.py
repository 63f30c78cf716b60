"""What a run's cache hits reuse, looked up ahead: the ledger's rows and the store's objects.

A cache hit takes the step run it reuses from the ledger and checks that each of its
outputs is in the store (:func:`pipetrail.execution.run_node._decide`): one query each,
per step. When a lookup hits a step run of an earlier run, the step runs of that run that
follow it are read in one statement (:class:`~pipetrail.ledger.cache_rows.RunCacheRows`,
which says what is still verified at use and what may change meanwhile), and the outputs
they name are looked up in a local store in one query too
(:meth:`~pipetrail.store.local.LocalStore.existing`).

The objects found are remembered with the store's generation, read before that query
(docs/adr/0032-store-generation.md): while the generation read at a later check is the
same, nothing has left the store since, so an object found then is still there and
:meth:`CacheAhead.stored` vouches for it (the generation is read again at most every
:data:`~pipetrail.execution.flushing.MAX_DELAY_S`: see there). A changed generation (a collection, a
quarantine) forgets them all; an output not looked up ahead, or another kind of store,
is asked about on its own, as before.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pipetrail.execution.flushing import MAX_DELAY_S
from pipetrail.ledger.cache_rows import RunCacheRows
from pipetrail.store.local import LocalStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.ledger.cache_rows import CacheHit
    from pipetrail.ledger.queries import Reader, Row
    from pipetrail.store.base import ContentStore

__all__ = ["CacheAhead"]

_NOTHING: frozenset[str] = frozenset()


class CacheAhead:
    """The rows and objects one run's cache hits were found to reuse, ahead of time.

    Args:
        run_id: the run.
        budget: how many step runs it may read ahead in all (see
            :class:`~pipetrail.ledger.cache_rows.RunCacheRows`).
        reader: the run's ledger reader, kept for its lookups (:attr:`reader`): a
            :class:`~pipetrail.ledger.queries.DriverReader` asks its ledger for the
            connection at every query, so one serves the whole run.
    """

    def __init__(
        self,
        run_id: str,
        budget: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        reader: Reader | None = None,
    ) -> None:
        self.reader = reader
        # A run found not deleted is asked again once the events of a hit could have
        # been appended (the window a lookup always had: see RunCacheRows).
        self._rows = RunCacheRows(run_id, budget, recheck_after=MAX_DELAY_S, clock=clock)
        self._clock = clock
        self._generation: str | None = None
        self._read_at = 0.0  # when the generation was last read (clock time)
        self._stored: set[str] = set()

    def lookup(self, reader: Reader, cache_key: str) -> Row | None:
        """Return what :meth:`Reader.cache_lookup` returns for ``cache_key``.

        Raises:
            TamperedLedgerError: the row disagrees with its event, or the event with the
                chain.
        """
        return self._rows.lookup(reader, cache_key)

    def hit(self, reader: Reader, cache_key: str) -> CacheHit | None:
        """What a hit on ``cache_key`` reuses (see :meth:`RunCacheRows.hit`).

        Raises:
            TamperedLedgerError: the row disagrees with its event, or the event with the
                chain.
        """
        return self._rows.hit(reader, cache_key)

    def stored(self, store: ContentStore) -> frozenset[str] | set[str]:
        """Objects known to be in ``store`` now (those of the rows read ahead).

        Reads the store's generation (a small file) before each bulk lookup, and when
        it was last read :data:`~pipetrail.execution.flushing.MAX_DELAY_S` ago or more:
        an object is vouched for at most that long after it was last known there. A hit
        is appended that long after its check at the earliest, and an object leaving in
        between never stopped it, so the window stays of the same size (and garbage
        collection, which removes a deleted run's objects, is kept out by the run's
        store lease meanwhile). What is not in the result may be stored all the same:
        ask the store.

        Raises:
            StoreError: the store could not be read.
        """
        if not isinstance(store, LocalStore):
            return _NOTHING
        new = self._rows.new_outputs() if self._rows.unlisted else ()
        if not new and not self._stored:
            return _NOTHING
        now = self._clock()
        if not new and now - self._read_at < MAX_DELAY_S:
            return self._stored
        generation = store.generation()  # before the lookup (ADR 0032)
        self._read_at = now
        if generation is None or generation != self._generation:
            self._stored = set()
            self._generation = generation
            if generation is None:
                return _NOTHING
        if new:
            self._stored.update(store.existing(new))
        return self._stored
